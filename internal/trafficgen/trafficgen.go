// Package trafficgen writes large synthetic captures of typical API traffic for
// benchmarks: keep-alive connections, many of them open at once, JSON bodies of
// 200 B to 20 KB, some chunked and some gzip-compressed responses. The output is
// deterministic for a seed, and streamed, so its size is not bounded by memory.
package trafficgen

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/otas/otas-sniff/internal/pcapgen"
)

// Options shapes the traffic.
type Options struct {
	// Exchanges is how many request/response pairs to write.
	Exchanges int
	// Concurrent is how many connections are open at once (default 64).
	Concurrent int
	// PerConn is the most exchanges one connection carries before it closes
	// (default 20; each connection gets 1..PerConn).
	PerConn int
	// Seed makes the output reproducible.
	Seed uint64
}

// Stats says what was written.
type Stats struct {
	Exchanges   int
	Connections int
	Packets     int
	Bytes       int64
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type liveConn struct {
	c    *pcapgen.Conn
	left int
}

// Write writes a pcap of the traffic to out.
func Write(out io.Writer, opts Options) (Stats, error) {
	if opts.Concurrent <= 0 {
		opts.Concurrent = 64
	}
	if opts.PerConn <= 0 {
		opts.PerConn = 20
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x07a5))
	cw := &countingWriter{w: out}
	w := pcapgen.New(pcapgen.Options{Step: 20 * time.Microsecond, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	g := &generator{rng: rng}
	var st Stats
	conns := make([]*liveConn, opts.Concurrent)
	nextPort := 0
	open := func() *liveConn {
		nextPort++
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(nextPort >> 16), byte(nextPort >> 8)}), uint16(20000+nextPort%40000))
		server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(1 + nextPort%8)}), 8000)
		c := w.Conn(client, server)
		c.Handshake()
		st.Connections++
		return &liveConn{c: c, left: 1 + rng.IntN(opts.PerConn)}
	}
	for st.Exchanges < opts.Exchanges {
		i := rng.IntN(len(conns))
		if conns[i] == nil {
			conns[i] = open()
		}
		lc := conns[i]
		req, resp := g.exchange()
		lc.c.Client(req)
		lc.c.Server(resp)
		st.Exchanges++
		lc.left--
		if lc.left == 0 {
			lc.c.Close()
			conns[i] = nil
		}
		if w.Packets() > 4096 {
			st.Packets += w.Packets()
			if err := w.Stream(cw); err != nil {
				return st, err
			}
		}
	}
	for _, lc := range conns {
		if lc != nil {
			lc.c.Close()
		}
	}
	st.Packets += w.Packets()
	if err := w.Stream(cw); err != nil {
		return st, err
	}
	st.Bytes = cw.n
	return st, nil
}

type generator struct {
	rng *rand.Rand
	n   int
}

const token = "eyJhbGciOiJIUzI1NiJ9.eyJhZ2VudF9pZCI6ImJlbmNoIn0.YmVuY2gtc2lnbmF0dXJl"

// jsonBody is a JSON document of about size bytes.
func (g *generator) jsonBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-2; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item-%d","price":%d.%02d,"tags":["a","b"]}`, g.rng.IntN(1e6), i, g.rng.IntN(1000), g.rng.IntN(100))
	}
	b.WriteString("]}")
	return b.Bytes()
}

func (g *generator) exchange() (req, resp []byte) {
	g.n++
	var r bytes.Buffer
	id := g.rng.IntN(100000)
	if g.rng.IntN(3) == 0 {
		body := g.jsonBody(200 + g.rng.IntN(1800))
		fmt.Fprintf(&r, "POST /api/v1/orders HTTP/1.1\r\nHost: api.bench.test\r\nUser-Agent: bench/1.0\r\nContent-Type: application/json\r\nAuthorization: Bearer bench-token-%d\r\nX-OTAS-Agent-Session-Token: %s\r\nContent-Length: %d\r\n\r\n", id, token, len(body))
		r.Write(body)
	} else {
		fmt.Fprintf(&r, "GET /api/v1/users/%d/orders?page=%d HTTP/1.1\r\nHost: api.bench.test\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nX-OTAS-Agent-Session-Token: %s\r\n\r\n", id, g.rng.IntN(10), token)
	}
	body := g.jsonBody(200 + int(g.rng.ExpFloat64()*3000)%19800)
	status := "200 OK"
	switch x := g.rng.IntN(100); {
	case x < 3:
		status = "500 Internal Server Error"
	case x < 10:
		status = "404 Not Found"
	}
	var s bytes.Buffer
	fmt.Fprintf(&s, "HTTP/1.1 %s\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nContent-Type: application/json\r\n", status)
	switch x := g.rng.IntN(10); {
	case x == 0: // chunked
		s.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for off := 0; off < len(body); off += 4096 {
			end := min(off+4096, len(body))
			fmt.Fprintf(&s, "%x\r\n", end-off)
			s.Write(body[off:end])
			s.WriteString("\r\n")
		}
		s.WriteString("0\r\n\r\n")
	case x == 1: // gzip
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(body)
		zw.Close()
		fmt.Fprintf(&s, "Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n", z.Len())
		s.Write(z.Bytes())
	default:
		fmt.Fprintf(&s, "Content-Length: %d\r\n\r\n", len(body))
		s.Write(body)
	}
	return r.Bytes(), s.Bytes()
}
