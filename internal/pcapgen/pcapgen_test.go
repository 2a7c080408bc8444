package pcapgen

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	client4 = netip.MustParseAddrPort("10.0.0.1:40000")
	server4 = netip.MustParseAddrPort("10.0.0.2:8000")
	client6 = netip.MustParseAddrPort("[2001:db8::1]:40000")
	server6 = netip.MustParseAddrPort("[2001:db8::2]:8000")
)

// decodeAll decodes every packet of a pcap with gopacket's full decoder, a
// reader independent of the one under test in package capture.
func decodeAll(t *testing.T, data []byte) []gopacket.Packet {
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	var out []gopacket.Packet
	for {
		d, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		p := gopacket.NewPacket(d, r.LinkType(), gopacket.Default)
		p.Metadata().CaptureInfo = ci
		out = append(out, p)
	}
}

func TestConversationSequenceNumbers(t *testing.T) {
	w := New(Options{})
	c := w.Conn(client4, server4, ISN(0xfffffff0, 7), MSS(10))
	c.Handshake()
	c.Client([]byte("0123456789abcdefghij")) // two segments across the 2^32 wrap
	c.Server([]byte("ok"))
	c.Close()
	pkts := decodeAll(t, w.Bytes())
	require.Len(t, pkts, 3+3+2+3)
	type want struct {
		seq, ack uint32
		flags    string
		payload  string
	}
	wants := []want{
		{0xfffffff0, 0, "S", ""},
		{7, 0xfffffff1, "SA", ""},
		{0xfffffff1, 8, "A", ""},
		{0xfffffff1, 8, "A", "0123456789"},
		{0xfffffffb, 8, "PA", "abcdefghij"},
		{8, 5, "A", ""}, // 0xfffffff1 + 20 wraps to 5
		{8, 5, "PA", "ok"},
		{5, 10, "A", ""},
		{5, 10, "FA", ""},
		{10, 6, "FA", ""},
		{6, 11, "A", ""},
	}
	for i, p := range pkts {
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		require.True(t, ok, "packet %d: %v", i, p)
		flags := ""
		for _, f := range []struct {
			on bool
			s  string
		}{{tcp.FIN, "F"}, {tcp.SYN, "S"}, {tcp.RST, "R"}, {tcp.PSH, "P"}, {tcp.ACK, "A"}} {
			if f.on {
				flags += f.s
			}
		}
		got := want{tcp.Seq, tcp.Ack, flags, string(tcp.Payload)}
		assert.Equal(t, wants[i], got, "packet %d", i)
	}
}

func TestChecksumsAndFramingWithTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("checking checksums independently needs tshark on PATH")
	}
	tests := []struct {
		name string
		opts Options
		fam  string
	}{
		{"ethernet ipv4", Options{}, "4"},
		{"ethernet qinq ipv6", Options{VLANs: []uint16{10, 20}}, "6"},
		{"sll ipv4", Options{LinkType: layers.LinkTypeLinuxSLL}, "4"},
		{"sll2 ipv6", Options{LinkType: layers.LinkTypeLinuxSLL2}, "6"},
		{"null ipv6", Options{Null: true}, "6"},
		{"loop ipv4", Options{LinkType: layers.LinkTypeLoop}, "4"},
		{"raw ipv4 pcapng", Options{LinkType: layers.LinkTypeRaw, Format: PCAPNG}, "4"},
		{"nanosecond big-endian", Options{Format: PCAPNano, BigEndian: true}, "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := client4, server4
			if tt.fam == "6" {
				client, server = client6, server6
			}
			w := New(tt.opts)
			c := w.Conn(client, server, IPv6ExtensionHeaders())
			c.Handshake()
			c.Client([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			c.Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
			segs := c.ClientSegments(bytes.Repeat([]byte("f"), 300), 0)
			c.EmitFragmented(segs[0], 64)
			c.Close()
			path := filepath.Join(t.TempDir(), "c.pcap")
			require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))
			cmd := exec.Command(tshark, "-n", "-r", path,
				"-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
				"-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message", "-e", "tcp.srcport")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr // tshark warns there when run as root
			out, err := cmd.Output()
			require.NoError(t, err, "%s", stderr.String())
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			require.Len(t, lines, w.Packets())
			for _, l := range lines {
				assert.NotContains(t, strings.ToLower(l), "bad checksum", l)
				assert.NotContains(t, strings.ToLower(l), "malformed", l)
			}
			// The last segment of the fragmented datagram reassembles to TCP.
			assert.Contains(t, string(out), "40000")
		})
	}
}

func TestFragmentOrderAndSnaplen(t *testing.T) {
	w := New(Options{Snaplen: 50})
	c := w.Conn(client4, server4)
	segs := c.ClientSegments(bytes.Repeat([]byte("z"), 100), 0)
	n := c.EmitFragmented(segs[0], 40, 2, 0)
	assert.Equal(t, 3, n, "120 bytes of TCP in 40-byte pieces")
	assert.Equal(t, 2, w.Packets())
	pkts := decodeAll(t, w.Bytes())
	ip := pkts[0].Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	assert.Equal(t, uint16(80/8), ip.FragOffset)
	assert.Zero(t, ip.Flags&layers.IPv4MoreFragments, "the last fragment")
	ci := pkts[1].Metadata().CaptureInfo
	assert.Equal(t, 50, ci.CaptureLength)
	assert.Equal(t, 14+20+40, ci.Length)
}

func TestPcapRefusesSeveralInterfaces(t *testing.T) {
	w := New(Options{})
	w.AddInterface(layers.LinkTypeRaw)
	_, err := w.WriteTo(io.Discard)
	assert.ErrorContains(t, err, "PCAPNG")
}

func TestMixedFamiliesFail(t *testing.T) {
	w := New(Options{})
	w.Conn(client4, server6).Handshake()
	assert.ErrorContains(t, w.Err(), "mixes IPv4 and IPv6")
}
