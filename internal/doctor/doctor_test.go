package doctor

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/reassembly"
)

// goClientHello is what a Go TLS client sends first.
func goClientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	go func() {
		tls.Client(cli, cfg).Handshake()
		cli.Close()
	}()
	head := make([]byte, 5)
	_, err := io.ReadFull(srv, head)
	require.NoError(t, err)
	body := make([]byte, int(head[3])<<8|int(head[4]))
	_, err = io.ReadFull(srv, body)
	require.NoError(t, err)
	return append(head, body...)
}

func TestParseClientHello(t *testing.T) {
	hello := goClientHello(t, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	require.True(t, looksLikeTLS(hello))
	h, ok := parseClientHello(hello)
	require.True(t, ok)
	assert.Equal(t, "api.example.com", h.SNI)
	assert.Equal(t, []string{"h2", "http/1.1"}, h.ALPN)

	// Without SNI (an IP address) or ALPN.
	h, ok = parseClientHello(goClientHello(t, &tls.Config{ServerName: "10.0.0.1", InsecureSkipVerify: true}))
	require.True(t, ok)
	assert.Empty(t, h.SNI)
	assert.Empty(t, h.ALPN)

	// The same hello split over two records still parses.
	body := hello[5:]
	cut := len(body) / 2
	split := append([]byte{0x16, 3, 1, byte(cut >> 8), byte(cut)}, body[:cut]...)
	split = append(split, 0x16, 3, 1, byte((len(body)-cut)>>8), byte(len(body)-cut))
	split = append(split, body[cut:]...)
	h, ok = parseClientHello(split)
	require.True(t, ok)
	assert.Equal(t, "api.example.com", h.SNI)

	// Every prefix and every corruption is refused or parsed, never a panic.
	for i := range len(hello) {
		parseClientHello(hello[:i])
		bad := bytes.Clone(hello)
		bad[i] ^= 0xff
		parseClientHello(bad)
	}
	_, ok = parseClientHello(hello[:40])
	assert.False(t, ok)
}

func TestClassify(t *testing.T) {
	for _, tt := range []struct {
		client, server string
		want           string
	}{
		{"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\n", kindHTTP1},
		{"", "HTTP/1.1 200 OK\r\n", kindHTTP1},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", "", kindH2},
		{"\x16\x03\x01\x00\x05hello", "", kindTLS},
		{"\x17\x03\x03\x00\x20", "\x17\x03\x03\x00\x20", kindTLS},
		{"SSH-2.0-OpenSSH_9.6\r\n", "", kindOther},
		{"", "", kindEmpty},
	} {
		s := &streamInfo{clientSide: reassembly.Initiator}
		s.head[reassembly.Initiator] = []byte(tt.client)
		s.head[reassembly.Responder] = []byte(tt.server)
		s.classify()
		assert.Equal(t, tt.want, s.kind, "%q / %q", tt.client, tt.server)
	}
}

// segment builds a decoded segment the way capture hands it on.
func segment(t *testing.T, src, dst netip.AddrPort, payload []byte, fixSum func(tcp *layers.TCP, sum uint16) uint16) *capture.Segment {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), ACK: true, PSH: true, Window: 100}
	require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ip, tcp, gopacket.Payload(payload)))
	data := buf.Bytes()
	seg := &capture.Segment{NetFlow: gopacket.NewFlow(layers.EndpointIPv4, ip.SrcIP, ip.DstIP)}
	require.NoError(t, seg.TCP.DecodeFromBytes(data[20:], gopacket.NilDecodeFeedback))
	if fixSum != nil {
		sum := fixSum(&seg.TCP, seg.TCP.Checksum)
		seg.TCP.Contents[16], seg.TCP.Contents[17] = byte(sum>>8), byte(sum)
	}
	seg.CaptureInfo = gopacket.CaptureInfo{CaptureLength: len(data), Length: len(data)}
	return seg
}

func TestChecksums(t *testing.T) {
	client := netip.MustParseAddrPort("10.0.0.1:40000")
	server := netip.MustParseAddrPort("10.0.0.2:8000")
	ports, err := capture.ParsePorts("8000")
	require.NoError(t, err)
	a := newAnalyzer(ports, map[netip.Addr]bool{server.Addr(): true}, reassembly.Options{})
	payload := []byte("GET / HTTP/1.1\r\n\r\n")
	// Correct.
	a.checksum(segment(t, client, server, payload, nil))
	// Partial: the pseudo-header sum, as the kernel leaves it for the NIC.
	partial := func(tcp *layers.TCP, _ uint16) uint16 {
		return fold(sum16(client.Addr().AsSlice()) + sum16(server.Addr().AsSlice()) + 6 + uint32(len(tcp.Contents)+len(tcp.Payload)))
	}
	a.checksum(segment(t, client, server, payload, partial))
	// Sent by this host with garbage in the field: offload too.
	a.checksum(segment(t, server, client, payload, func(*layers.TCP, uint16) uint16 { return 0x1234 }))
	// Received with garbage: damage.
	a.checksum(segment(t, client, server, payload, func(_ *layers.TCP, s uint16) uint16 { return s ^ 0x0101 }))
	assert.Equal(t, checksumCounts{checked: 4, bad: 3, offload: 2, badSent: 1, badReceived: 2}, a.sum)
}

func TestVerdict(t *testing.T) {
	r := &Report{Checks: []Check{
		{Name: "traffic", Status: Fail, Reason: "tls"},
		{Name: "snaplen", Status: Fail, Reason: "cut"},
		{Name: "otas key", Status: Warn, Blocking: true, Reason: "no key"},
	}}
	r.conclude()
	assert.Equal(t, "snaplen", r.VerdictCheck, "the snap length explains unreadable traffic")
	assert.False(t, r.OK)

	r = &Report{Checks: []Check{{Name: "gaps", Status: Warn, Reason: "gaps"}, {Name: "otas key", Status: Warn, Blocking: true, Reason: "no key"}}}
	r.conclude()
	assert.Equal(t, "otas key", r.VerdictCheck)
	assert.True(t, r.OK)

	r = &Report{Checks: []Check{{Name: "gaps", Status: Warn, Reason: "gaps", Next: "x"}, {Name: "traffic", Status: OK}}}
	r.conclude()
	assert.Equal(t, "all good (1 warning above)", r.Verdict)
	var b strings.Builder
	require.NoError(t, r.WriteText(&b))
	assert.Contains(t, b.String(), "⚠ gaps     gaps\n")
	assert.Contains(t, b.String(), "→ x\n")
}

// nopStream stands in for the parser.
type nopStream struct{}

func (nopStream) Data(reassembly.Chunk)                   {}
func (nopStream) Gap(reassembly.Side, int, time.Time)     {}
func (nopStream) End(reassembly.Side, time.Time)          {}
func (nopStream) Close(reassembly.CloseReason, time.Time) {}

// TestTeeKeepsLittle: a ClientHello split over segments is still read, and
// once a connection is classified its first bytes are let go.
func TestTeeKeepsLittle(t *testing.T) {
	hello := goClientHello(t, &tls.Config{ServerName: "split.example.com"})
	info := &streamInfo{clientSide: reassembly.Responder}
	tee := &teeStream{inner: nopStream{}, info: info}
	for i := 0; i < len(hello); i += 100 {
		tee.Data(reassembly.Chunk{Side: reassembly.Responder, Bytes: hello[i:min(i+100, len(hello))]})
	}
	require.True(t, info.decided)
	assert.Equal(t, kindTLS, info.kind)
	assert.Equal(t, "split.example.com", info.hello.SNI)
	assert.Nil(t, info.head[reassembly.Responder])

	info = &streamInfo{clientSide: reassembly.Initiator}
	tee = &teeStream{inner: nopStream{}, info: info}
	tee.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: []byte("POST /upload HTTP/1.1\r\nHost: a\r\n")})
	tee.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: bytes.Repeat([]byte("x"), 1<<20)})
	assert.Equal(t, kindHTTP1, info.kind)
	assert.Nil(t, info.head[reassembly.Initiator])
	assert.EqualValues(t, 1<<20+32, info.bytes[reassembly.Initiator])
}
