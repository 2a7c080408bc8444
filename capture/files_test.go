package capture

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/pcapgen"
)

var (
	client4 = netip.MustParseAddrPort("10.0.0.1:40000")
	server4 = netip.MustParseAddrPort("10.0.0.2:8000")
	client6 = netip.MustParseAddrPort("[2001:db8::1]:40000")
	server6 = netip.MustParseAddrPort("[2001:db8::2]:8000")
)

const (
	request  = "POST /api/orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n\r\n{\"item\":42}"
	response = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
)

// seen is a copy of what a Segment said, kept past the next call to Next.
type seen struct {
	Source           string
	Src, Dst         netip.AddrPort
	Seq, Ack         uint32
	SYN, FIN, RST    bool
	Payload          string
	Time             time.Time
	CapLen, WholeLen int
}

func copySegment(s *Segment) seen {
	src, _ := netip.AddrFromSlice(s.NetFlow.Src().Raw())
	dst, _ := netip.AddrFromSlice(s.NetFlow.Dst().Raw())
	return seen{
		Source:  s.Source,
		Src:     netip.AddrPortFrom(src, uint16(s.TCP.SrcPort)),
		Dst:     netip.AddrPortFrom(dst, uint16(s.TCP.DstPort)),
		Seq:     s.TCP.Seq,
		Ack:     s.TCP.Ack,
		SYN:     s.TCP.SYN,
		FIN:     s.TCP.FIN,
		RST:     s.TCP.RST,
		Payload: string(s.TCP.Payload),
		Time:    s.CaptureInfo.Timestamp,
		CapLen:  s.CaptureInfo.CaptureLength, WholeLen: s.CaptureInfo.Length,
	}
}

// readAll reads src to its end and returns the segments and the final error
// (nil for a clean io.EOF).
func readAll(t testing.TB, src Source) ([]seen, error) {
	t.Helper()
	var out []seen
	for {
		seg, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, copySegment(seg))
	}
}

// stream joins the payloads sent from addr.
func stream(segs []seen, from netip.AddrPort) string {
	var b bytes.Buffer
	for _, s := range segs {
		if s.Src == from {
			b.WriteString(s.Payload)
		}
	}
	return b.String()
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

// exchange writes one whole HTTP exchange on a new connection.
func exchange(c *pcapgen.Conn) {
	c.Handshake()
	c.Client([]byte(request))
	c.Server([]byte(response))
	c.Close()
}

func openOne(t testing.TB, path string) Source {
	t.Helper()
	src, err := OpenFiles([]string{path}, FileOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	return src
}

func TestLinkTypes(t *testing.T) {
	tests := []struct {
		name     string
		opts     pcapgen.Options
		families []string // "4", "6"
	}{
		{"ethernet", pcapgen.Options{LinkType: layers.LinkTypeEthernet}, []string{"4", "6"}},
		{"ethernet 802.1Q", pcapgen.Options{LinkType: layers.LinkTypeEthernet, VLANs: []uint16{100}}, []string{"4", "6"}},
		{"ethernet QinQ", pcapgen.Options{LinkType: layers.LinkTypeEthernet, VLANs: []uint16{100, 200}}, []string{"4", "6"}},
		{"linux cooked v1", pcapgen.Options{LinkType: layers.LinkTypeLinuxSLL}, []string{"4", "6"}},
		{"linux cooked v2", pcapgen.Options{LinkType: layers.LinkTypeLinuxSLL2}, []string{"4", "6"}},
		{"raw 101", pcapgen.Options{LinkType: layers.LinkTypeRaw}, []string{"4", "6"}},
		{"raw 12", pcapgen.Options{LinkType: pcapgen.LinkTypeRaw12}, []string{"4", "6"}},
		{"raw 14", pcapgen.Options{LinkType: pcapgen.LinkTypeRaw14}, []string{"4", "6"}},
		{"ipv4 228", pcapgen.Options{LinkType: layers.LinkTypeIPv4}, []string{"4"}},
		{"ipv6 229", pcapgen.Options{LinkType: layers.LinkTypeIPv6}, []string{"6"}},
		{"bsd null", pcapgen.Options{Null: true}, []string{"4", "6"}},
		{"openbsd loop", pcapgen.Options{LinkType: layers.LinkTypeLoop}, []string{"4", "6"}},
	}
	for _, tt := range tests {
		for _, fam := range tt.families {
			t.Run(tt.name+" ipv"+fam, func(t *testing.T) {
				client, server := client4, server4
				if fam == "6" {
					client, server = client6, server6
				}
				w := pcapgen.New(tt.opts)
				exchange(w.Conn(client, server))
				path := writeFile(t, "c.pcap", w.Bytes())
				src := openOne(t, path)
				segs, err := readAll(t, src)
				require.NoError(t, err)

				require.Len(t, segs, w.Packets())
				assert.Equal(t, request, stream(segs, client))
				assert.Equal(t, response, stream(segs, server))
				assert.True(t, segs[0].SYN)
				assert.Equal(t, client, segs[0].Src)
				assert.Equal(t, server, segs[0].Dst)
				assert.Equal(t, path, segs[0].Source)
				st := src.Stats()
				assert.Equal(t, uint64(w.Packets()), st.Packets)
				assert.Equal(t, uint64(w.Packets()), st.TCPSegments)
				assert.Zero(t, st.NonTCP+st.DecodeErrors+st.Truncated+st.Fragments)
			})
		}
	}
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{})
	exchange(w.Conn(client6, server6, pcapgen.IPv6ExtensionHeaders()))
	segs, err := readAll(t, openOne(t, writeFile(t, "ext.pcap", w.Bytes())))
	require.NoError(t, err)
	require.Len(t, segs, w.Packets())
	assert.Equal(t, request, stream(segs, client6))
	assert.Equal(t, response, stream(segs, server6))
}

func TestFormats(t *testing.T) {
	// A start with nanoseconds shows which resolution survives the format.
	start := time.Date(2025, 5, 6, 7, 8, 9, 123456789, time.UTC)
	tests := []struct {
		name string
		opts pcapgen.Options
		gzip bool
		// resolution is what the format keeps of the timestamps.
		resolution time.Duration
	}{
		{"pcap", pcapgen.Options{Format: pcapgen.PCAP}, false, time.Microsecond},
		{"pcap big-endian", pcapgen.Options{Format: pcapgen.PCAP, BigEndian: true}, false, time.Microsecond},
		{"pcap nanosecond", pcapgen.Options{Format: pcapgen.PCAPNano}, false, time.Nanosecond},
		{"pcap nanosecond big-endian", pcapgen.Options{Format: pcapgen.PCAPNano, BigEndian: true}, false, time.Nanosecond},
		{"pcapng", pcapgen.Options{Format: pcapgen.PCAPNG}, false, time.Nanosecond},
		{"pcap gzip", pcapgen.Options{Format: pcapgen.PCAP}, true, time.Microsecond},
		{"pcapng gzip", pcapgen.Options{Format: pcapgen.PCAPNG}, true, time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Start, opts.Step = start, 1500*time.Nanosecond
			w := pcapgen.New(opts)
			exchange(w.Conn(client4, server4))
			data := w.Bytes()
			if tt.gzip {
				data = gzipped(t, data)
			}
			// The name says nothing: detection is by content.
			segs, err := readAll(t, openOne(t, writeFile(t, "capture.bin", data)))
			require.NoError(t, err)
			require.Len(t, segs, w.Packets())
			assert.Equal(t, request, stream(segs, client4))
			for i, s := range segs {
				want := start.Add(time.Duration(i) * 1500 * time.Nanosecond).Truncate(tt.resolution)
				assert.True(t, want.Equal(s.Time), "packet %d: time %v, want %v", i, s.Time, want)
			}
		})
	}
}

func gzipped(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, err := zw.Write(data)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return b.Bytes()
}

func TestFragments(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 20) // 320 bytes over 5 fragments of 80
	tests := []struct {
		name   string
		client netip.AddrPort
		server netip.AddrPort
		opts   []pcapgen.ConnOption
		order  []int
	}{
		{"ipv4 in order", client4, server4, nil, nil},
		{"ipv4 reversed with a repeat", client4, server4, nil, []int{4, 3, 2, 2, 1, 0}},
		{"ipv6 in order", client6, server6, nil, nil},
		{"ipv6 reversed", client6, server6, nil, []int{4, 3, 2, 1, 0}},
		{"ipv6 with extension headers", client6, server6, []pcapgen.ConnOption{pcapgen.IPv6ExtensionHeaders()}, []int{1, 0, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := pcapgen.New(pcapgen.Options{})
			c := w.Conn(tt.client, tt.server, tt.opts...)
			c.Handshake()
			segs := c.ClientSegments(body, 0)
			require.Len(t, segs, 1)
			n := c.EmitFragmented(segs[0], 80, tt.order...)
			require.GreaterOrEqual(t, n, 5)

			src := openOne(t, writeFile(t, "frag.pcap", w.Bytes()))
			got, err := readAll(t, src)
			require.NoError(t, err)
			require.Len(t, got, 4) // the handshake and the rebuilt segment
			assert.Equal(t, string(body), got[3].Payload)
			assert.Equal(t, tt.client, got[3].Src)
			st := src.Stats()
			fragments := uint64(n)
			if tt.order != nil {
				fragments = uint64(len(tt.order))
			}
			assert.Equal(t, fragments, st.Fragments)
			assert.Equal(t, uint64(1), st.Reassembled)
			assert.Zero(t, st.FragmentDrops)
		})
	}
}

func TestIncompleteFragmentsAreHeldThenDropped(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{})
	c := w.Conn(client4, server4)
	segs := c.ClientSegments(bytes.Repeat([]byte("x"), 200), 0)
	c.EmitFragmented(segs[0], 64, 0, 2) // the second and last fragments never come
	// A minute later the datagram has timed out.
	w.Advance(time.Minute)
	c.Emit(c.ClientSegments([]byte("later"), 0)...)
	src := openOne(t, writeFile(t, "x.pcap", w.Bytes()))
	got, err := readAll(t, src)
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "later", got[0].Payload)
	st := src.Stats()
	assert.Equal(t, uint64(2), st.Fragments)
	assert.Zero(t, st.Reassembled)
	assert.Equal(t, uint64(1), st.FragmentDrops, "the timed-out datagram")
}

func TestSkippedPackets(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{Snaplen: 80})
	c := w.Conn(client4, server4)
	c.Handshake()
	w.UDP(netip.MustParseAddrPort("10.0.0.1:5353"), netip.MustParseAddrPort("10.0.0.9:53"), []byte("query"))
	// ARP: Ethernet type 0x0806.
	arp := append(bytes.Repeat([]byte{0xff}, 6), 0x02, 0, 0, 0, 0, 1, 0x08, 0x06)
	w.Raw(append(arp, make([]byte, 28)...))
	// IPv4 EtherType with a 3-byte "header".
	w.Raw(append(append(bytes.Repeat([]byte{0xff}, 12), 0x08, 0x00), 0x45, 0, 0))
	// A data segment longer than the snap length: cut, still handed on.
	long := bytes.Repeat([]byte("y"), 200)
	c.Emit(c.ClientSegments(long, 0)...)

	src := openOne(t, writeFile(t, "mixed.pcap", w.Bytes()))
	segs, err := readAll(t, src)
	require.NoError(t, err)
	require.Len(t, segs, 4)
	cut := segs[3]
	assert.Less(t, cut.CapLen, cut.WholeLen)
	assert.Equal(t, 80-14-20-20, len(cut.Payload), "what the snap length kept of the payload")
	st := src.Stats()
	assert.Equal(t, uint64(7), st.Packets)
	assert.Equal(t, uint64(4), st.TCPSegments)
	assert.Equal(t, uint64(2), st.NonTCP)
	assert.Equal(t, uint64(1), st.DecodeErrors)
	assert.Equal(t, uint64(1), st.Truncated)
}

func TestMergeByTimestamp(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// Two captures of the same period, packets 2ms apart, offset by 1ms.
	a := pcapgen.New(pcapgen.Options{Start: t0, Step: 2 * time.Millisecond})
	exchange(a.Conn(client4, server4))
	b := pcapgen.New(pcapgen.Options{Start: t0.Add(time.Millisecond), Step: 2 * time.Millisecond, Format: pcapgen.PCAPNG, LinkType: layers.LinkTypeLinuxSLL2})
	exchange(b.Conn(client6, server6))
	pathA := writeFile(t, "a.pcap", a.Bytes())
	pathB := writeFile(t, "b.pcapng", b.Bytes())

	// b given first: order must come from timestamps, not argument order.
	src, err := OpenFiles([]string{pathB, pathA}, FileOptions{})
	require.NoError(t, err)
	defer src.Close()
	segs, err := readAll(t, src)
	require.NoError(t, err)
	require.Len(t, segs, a.Packets()+b.Packets())
	for i, s := range segs {
		if i > 0 {
			assert.False(t, s.Time.Before(segs[i-1].Time), "packet %d goes back in time", i)
		}
		want := pathA
		if i%2 == 1 {
			want = pathB
		}
		assert.Equal(t, want, s.Source, "packet %d", i)
	}
	assert.Equal(t, request, stream(segs, client4))
	assert.Equal(t, request, stream(segs, client6))
}

func TestStdinPipe(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{Format: pcapgen.PCAPNG})
	exchange(w.Conn(client4, server4))
	data := gzipped(t, w.Bytes())
	r, pw, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	go func() {
		// Written in small pieces, as a pipe from tcpdump delivers it.
		for off := 0; off < len(data); off += 100 {
			pw.Write(data[off:min(off+100, len(data))])
		}
		pw.Close()
	}()
	src, err := OpenFiles([]string{"-"}, FileOptions{Stdin: r})
	require.NoError(t, err)
	defer src.Close()
	segs, err := readAll(t, src)
	require.NoError(t, err)
	require.Len(t, segs, w.Packets())
	assert.Equal(t, "stdin", segs[0].Source)
	assert.Equal(t, response, stream(segs, server4))
}

func TestCancelInterruptsBlockedRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fresh makes the blocked call's context another than the earlier
		// calls': the watch follows the context of each call, not the first.
		fresh bool
	}{
		{name: "same context throughout"},
		{name: "another context on the blocked call", fresh: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := pcapgen.New(pcapgen.Options{})
			c := w.Conn(client4, server4)
			c.Handshake()
			r, pw, err := os.Pipe()
			require.NoError(t, err)
			defer r.Close()
			defer pw.Close()
			_, err = pw.Write(w.Bytes()) // header and 3 packets; then the pipe stays open
			require.NoError(t, err)
			src, err := OpenFiles([]string{"-"}, FileOptions{Stdin: r})
			require.NoError(t, err)
			defer src.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for range 3 {
				_, err := src.Next(ctx)
				require.NoError(t, err)
			}
			if tc.fresh {
				ctx, cancel = context.WithCancel(context.Background())
				defer cancel()
			}
			time.AfterFunc(50*time.Millisecond, cancel)
			done := make(chan error, 1)
			go func() { _, err := src.Next(ctx); done <- err }()
			select {
			case err := <-done:
				assert.ErrorIs(t, err, context.Canceled)
			case <-time.After(5 * time.Second):
				t.Fatal("Next stayed blocked on the pipe after the context was cancelled")
			}
		})
	}
}

func TestPcapngInterfacesAndSections(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{Format: pcapgen.PCAPNG, LinkType: layers.LinkTypeEthernet})
	cooked := w.AddInterface(layers.LinkTypeLinuxSLL2)
	raw := w.AddInterface(layers.LinkTypeRaw)
	usb := w.AddInterface(layers.LinkType(220)) // USB: not ours, counted and skipped
	c1 := w.Conn(client4, server4)
	c2 := cooked.Conn(client6, server6)
	c3 := raw.Conn(netip.MustParseAddrPort("192.0.2.1:1234"), netip.MustParseAddrPort("192.0.2.2:80"))
	c1.Handshake()
	c2.Handshake()
	usb.Raw([]byte("usb bytes"))
	c3.Handshake()
	c1.Client([]byte(request))
	c2.Client([]byte(request))
	c3.Client([]byte(request))

	// A second section with another link type, as concatenated files have.
	second := pcapgen.New(pcapgen.Options{Format: pcapgen.PCAPNG, Null: true, Start: w.Now()})
	exchange(second.Conn(netip.MustParseAddrPort("127.0.0.1:5000"), netip.MustParseAddrPort("127.0.0.1:8080")))

	data := append(w.Bytes(), second.Bytes()...)
	src := openOne(t, writeFile(t, "multi.pcapng", data))
	segs, err := readAll(t, src)
	require.NoError(t, err)
	assert.Len(t, segs, w.Packets()-1+second.Packets())
	assert.Equal(t, request, stream(segs, client4))
	assert.Equal(t, request, stream(segs, client6))
	assert.Equal(t, request, stream(segs, netip.MustParseAddrPort("192.0.2.1:1234")))
	assert.Equal(t, request, stream(segs, netip.MustParseAddrPort("127.0.0.1:5000")))
	assert.Equal(t, uint64(1), src.Stats().UnsupportedLinkType)
}

func TestInputErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(text, []byte("GET / HTTP/1.1\r\n"), 0o644))
	empty := filepath.Join(dir, "empty.pcap")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	shortHeader := filepath.Join(dir, "short.pcap")
	full := pcapgen.New(pcapgen.Options{}).Bytes()
	require.NoError(t, os.WriteFile(shortHeader, full[:10], 0o644))
	badGzip := filepath.Join(dir, "bad.pcap.gz")
	require.NoError(t, os.WriteFile(badGzip, []byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff, 0x01, 0x02, 0x03}, 0o644))

	wifi := pcapgen.New(pcapgen.Options{LinkType: layers.LinkType(105)})
	wifi.Raw([]byte("802.11 frame"))
	wifiPath := filepath.Join(dir, "wifi.pcap")
	require.NoError(t, os.WriteFile(wifiPath, wifi.Bytes(), 0o644))

	tests := []struct {
		name     string
		path     string
		want     error
		contains []string
	}{
		{"text file", text, ErrNotCapture, []string{text, "not a pcap or pcapng capture", "47 45 54 20", "tcpdump -w"}},
		{"empty file", empty, ErrNotCapture, []string{empty, "empty"}},
		{"cut inside the file header", shortHeader, ErrTruncated, []string{shortHeader, "file header", "byte 10"}},
		{"gzip that is cut", badGzip, ErrTruncated, []string{badGzip}},
		{"unsupported link type", wifiPath, ErrUnsupportedLinkType, []string{wifiPath, "105", "Ethernet (1)", "Linux cooked v2 (276)"}},
		{"missing file", filepath.Join(dir, "nope.pcap"), fs.ErrNotExist, []string{filepath.Join(dir, "nope.pcap")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := OpenFiles([]string{tt.path}, FileOptions{})
			require.Error(t, err)
			t.Log(err)
			assert.Nil(t, src)
			assert.ErrorIs(t, err, tt.want)
			for _, s := range tt.contains {
				assert.Contains(t, err.Error(), s)
			}
		})
	}

	t.Run("unreadable file", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads files whatever their mode: run as another user to test permission errors")
		}
		p := filepath.Join(dir, "secret.pcap")
		require.NoError(t, os.WriteFile(p, full, 0o000))
		_, err := OpenFiles([]string{p}, FileOptions{})
		assert.ErrorIs(t, err, fs.ErrPermission)
		assert.Contains(t, err.Error(), p)
	})

	t.Run("pcapng with only unsupported interfaces", func(t *testing.T) {
		w := pcapgen.New(pcapgen.Options{Format: pcapgen.PCAPNG, LinkType: layers.LinkType(105)})
		w.Raw([]byte("802.11 frame"))
		src := openOne(t, writeFile(t, "wifi.pcapng", w.Bytes()))
		_, err := readAll(t, src)
		assert.ErrorIs(t, err, ErrUnsupportedLinkType)
		assert.Contains(t, err.Error(), "105")
	})

	t.Run("header only", func(t *testing.T) {
		src := openOne(t, writeFile(t, "none.pcap", full))
		_, err := src.Next(context.Background())
		assert.ErrorIs(t, err, io.EOF)
	})
}

// pcapRecordOffsets returns where each record of a little-endian pcap starts.
func pcapRecordOffsets(data []byte) []int {
	var offs []int
	for off := 24; off+16 <= len(data); {
		offs = append(offs, off)
		off += 16 + int(binary.LittleEndian.Uint32(data[off+8:]))
	}
	return offs
}

func TestTruncated(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{})
	exchange(w.Conn(client4, server4))
	whole := w.Bytes()
	offs := pcapRecordOffsets(whole)
	require.Len(t, offs, w.Packets())
	last := offs[len(offs)-1]

	ng := pcapgen.New(pcapgen.Options{Format: pcapgen.PCAPNG})
	exchange(ng.Conn(client4, server4))
	ngWhole := ng.Bytes()

	tests := []struct {
		name     string
		data     []byte
		wantSegs int
		contains []string
	}{
		{"pcap cut inside the last packet", whole[:len(whole)-5], len(offs) - 1,
			[]string{"packet 10", "cut off at byte " + strconv.Itoa(len(whole)-5), "record starts at byte " + strconv.Itoa(last)}},
		{"pcap cut inside the last record header", whole[:last+7], len(offs) - 1,
			[]string{"packet 10", "cut off at byte " + strconv.Itoa(last+7)}},
		{"pcap cut inside the fourth packet", whole[:offs[3]+20], 3, []string{"packet 4"}},
		{"pcapng cut inside the last block", ngWhole[:len(ngWhole)-3], ng.Packets() - 1, []string{"packet 10"}},
		{"pcapng cut inside a block header", ngWhole[:len(ngWhole)-ngLastBlockLen(ngWhole)+4], ng.Packets() - 1, []string{"packet 10"}},
		{"gzip of a pcap cut inside the last packet", gzipped(t, whole[:len(whole)-5]), len(offs) - 1, []string{"decompressed"}},
		{"gzip stream cut short", gzipped(t, whole)[:len(gzipped(t, whole))-12], -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "cut.pcap", tt.data)
			src := openOne(t, path)
			segs, err := readAll(t, src)
			require.Error(t, err)
			t.Log(err)
			assert.ErrorIs(t, err, ErrTruncated)
			if tt.wantSegs >= 0 {
				assert.Len(t, segs, tt.wantSegs, "every packet before the cut comes out first")
			}
			assert.Contains(t, err.Error(), path)
			for _, s := range tt.contains {
				assert.Contains(t, err.Error(), s)
			}
			// The error sticks.
			_, again := src.Next(context.Background())
			assert.ErrorIs(t, again, ErrTruncated)
		})
	}
}

// ngLastBlockLen is the length of the last block of a pcapng, from the copy
// of the length at its end.
func ngLastBlockLen(data []byte) int {
	return int(binary.LittleEndian.Uint32(data[len(data)-4:]))
}

func TestTruncatedFileMergedWithAnother(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a := pcapgen.New(pcapgen.Options{Start: t0})
	exchange(a.Conn(client4, server4))
	b := pcapgen.New(pcapgen.Options{Start: t0.Add(time.Microsecond)})
	exchange(b.Conn(client6, server6))
	whole := a.Bytes()
	cutA := writeFile(t, "a.pcap", whole[:len(whole)/2])
	pathB := writeFile(t, "b.pcap", b.Bytes())
	src, err := OpenFiles([]string{cutA, pathB}, FileOptions{})
	require.NoError(t, err)
	defer src.Close()
	segs, err := readAll(t, src)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Contains(t, err.Error(), cutA)
	// All of b is read, though a broke off half way.
	assert.Equal(t, response, stream(segs, server6))
}
