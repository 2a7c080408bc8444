// Command advgen writes one of the large hostile captures of package
// adversarial to a file, between well-formed exchanges (paths /good/0 and
// /good/1). The hardening tests build and run it so the capture is generated
// at full speed even when the tests themselves run under the race detector.
//
//	advgen -case syn -n 1000000 -o syn.pcap
//	advgen -case slow -n 50000 -rounds 5 -o slow.pcap
//	advgen -case chunked -bytes 268435456 -o chunked.pcap
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/otas/otas-sniff/internal/adversarial"
)

func main() {
	kind := flag.String("case", "", "syn, slow or chunked")
	n := flag.Int("n", 1000, "connections (syn, slow)")
	rounds := flag.Int("rounds", 5, "bytes sent per slow connection, one a minute")
	size := flag.Int("bytes", 64<<20, "body bytes (chunked)")
	out := flag.String("o", "", "output file")
	flag.Parse()
	if err := run(*kind, *n, *rounds, *size, *out); err != nil {
		fmt.Fprintln(os.Stderr, "advgen:", err)
		os.Exit(1)
	}
}

func run(kind string, n, rounds, size int, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	g := adversarial.New(f)
	g.Good(0)
	switch kind {
	case "syn":
		err = g.SYNFlood(n)
	case "slow":
		err = g.SlowLoris(n, rounds, time.Minute)
	case "chunked":
		g.EndlessChunked(size)
	default:
		err = fmt.Errorf("unknown -case %q", kind)
	}
	if err != nil {
		return err
	}
	g.Good(1)
	if err := g.Close(); err != nil {
		return err
	}
	return f.Close()
}
