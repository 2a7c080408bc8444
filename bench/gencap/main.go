// Command gencap writes a synthetic capture of typical API traffic for
// benchmarks:
//
//	go run ./bench/gencap -exchanges 100000 -o /tmp/api.pcap
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"

	"github.com/otas/otas-sniff/internal/trafficgen"
)

func main() {
	out := flag.String("o", "", "output pcap file")
	n := flag.Int("exchanges", 100000, "request/response pairs to write")
	conc := flag.Int("concurrent", 64, "connections open at once")
	seed := flag.Uint64("seed", 1, "random seed")
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
	st, err := trafficgen.Write(bw, trafficgen.Options{Exchanges: *n, Concurrent: *conc, Seed: *seed})
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
