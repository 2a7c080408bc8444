package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/trafficgen"
	"github.com/otas/otas-sniff/reassembly"
)

// benchCapture writes (once per machine) a capture of n exchanges of typical API
// traffic and returns its path.
func benchCapture(b *testing.B, n int) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("otas-sniff-bench-%d.pcap", n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := trafficgen.Write(bw, trafficgen.Options{Exchanges: n, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(bw.Flush(), f.Close()); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

// bareLoop only reads and decodes the file to TCP payloads: the limit for this
// design. It returns packets and payload bytes.
func bareLoop(b *testing.B, path string) (packets, bytes uint64) {
	src, err := capture.OpenFiles([]string{path}, capture.FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for {
		seg, err := src.Next(context.Background())
		if err != nil {
			if !errors.Is(err, io.EOF) {
				b.Fatal(err)
			}
			break
		}
		bytes += uint64(len(seg.TCP.Payload))
	}
	st := src.Stats()
	return st.Packets, st.Bytes
}

// fullPipeline replays the file through every stage into a JSONL sink that
// discards its output.
func fullPipeline(b *testing.B, path string) (packets, fileBytes, exchanges uint64) {
	ctx := context.Background()
	fwd := forwarder.New(forwarder.Options{}, forwarder.NewJSONLWriter("discard", io.Discard))
	var flags commonFlags
	flags.register(&cobra.Command{})
	cfg, err := flags.pipelineConfig()
	if err != nil {
		b.Fatal(err)
	}
	cfg.fwd = fwd
	src, err := capture.OpenFiles([]string{path}, capture.FileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	p := newPipeline(ctx, cfg)
	if err := p.drain(ctx, src, reassembly.EndOfCapture); err != nil {
		b.Fatal(err)
	}
	if err := fwd.Close(ctx); err != nil {
		b.Fatal(err)
	}
	st := src.Stats()
	return st.Packets, st.Bytes, p.exchanges.Load()
}

// BenchmarkReplay replays a generated capture of 100k exchanges through the full
// pipeline and, in the same run, through a bare read-and-decode loop, and reports
// the pipeline's rate as a share of the bare loop's.
//
//	go test ./cmd/otas-sniff -run '^$' -bench Replay -benchtime 3x
func BenchmarkReplay(b *testing.B) {
	path := benchCapture(b, 100_000)
	var bareDur, fullDur time.Duration
	var packets, fileBytes, exchanges, mallocs uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		bareLoop(b, path)
		bareDur += time.Since(start)

		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		start = time.Now()
		p, fb, ex := fullPipeline(b, path)
		fullDur += time.Since(start)
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - before
		packets += p
		fileBytes += fb
		exchanges += ex
	}
	b.StopTimer()
	barePPS := float64(packets) / bareDur.Seconds()
	fullPPS := float64(packets) / fullDur.Seconds()
	b.ReportMetric(fullPPS, "packets/s")
	b.ReportMetric(float64(fileBytes)/1e6/fullDur.Seconds(), "MB/s")
	b.ReportMetric(float64(exchanges)/fullDur.Seconds(), "exchanges/s")
	b.ReportMetric(float64(mallocs)/float64(packets), "allocs/packet")
	b.ReportMetric(barePPS, "bare-packets/s")
	b.ReportMetric(fullPPS/barePPS, "ratio-to-bare")
}
