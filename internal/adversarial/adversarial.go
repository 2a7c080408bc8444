// Package adversarial builds hostile packet captures for the hardening tests
// and benchmarks: garbage and other protocols on the HTTP port, messages that
// never end, absurd framing, floods of connections, slow connections in
// capture time, conflicting retransmissions and cut files. Every capture puts
// well-formed exchanges before and after the hostile part, so a test can check
// that nothing around the bad traffic is lost.
//
// Captures are streamed (pcapgen.Writer.Stream) so that the large ones are
// never held in memory: the tests measure the sniffer, not the generator.
package adversarial

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/otas/otas-sniff/internal/pcapgen"
)

// ServerPort is where every server listens.
const ServerPort = 8000

// Server is the address of every server in the generated captures.
var Server = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), ServerPort)

// Gen writes one capture. Methods add connections in capture order; Flush
// (or Close) writes what is pending to the output.
type Gen struct {
	w    *pcapgen.Writer
	out  *bufio.Writer
	next uint32 // client address counter
	err  error
}

// New starts a capture streamed to out: little-endian pcap, Ethernet.
func New(out io.Writer) *Gen {
	return &Gen{
		// 1 µs between packets (the pcap resolution), so that floods of
		// hundreds of thousands of packets span seconds, not hours, of
		// capture time; methods that need time to pass move the clock.
		w:   pcapgen.New(pcapgen.Options{LinkType: layers.LinkTypeEthernet, Step: time.Microsecond}),
		out: bufio.NewWriterSize(out, 1<<20),
	}
}

// Writer is the underlying pcapgen writer, for cases not covered here.
func (g *Gen) Writer() *pcapgen.Writer { return g.w }

// Client returns a fresh client address: 10.1.0.0/16 upwards, a new port
// each time, so every connection has its own 4-tuple even in floods of
// millions.
func (g *Gen) Client() netip.AddrPort {
	n := g.next
	g.next++
	ip := netip.AddrFrom4([4]byte{10, byte(1 + n>>24), byte(n >> 16), byte(n >> 8)})
	return netip.AddrPortFrom(ip, uint16(20000+n&0xff))
}

// Conn opens a new connection to Server from a fresh client.
func (g *Gen) Conn() *pcapgen.Conn { return g.w.Conn(g.Client(), Server) }

// Flush writes the packets built so far.
func (g *Gen) Flush() error {
	if g.err == nil {
		g.err = g.w.Stream(g.out)
	}
	return g.err
}

// Close flushes and writes out the buffered file.
func (g *Gen) Close() error {
	if err := g.Flush(); err != nil {
		return err
	}
	return g.out.Flush()
}

// GoodPath is the path of the n-th well-formed exchange.
func GoodPath(n int) string { return fmt.Sprintf("/good/%d", n) }

// Good writes one complete exchange on its own connection: GET GoodPath(n)
// answered 200 with a small JSON body, with handshake and FIN.
func (g *Gen) Good(n int) {
	c := g.Conn()
	c.Handshake()
	c.Client([]byte("GET " + GoodPath(n) + " HTTP/1.1\r\nHost: api\r\nUser-Agent: adversarial\r\n\r\n"))
	c.Server([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"))
	c.Close()
}

// Advance moves the capture clock.
func (g *Gen) Advance(d time.Duration) { g.w.Advance(d) }

// Exchange writes one request and its response on a new connection, closed
// with FIN after; either may be empty.
func (g *Gen) Exchange(req, resp string) {
	c := g.Conn()
	c.Handshake()
	if req != "" {
		c.Client([]byte(req))
	}
	if resp != "" {
		c.Server([]byte(resp))
	}
	c.Close()
}

// Garbage writes n pseudo-random bytes from a client to the HTTP port and
// the same amount back, on one connection, in MSS-sized segments.
func (g *Gen) Garbage(n int) {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	g.Exchange(string(b), string(b[n/2:])+string(b[:n/2]))
}

// TLSClientHello is the start of a TLS 1.2/1.3 ClientHello record.
var TLSClientHello = "\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03" + strings.Repeat("\x42", 32) + "\x20" + strings.Repeat("\x17", 32) + "\x00\x04\x13\x01\x13\x02\x01\x00\x00\x77" + strings.Repeat("\x00", 119)

// TLSServerHello is the start of the server's answer.
var TLSServerHello = "\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03" + strings.Repeat("\x51", 32) + "\x20" + strings.Repeat("\x17", 32) + "\x13\x01\x00\x00\x2e" + strings.Repeat("\x00", 46)

// TLS writes a TLS handshake on the HTTP port.
func (g *Gen) TLS() { g.Exchange(TLSClientHello, TLSServerHello) }

// HTTP2Preface is the client connection preface of HTTP/2 with prior
// knowledge, followed by an empty SETTINGS frame.
const HTTP2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// HTTP2 writes an HTTP/2 prior-knowledge connection on the HTTP port.
func (g *Gen) HTTP2() {
	g.Exchange(HTTP2Preface, "\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x04\x01\x00\x00\x00\x00")
}

// EndlessHeader writes a request whose header block never ends: n bytes of
// header fields in MSS-sized segments, and no blank line, then FIN.
func (g *Gen) EndlessHeader(n int) {
	c := g.Conn()
	c.Handshake()
	c.Client([]byte("GET /endless-header HTTP/1.1\r\nHost: api\r\n"))
	line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
	for sent := 0; sent < n; {
		chunk := strings.Repeat(line, 16)
		c.Client([]byte(chunk))
		sent += len(chunk)
		g.Flush() // the error is kept and returned by Close
	}
	c.Close()
}

// EndlessChunked writes a request answered by a chunked body that never ends:
// n bytes of 4 KiB chunks and no last chunk, then the server's FIN.
func (g *Gen) EndlessChunked(n int) {
	c := g.Conn()
	c.Handshake()
	c.Client([]byte("GET /endless-chunked HTTP/1.1\r\nHost: api\r\n\r\n"))
	c.Server([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))
	chunk := "1000\r\n" + strings.Repeat("c", 4096) + "\r\n"
	for sent := 0; sent < n; sent += 4096 {
		c.Server([]byte(chunk))
		if sent%(1<<20) == 0 {
			g.Flush() // the error is kept and returned by Close
		}
	}
	c.Close()
}

// HugeContentLength writes a response that announces a 2 GB body and sends
// only n bytes of it before the connection closes.
func (g *Gen) HugeContentLength(n int) {
	c := g.Conn()
	c.Handshake()
	c.Client([]byte("GET /huge HTTP/1.1\r\nHost: api\r\n\r\n"))
	c.Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n"))
	filler := []byte(strings.Repeat("h", 16<<10))
	for sent := 0; sent < n; sent += len(filler) {
		c.Server(filler)
		if sent%(1<<20) == 0 {
			g.Flush() // the error is kept and returned by Close
		}
	}
	c.Close()
}

// SYNFlood writes n connections that send a SYN and nothing else, then
// flushes; every 10,000 connections the packets are streamed out.
func (g *Gen) SYNFlood(n int) error {
	for i := range n {
		c := g.Conn()
		c.Emit(pcapgen.Segment{Seq: uint32(i) * 7919, SYN: true})
		if i%10000 == 9999 {
			if err := g.Flush(); err != nil {
				return err
			}
		}
	}
	return g.Flush()
}

// SlowLoris writes conns connections that each send one byte of a request
// head every interval, rounds times, in capture time; no head is ever
// finished. It moves the clock by interval per round and returns the clients.
func (g *Gen) SlowLoris(conns, rounds int, interval time.Duration) error {
	head := "GET /slow HTTP/1.1\r\nHost: api\r\nX-Slow: " + strings.Repeat("s", rounds) + "\r\n"
	cs := make([]*pcapgen.Conn, conns)
	start := g.w.Now()
	w := g.w
	for i := range cs {
		cs[i] = g.Conn()
		cs[i].Handshake()
	}
	if err := g.Flush(); err != nil {
		return err
	}
	for r := range rounds {
		if at := start.Add(time.Duration(r+1) * interval); at.After(w.Now()) {
			w.SetTime(at)
		}
		for _, c := range cs {
			c.Emit(c.ClientSegments([]byte{head[r%len(head)]}, 0)...)
		}
		if err := g.Flush(); err != nil {
			return err
		}
	}
	return nil
}
