package reassembly

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a Stream that writes down every call.
type recorder struct {
	conn   Conn
	data   [2]strings.Builder
	gaps   [2]int
	ends   [2]bool
	closed []CloseReason
	events []string
	// times are each chunk's bytes with its Seen and Completed, from t0.
	times []string
}

func (r *recorder) Data(c Chunk) {
	r.times = append(r.times, fmt.Sprintf("%s %q seen %v completed %v", c.Side, c.Bytes, c.Seen.Sub(t0), c.Completed.Sub(t0)))
	r.data[c.Side].Write(c.Bytes)
	r.events = append(r.events, fmt.Sprintf("data %s %q", c.Side, c.Bytes))
}
func (r *recorder) Gap(s Side, n int, _ time.Time) {
	r.gaps[s] += n
	r.events = append(r.events, fmt.Sprintf("gap %s %d", s, n))
}
func (r *recorder) End(s Side, _ time.Time) { r.ends[s] = true }
func (r *recorder) Close(reason CloseReason, _ time.Time) {
	r.closed = append(r.closed, reason)
}

type recorderFactory struct{ streams []*recorder }

func (f *recorderFactory) NewStream(c Conn) Stream {
	r := &recorder{conn: c}
	f.streams = append(f.streams, r)
	return r
}

var (
	client = netip.MustParseAddrPort("10.0.0.1:40000")
	server = netip.MustParseAddrPort("10.0.0.2:8000")
	t0     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// seg is one segment of a scripted connection: from client (c) or server (s),
// at a relative sequence offset of that side's data.
type seg struct {
	fromClient bool
	flags      string // any of S A F R
	off        int
	data       string
	at         time.Duration
}

const clientISN, serverISN = 1000, 5000

// decoded round-trips tcp through its wire form, as a capture decoder hands it on.
func decoded(t testing.TB, tcp *layers.TCP, payload []byte) *layers.TCP {
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, tcp, gopacket.Payload(payload)))
	out := &layers.TCP{}
	require.NoError(t, out.DecodeFromBytes(buf.Bytes(), gopacket.NilDecodeFeedback))
	return out
}

func feed(t testing.TB, a *Assembler, segs []seg) { feedFrom(t, a, client, server, segs) }

// feedFrom feeds segs of the connection between cli and srv, over IPv6 when
// their addresses are (IPv4-mapped ones included).
func feedFrom(t testing.TB, a *Assembler, cli, srv netip.AddrPort, segs []seg) {
	netType := layers.EndpointIPv4
	if cli.Addr().Is6() {
		netType = layers.EndpointIPv6
	}
	for _, s := range segs {
		src, dst := cli, srv
		isn, peer := uint32(clientISN), uint32(serverISN)
		if !s.fromClient {
			src, dst = srv, cli
			isn, peer = serverISN, clientISN
		}
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
			Seq: isn + 1 + uint32(s.off), Ack: peer + 1,
			SYN: strings.Contains(s.flags, "S"), ACK: strings.Contains(s.flags, "A"),
			FIN: strings.Contains(s.flags, "F"), RST: strings.Contains(s.flags, "R"),
		}
		if tcp.SYN {
			tcp.Seq = isn
		}
		tcp = decoded(t, tcp, []byte(s.data))
		netFlow := gopacket.NewFlow(netType, src.Addr().AsSlice(), dst.Addr().AsSlice())
		a.Assemble(netFlow, tcp, gopacket.CaptureInfo{Timestamp: t0.Add(s.at), CaptureLength: 60 + len(s.data), Length: 60 + len(s.data)}, "test")
	}
}

func handshake() []seg {
	return []seg{{true, "S", 0, "", 0}, {false, "SA", 0, "", 1}, {true, "A", 0, "", 2}}
}

func TestAssembler(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name       string
		segs       []seg
		tick       time.Duration // Tick to t0+tick before FlushAll, if set
		wantClient string
		wantServer string
		wantGaps   [2]int
		wantClose  CloseReason
		wantSYN    bool
		check      func(t *testing.T, r *recorder, st Stats)
	}{
		{
			name: "in order with FIN both ways",
			segs: append(handshake(),
				seg{true, "A", 0, "GET / HTTP/1.1\r\n\r\n", 3 * ms},
				seg{false, "A", 0, "HTTP/1.1 200 OK\r\n\r\n", 4 * ms},
				seg{true, "AF", 18, "", 5 * ms},
				seg{false, "AF", 19, "", 6 * ms}),
			wantClient: "GET / HTTP/1.1\r\n\r\n", wantServer: "HTTP/1.1 200 OK\r\n\r\n",
			wantClose: Closed, wantSYN: true,
			check: func(t *testing.T, r *recorder, _ Stats) {
				assert.Equal(t, [2]bool{true, true}, r.ends, "both FINs are reported as End")
			},
		},
		{
			name: "out of order segments are put back in order",
			segs: append(handshake(),
				seg{true, "A", 4, "ABCD", 3 * ms},
				seg{true, "A", 8, "EFGH", 4 * ms},
				seg{true, "A", 0, "0123", 5 * ms}),
			wantClient: "0123ABCDEFGH", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, _ *recorder, st Stats) {
				assert.EqualValues(t, 2, st.OutOfOrder)
			},
		},
		{
			name: "retransmissions and duplicates are delivered once",
			segs: append(handshake(),
				seg{true, "A", 0, "0123", 3 * ms},
				seg{true, "A", 0, "0123", 4 * ms},
				seg{true, "A", 4, "4567", 5 * ms},
				seg{true, "A", 4, "4567", 6 * ms}),
			wantClient: "01234567", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, _ *recorder, st Stats) {
				// gopacket reports overlaps with the next delivery, so the last
				// duplicate is not counted yet.
				assert.EqualValues(t, 4, st.OverlapBytes)
			},
		},
		{
			name: "overlapping segment: bytes already delivered win",
			segs: append(handshake(),
				seg{true, "A", 0, "012345", 3 * ms},
				seg{true, "A", 3, "XYZ678", 4 * ms}),
			wantClient: "012345678", wantClose: EndOfCapture, wantSYN: true,
		},
		{
			name: "earlier segment overlapping held later bytes: the held bytes win",
			segs: append(handshake(),
				seg{true, "A", 5, "aaaa HTTP", 3 * ms},
				seg{true, "A", 0, "GET /bbbb ", 4 * ms}),
			wantClient: "GET /aaaa HTTP", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, _ *recorder, st Stats) {
				assert.EqualValues(t, 5, st.OverlapBytes, "the 5 conflicting bytes are discarded and counted")
				assert.EqualValues(t, 1, st.OverlapPackets)
			},
		},
		{
			name: "a segment spanning two held ones fills only the holes around them",
			segs: append(handshake(),
				seg{true, "A", 4, "EFGH", 3 * ms},
				seg{true, "A", 12, "MNOP", 4 * ms},
				seg{true, "A", 0, "0123xxxx89ABxxxxQRST", 5 * ms}),
			wantClient: "0123EFGH89ABMNOPQRST", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, _ *recorder, st Stats) {
				assert.EqualValues(t, 8, st.OverlapBytes)
			},
		},
		{
			name: "another copy of a held segment with other bytes is dropped",
			segs: append(handshake(),
				seg{true, "A", 4, "ABCD", 3 * ms},
				seg{true, "A", 4, "WXYZ", 4 * ms},
				seg{true, "A", 0, "0123", 5 * ms}),
			wantClient: "0123ABCD", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, _ *recorder, st Stats) {
				assert.EqualValues(t, 4, st.OverlapBytes)
			},
		},
		{
			name: "an out-of-order segment overlapping the end of a held one keeps only its new bytes",
			segs: append(handshake(),
				seg{true, "A", 4, "ABCDEF", 3 * ms},
				seg{true, "A", 8, "xxKLMN", 4 * ms},
				seg{true, "A", 0, "0123", 5 * ms}),
			wantClient: "0123ABCDEFKLMN", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, _ *recorder, st Stats) {
				assert.EqualValues(t, 2, st.OverlapBytes)
			},
		},
		{
			name: "a FIN segment whose end is held still ends the side",
			segs: append(handshake(),
				seg{true, "A", 4, "ABCD", 3 * ms},
				seg{true, "AF", 0, "0123zzzz", 4 * ms}),
			wantClient: "0123ABCD", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, r *recorder, st Stats) {
				assert.True(t, r.ends[Initiator], "the FIN is kept")
				assert.EqualValues(t, 4, st.OverlapBytes)
			},
		},
		{
			name: "a segment far beyond the held bytes is not held with them",
			segs: append(handshake(),
				seg{true, "A", 4, "ABCD", 3 * ms},
				seg{true, "A", 1 << 29, "far", 4 * ms},
				seg{true, "A", 0, "0123", 5 * ms}),
			wantClient: "0123ABCD", wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, r *recorder, st Stats) {
				assert.EqualValues(t, 1, st.FarSegments)
			},
		},
		{
			name: "a lost segment becomes a gap of its size",
			segs: append(handshake(),
				seg{true, "A", 0, "0123", 3 * ms},
				seg{true, "A", 8, "89", 4 * ms}),
			wantClient: "012389", wantGaps: [2]int{4, 0}, wantClose: EndOfCapture, wantSYN: true,
		},
		{
			name: "a gap is given up after the reorder wait, before the end",
			segs: append(handshake(),
				seg{true, "A", 0, "0123", 3 * ms},
				seg{true, "A", 8, "89", 4 * ms},
				seg{false, "A", 0, "later", 3 * time.Second}),
			wantClient: "012389", wantServer: "later", wantGaps: [2]int{4, 0}, wantClose: EndOfCapture, wantSYN: true,
			check: func(t *testing.T, r *recorder, _ Stats) {
				assert.Equal(t, []string{`data initiator "0123"`, "gap initiator 4", `data initiator "89"`, `data responder "later"`}, r.events)
			},
		},
		{
			name:       "capture started mid-connection",
			segs:       []seg{{true, "A", 100, "POST /x HTTP/1.1\r\n", 0}, {false, "A", 50, "HTTP/1.1 204 No Content\r\n\r\n", ms}},
			wantClient: "POST /x HTTP/1.1\r\n", wantServer: "HTTP/1.1 204 No Content\r\n\r\n", wantClose: EndOfCapture,
			check: func(t *testing.T, r *recorder, st Stats) {
				assert.EqualValues(t, 1, st.MidStream)
			},
		},
		{
			name:       "RST closes at once",
			segs:       append(handshake(), seg{true, "A", 0, "GET", 3 * ms}, seg{false, "R", 0, "", 4 * ms}, seg{true, "A", 3, "more", 5 * ms}),
			wantClient: "GET", wantClose: Closed, wantSYN: true,
		},
		{
			name:       "idle connections close on the idle timeout",
			segs:       append(handshake(), seg{true, "A", 0, "GET", 3 * ms}),
			tick:       3 * time.Minute,
			wantClient: "GET", wantClose: IdleTimeout, wantSYN: true,
		},
		{
			name:       "SYN-ACK first: the SYN was missed but the client is known",
			segs:       []seg{{false, "SA", 0, "", 0}, {true, "A", 0, "GET / HTTP/1.1\r\n\r\n", ms}},
			wantClient: "GET / HTTP/1.1\r\n\r\n", wantClose: EndOfCapture, wantSYN: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &recorderFactory{}
			a := NewAssembler(f, Options{})
			feed(t, a, tt.segs)
			if tt.tick > 0 {
				a.Tick(t0.Add(tt.tick))
			}
			a.FlushAll(EndOfCapture)
			require.Len(t, f.streams, 1)
			r := f.streams[0]
			assert.Equal(t, client, r.conn.Initiator)
			assert.Equal(t, server, r.conn.Responder)
			assert.Equal(t, tt.wantSYN, r.conn.SYNSeen)
			assert.Equal(t, tt.wantClient, r.data[Initiator].String())
			assert.Equal(t, tt.wantServer, r.data[Responder].String())
			assert.Equal(t, tt.wantGaps, r.gaps)
			assert.Equal(t, []CloseReason{tt.wantClose}, r.closed, "Close is called exactly once")
			st := a.Stats()
			assert.EqualValues(t, 0, st.Open)
			if tt.check != nil {
				tt.check(t, r, st)
			}
		})
	}
}

func TestAssemblerBoundsOutOfOrderBytes(t *testing.T) {
	f := &recorderFactory{}
	a := NewAssembler(f, Options{MaxBufferedBytesPerConn: 4 * pageSize})
	segs := handshake()
	// The first 100 bytes never come; 40 segments of 100 bytes wait behind them.
	for i := 1; i <= 40; i++ {
		segs = append(segs, seg{true, "A", i * 100, strings.Repeat("x", 100), time.Duration(3+i) * time.Millisecond})
	}
	feed(t, a, segs)
	r := f.streams[0]
	// The cap forces the hole to be given up before the end of the capture.
	assert.Equal(t, 100, r.gaps[Initiator])
	assert.Greater(t, r.data[Initiator].Len(), 0)
	a.FlushAll(EndOfCapture)
	assert.Equal(t, 4000, r.data[Initiator].Len())
}

func TestAssemblerManyConnections(t *testing.T) {
	f := &recorderFactory{}
	a := NewAssembler(f, Options{})
	for i := 0; i < 50; i++ {
		c := netip.AddrPortFrom(client.Addr(), uint16(20000+i))
		tcp := decoded(t, &layers.TCP{SrcPort: layers.TCPPort(c.Port()), DstPort: 8000, Seq: 1, ACK: true}, []byte("GET"))
		netFlow := gopacket.NewFlow(layers.EndpointIPv4, c.Addr().AsSlice(), server.Addr().AsSlice())
		a.Assemble(netFlow, tcp, gopacket.CaptureInfo{Timestamp: t0}, "test")
	}
	assert.EqualValues(t, 50, a.Stats().Open)
	a.FlushAll(Stopped)
	require.Len(t, f.streams, 50)
	for _, r := range f.streams {
		assert.Equal(t, "GET", r.data[Initiator].String())
		assert.Equal(t, []CloseReason{Stopped}, r.closed)
	}
}

// TestAssemblerPortReuseAfterRST: a RST ends the whole connection, so a new
// connection on the same addresses and ports (a new SYN) is a new stream with
// its own bytes, not a continuation of the old one.
func TestAssemblerPortReuseAfterRST(t *testing.T) {
	f := &recorderFactory{}
	a := NewAssembler(f, Options{})
	feed(t, a, append(handshake(), seg{true, "A", 0, "GET /abandoned HTTP/1.1\r\n", 3 * time.Millisecond}, seg{true, "RA", 25, "", 4 * time.Millisecond}))
	require.Len(t, f.streams, 1)
	assert.Equal(t, []CloseReason{Closed}, f.streams[0].closed)
	second := []seg{{true, "S", 0, "", 100 * time.Millisecond}, {false, "SA", 0, "", 101 * time.Millisecond}, {true, "A", 0, "GET /new HTTP/1.1\r\n\r\n", 102 * time.Millisecond}}
	feed(t, a, second)
	a.FlushAll(EndOfCapture)
	require.Len(t, f.streams, 2, "the new SYN opens a new stream")
	assert.Equal(t, "GET /new HTTP/1.1\r\n\r\n", f.streams[1].data[Initiator].String())
	assert.EqualValues(t, 0, a.Stats().Open)
}

// gopacketConns flushes a and returns how many connections gopacket still
// held: its FlushAll reports that, and no other public API does.
func gopacketConns(a *Assembler) int {
	a.reason = EndOfCapture
	defer func() { a.reason = Closed }()
	return a.asm.FlushAll()
}

// pagesUsed is how many pages gopacket holds out-of-order bytes in, from its
// Dump.
func pagesUsed(t *testing.T, a *Assembler) int {
	var n int
	_, err := fmt.Sscanf(a.asm.Dump(), "pageCache: used: %d:", &n)
	require.NoError(t, err)
	return n
}

// TestAssemblerEvictionForgetsConnections: a stream evicted to stay under
// MaxStreams is also dropped by gopacket, with the bytes it buffered, so a
// flood of connections holds no more than MaxStreams of them.
func TestAssemblerEvictionForgetsConnections(t *testing.T) {
	ms := time.Millisecond
	const conns, limit = 300, 10
	tests := []struct {
		name string
		segs []seg
	}{
		{name: "SYN only", segs: []seg{{true, "S", 0, "", 0}}},
		{name: "SYN-ACK only (the SYN missed)", segs: []seg{{false, "SA", 0, "", 0}}},
		{name: "mid-stream data", segs: []seg{{true, "A", 100, "GET / HTTP/1.1\r\n", 0}}},
		{name: "bytes held out of order", segs: append(handshake(), seg{true, "A", 0, "GET", 3 * ms}, seg{true, "A", 100, "late", 4 * ms})},
		{name: "one side closed by FIN", segs: append(handshake(), seg{true, "A", 0, "GET", 3 * ms}, seg{true, "AF", 3, "", 4 * ms})},
	}
	nets := []struct{ name, cli, srv string }{
		{"IPv4", "10.0.0.1", "10.0.0.2"},
		{"IPv6", "2001:db8::1", "2001:db8::2"},
		{"IPv4-mapped IPv6", "::ffff:10.0.0.1", "::ffff:10.0.0.2"},
	}
	for _, tt := range tests {
		for _, nw := range nets {
			t.Run(tt.name+"/"+nw.name, func(t *testing.T) {
				evictionForgets(t, tt.segs, netip.MustParseAddr(nw.cli), netip.MustParseAddr(nw.srv), conns, limit)
			})
		}
	}
}

// evictionForgets opens conns connections from cli with segs under MaxStreams
// limit and checks gopacket holds only limit of them.
func evictionForgets(t *testing.T, segs []seg, cli, srv netip.Addr, conns, limit int) {
	f := &recorderFactory{}
	a := NewAssembler(f, Options{MaxStreams: limit})
	for i := range conns {
		feedFrom(t, a, netip.AddrPortFrom(cli, uint16(20000+i)), netip.AddrPortFrom(srv, server.Port()), segs)
	}
	st := a.Stats()
	assert.EqualValues(t, conns, st.Connections)
	assert.EqualValues(t, conns-limit, st.Evicted)
	assert.EqualValues(t, limit, st.Open)
	assert.LessOrEqual(t, pagesUsed(t, a), limit, "the evicted connections' buffered pages are released")
	assert.Equal(t, limit, gopacketConns(a), "gopacket holds only the connections not evicted")

	require.Len(t, f.streams, conns)
	reasons := map[CloseReason]int{}
	for _, r := range f.streams {
		require.Len(t, r.closed, 1, "%v: Close is called exactly once", r.conn)
		reasons[r.closed[0]]++
	}
	assert.Equal(t, map[CloseReason]int{Evicted: conns - limit, EndOfCapture: limit}, reasons)
	assert.EqualValues(t, 0, a.Stats().Open)
}

// TestAssemblerEvictedConnectionSpeaksAgain: once evicted, a connection that
// sends again is a new one, taken up where it is, not a continuation gopacket
// would hold back behind the bytes it missed while evicted.
func TestAssemblerEvictedConnectionSpeaksAgain(t *testing.T) {
	ms := time.Millisecond
	other := netip.AddrPortFrom(client.Addr(), 40001)
	f := &recorderFactory{}
	a := NewAssembler(f, Options{MaxStreams: 1})
	feed(t, a, append(handshake(), seg{true, "A", 0, "GET /a HTTP/1.1\r\n", 3 * ms}))
	feedFrom(t, a, other, server, []seg{{true, "S", 0, "", 4 * ms}})
	require.Len(t, f.streams, 1)
	first := f.streams[0]
	assert.Equal(t, []CloseReason{Evicted}, first.closed, "the SYN of another connection evicts it")
	assert.Equal(t, "GET /a HTTP/1.1\r\n", first.data[Initiator].String())

	// 100 bytes on, past bytes never seen.
	feed(t, a, []seg{{true, "A", 100, "Host: x\r\n\r\n", 5 * ms}})
	byPort := map[uint16][]*recorder{}
	for _, r := range f.streams {
		byPort[r.conn.Initiator.Port()] = append(byPort[r.conn.Initiator.Port()], r)
	}
	require.Len(t, byPort[client.Port()], 2, "a new stream for the evicted connection")
	again := byPort[client.Port()][1]
	assert.Equal(t, client, again.conn.Initiator)
	assert.False(t, again.conn.SYNSeen)
	assert.Equal(t, "Host: x\r\n\r\n", again.data[Initiator].String(), "delivered at once, not held for the missed bytes")
	assert.Equal(t, []CloseReason{Evicted}, first.closed, "the old stream is not closed again")
	assert.EqualValues(t, 1, a.Stats().MidStream)
	require.Len(t, byPort[other.Port()], 1)
	assert.Equal(t, []CloseReason{Evicted}, byPort[other.Port()][0].closed, "the new stream evicts the other connection")

	a.FlushAll(EndOfCapture)
	assert.Equal(t, []CloseReason{EndOfCapture}, again.closed)
	assert.EqualValues(t, 2, a.Stats().Evicted)
	assert.Len(t, f.streams, 3)
}

type discardStream struct{}

func (discardStream) Data(Chunk)                   {}
func (discardStream) Gap(Side, int, time.Time)     {}
func (discardStream) End(Side, time.Time)          {}
func (discardStream) Close(CloseReason, time.Time) {}
func (discardStream) NewStream(Conn) Stream        { return discardStream{} }

// TestAssemblerSYNFloodMemory: the memory a SYN flood holds is bounded by
// MaxStreams, not by the number of SYNs (each cost about 1 KiB of heap until
// the idle timeout when evicted connections stayed in gopacket's pool).
func TestAssemblerSYNFloodMemory(t *testing.T) {
	const syns, limit = 50_000, 100
	a := NewAssembler(discardStream{}, Options{MaxStreams: limit})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var hdr [20]byte
	for i := range syns {
		binary.BigEndian.PutUint16(hdr[0:], uint16(i))
		binary.BigEndian.PutUint16(hdr[2:], server.Port())
		binary.BigEndian.PutUint32(hdr[4:], uint32(i)*7919)
		hdr[12], hdr[13] = 5<<4, 0x02 // 20 bytes, SYN
		tcp := &layers.TCP{}
		require.NoError(t, tcp.DecodeFromBytes(bytes.Clone(hdr[:]), gopacket.NilDecodeFeedback))
		src := []byte{10, 1, byte(i >> 16), byte(i >> 8)}
		netFlow := gopacket.NewFlow(layers.EndpointIPv4, src, server.Addr().AsSlice())
		a.Assemble(netFlow, tcp, gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Microsecond)}, "test")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB for %d SYNs", grown>>10, syns)
	assert.Less(t, grown, int64(4<<20), "heap grown after %d SYNs with MaxStreams %d", syns, limit)
	assert.EqualValues(t, syns-limit, a.Stats().Evicted)
	runtime.KeepAlive(a)
}

// A chunk is seen when its first byte was captured and completed when the
// segment that let it out was: one segment's time for in-order data; for
// bytes held until a hole is filled, the time of the segment filling it.
func TestAssemblerChunkTimes(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		name string
		segs []seg
		want []string
	}{
		{"in order", []seg{{true, "A", 0, "GET", 10 * ms}, {true, "A", 3, " /", 20 * ms}, {false, "A", 0, "HTTP", 30 * ms}},
			[]string{`initiator "GET" seen 10ms completed 10ms`, `initiator " /" seen 20ms completed 20ms`, `responder "HTTP" seen 30ms completed 30ms`}},
		{"a hole filled", []seg{{true, "A", 0, "GET", 10 * ms}, {true, "A", 5, "a", 20 * ms}, {true, "A", 3, " /", 30 * ms}},
			[]string{`initiator "GET" seen 10ms completed 10ms`, `initiator " /a" seen 30ms completed 30ms`}},
		{"a late segment's bytes, already seen", []seg{{true, "A", 3, " /", 10 * ms}, {true, "A", 0, "GET", 20 * ms}, {true, "A", 5, "b", 30 * ms}},
			[]string{`initiator "GET /" seen 20ms completed 20ms`, `initiator "b" seen 30ms completed 30ms`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &recorderFactory{}
			a := NewAssembler(f, Options{})
			feed(t, a, append(handshake(), tt.segs...))
			require.Len(t, f.streams, 1)
			assert.Equal(t, tt.want, f.streams[0].times)
		})
	}
}
