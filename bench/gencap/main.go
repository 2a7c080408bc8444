// Command gencap writes a synthetic capture of typical API traffic for
// benchmarks:
//
//	go run ./bench/gencap -exchanges 100000 -o /tmp/api.pcap
//
// or, with -pending N, N connections that each send a request (a GET, or a
// POST with a -pending-body bytes JSON body) and get no answer: all of them
// open at the end, for the memory figure.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/otas/otas-sniff/internal/pcapgen"
	"github.com/otas/otas-sniff/internal/trafficgen"
)

func main() {
	out := flag.String("o", "", "output pcap file")
	n := flag.Int("exchanges", 100000, "request/response pairs to write")
	conc := flag.Int("concurrent", 64, "connections open at once")
	seed := flag.Uint64("seed", 1, "random seed")
	pending := flag.Int("pending", 0, "instead: this many connections, each with a request left waiting")
	pendingBody := flag.Int("pending-body", 0, "with -pending: a POST with a JSON body of about this many bytes instead of a GET")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "gencap: -o FILE is required")
		os.Exit(2)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencap:", err)
		os.Exit(1)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	var st trafficgen.Stats
	if *pending > 0 {
		st, err = writePending(bw, *pending, *pendingBody)
	} else {
		st, err = trafficgen.Write(bw, trafficgen.Options{Exchanges: *n, Concurrent: *conc, Seed: *seed})
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencap:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gencap: %s: %d exchanges, %d connections, %d packets, %d bytes\n", *out, st.Exchanges, st.Connections, st.Packets, st.Bytes)
}

// writePending writes n connections, each opened and sent one request that is
// never answered.
func writePending(out io.Writer, n, bodySize int) (trafficgen.Stats, error) {
	w := pcapgen.New(pcapgen.Options{Step: time.Microsecond, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	body := `{"query":"` + strings.Repeat("x", max(0, bodySize-12)) + `"}`
	server := netip.MustParseAddrPort("10.2.0.1:8000")
	st := trafficgen.Stats{Exchanges: n, Connections: n}
	for i := range n {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 16), byte(i >> 8)}), uint16(10000+i%50000))
		c := w.Conn(client, server)
		c.Handshake()
		req := fmt.Sprintf("GET /api/v1/jobs/%d?wait=1 HTTP/1.1\r\nHost: api.bench.test\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\n\r\n", i)
		if bodySize > 0 {
			req = fmt.Sprintf("POST /api/v1/jobs/%d HTTP/1.1\r\nHost: api.bench.test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
		}
		c.Client([]byte(req))
		if w.Packets() > 4096 {
			st.Packets += w.Packets()
			if err := w.Stream(out); err != nil {
				return st, err
			}
		}
	}
	st.Packets += w.Packets()
	return st, w.Stream(out)
}
