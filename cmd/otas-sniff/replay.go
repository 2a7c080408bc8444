package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/httpparse"
	"github.com/otas/otas-sniff/internal/progress"
	"github.com/otas/otas-sniff/reassembly"
)

// commonFlags are the flags replay and live capture share.
type commonFlags struct {
	ports       string
	outputs     []string
	maxBody     int
	idleTimeout time.Duration
	reorderWait time.Duration
	maxBufConn  int
	maxBuf      int
	maxStreams  int
	workers     int
	memoryLimit string
	otas        forwarder.OTASConfig
	redact      redactorFlags
}

func (c *commonFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&c.ports, "port", "p", "", "server ports to watch: 8000, 8000,8080 or 8080-8089 (default: HTTP found on any port)")
	f.StringArrayVarP(&c.outputs, "output", "o", nil, "where events go, repeatable: jsonl:PATH (- is stdout), otas")
	f.IntVar(&c.maxBody, "max-body", 100<<10, "bytes of each body kept in events (after redaction)")
	f.DurationVar(&c.idleTimeout, "idle-timeout", 2*time.Minute, "close a connection after this long without packets")
	f.DurationVar(&c.reorderWait, "reorder-wait", 2*time.Second, "how long a missing segment is waited for before it counts as lost")
	f.IntVar(&c.maxBufConn, "max-buffered-bytes-per-conn", 1<<20, "out-of-order bytes held per connection before the oldest hole is given up")
	f.IntVar(&c.maxBuf, "max-buffered-bytes", 64<<20, "out-of-order bytes held for all connections")
	f.IntVar(&c.maxStreams, "max-streams", 100_000, "connections parsed at once; beyond it the one idle longest is evicted (its pending requests are emitted, error \"connection evicted\") and counted (0: no cap)")
	f.StringVar(&c.memoryLimit, "memory-limit", "auto", "soft limit for the Go heap, e.g. 256MiB: the collector works harder near it so RSS stays close to what is live; auto = 80% of the container's (cgroup) memory limit, if any and GOMEMLIMIT is unset; off = none")
	f.IntVar(&c.workers, "workers", 0, "goroutines that reassemble and parse, each new connection to the least busy (0: one per CPU, at most 8)")
	addOTASFlags(f, &c.otas)
	c.redact.register(f)
}

// sinkConfig is where events go, with the redaction the flags ask for.
func (c *commonFlags) sinkConfig(cmd *cobra.Command, live bool) (*sinkConfig, error) {
	ropts, err := c.redact.options(os.Getenv)
	if err != nil {
		return nil, err
	}
	return &sinkConfig{
		outputs:  c.outputs,
		maxBody:  c.maxBody,
		stdout:   cmd.OutOrStdout(),
		live:     live,
		log:      loggerFor(cmd),
		redactor: forwarder.NewRedactor(ropts),
		otas:     &c.otas,
	}, nil
}

func (c *commonFlags) pipelineConfig() (pipelineConfig, error) {
	var cfg pipelineConfig
	if c.ports != "" {
		ps, err := capture.ParsePorts(c.ports)
		if err != nil {
			return cfg, withCode(exitUsage, fmt.Errorf("--port: %w", err))
		}
		cfg.ports = ps
	}
	if c.maxBody < 0 {
		return cfg, usageErrorf("--max-body must be 0 or more bytes, not %d", c.maxBody)
	}
	if c.idleTimeout <= 0 || c.reorderWait <= 0 {
		return cfg, usageErrorf("--idle-timeout and --reorder-wait must be positive durations like 30s")
	}
	if c.maxStreams < 0 {
		return cfg, usageErrorf("--max-streams must be 0 (no cap) or more, not %d", c.maxStreams)
	}
	if c.maxBufConn <= 0 || c.maxBuf <= 0 {
		return cfg, usageErrorf("--max-buffered-bytes and --max-buffered-bytes-per-conn must be positive")
	}
	// The parser keeps a little more than the event cut so redaction sees a
	// secret that straddles the cut before the cut removes half of it.
	keep := c.maxBody + 16<<10
	cfg.parserOpts = httpparse.Options{MaxBodyBytes: keep}
	switch {
	case c.workers < 0:
		return cfg, usageErrorf("--workers must be 0 (one per CPU) or more, not %d", c.workers)
	case c.workers == 0:
		cfg.workers = min(runtime.GOMAXPROCS(0), maxDefaultWorkers)
	default:
		cfg.workers = c.workers
	}
	cfg.asmOpts = reassembly.Options{
		MaxBufferedBytesPerConn: c.maxBufConn,
		MaxBufferedBytes:        c.maxBuf,
		ReorderWait:             c.reorderWait,
		IdleTimeout:             c.idleTimeout,
	}
	if c.maxStreams > 0 {
		// Each worker holds its share of the connections.
		cfg.asmOpts.MaxStreams = max(1, c.maxStreams/max(1, cfg.workers))
	}
	return cfg, nil
}

// maxDefaultWorkers bounds the default --workers: past it the reading and the
// merge, which stay on one goroutine each, are the limit.
const maxDefaultWorkers = 8

func newReplayCmd() *cobra.Command {
	var flags commonFlags
	var (
		summaryOnly, quiet bool
		top                int
	)
	cmd := &cobra.Command{
		Use:   "replay FILE...",
		Short: "Read pcap or pcapng files (or - for standard input) and emit their HTTP exchanges",
		Long: `replay reads capture files written by tcpdump, tshark, Wireshark or otas-sniff -w
(pcap or pcapng, gzip-compressed or not; - reads standard input), finds HTTP/1.x
on any port (or the ports given with -p), and writes one event per exchange.
Several files are merged by timestamp.`,
		Example: `  otas-sniff replay capture.pcap -o jsonl:-
  otas-sniff replay a.pcap b.pcapng -p 8000,8080 -o jsonl:events.jsonl
  tcpdump -w - -i eth0 port 8000 | otas-sniff replay - -o jsonl:-`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("replay needs at least one capture file, or - for standard input")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			stderr := cmd.ErrOrStderr()
			log := loggerFor(cmd)
			if err := applyMemoryLimit(flags.memoryLimit); err != nil {
				return err
			}
			defer startHeapFloor(replayHeapFloor)()
			cfg, err := flags.pipelineConfig()
			if err != nil {
				return err
			}
			if top < 0 {
				return usageErrorf("--top must be 0 (all endpoints) or more, not %d", top)
			}
			sc, err := flags.sinkConfig(cmd, false)
			if err != nil {
				return err
			}
			sc.top, sc.summaryOnly = top, summaryOnly
			if summaryOnly || !quiet {
				sc.summary = stderr
			}
			fwd, err := buildForwarder(ctx, sc)
			if err != nil {
				return err
			}
			cfg.fwd = fwd
			cfg.log = log
			bar := progress.New(stderr, totalSize(args), !summaryOnly && progress.Enabled(stderrFile(stderr), quiet))
			src, err := capture.OpenFiles(args, capture.FileOptions{Stdin: cmd.InOrStdin(), OnRead: func(n int) { bar.Add(int64(n)) }})
			if err != nil {
				fwd.Close(ctx)
				return inputError(err)
			}
			defer src.Close()
			p := newPipeline(ctx, cfg)
			p.onExchange = bar.AddExchange
			runErr := p.drain(ctx, src, reassembly.EndOfCapture)
			bar.Finish()
			closeErr := fwd.Close(ctx)
			if !summaryOnly {
				p.summary(stderr, src.Stats())
			}
			if runErr != nil {
				return inputError(runErr)
			}
			if closeErr != nil {
				return withCode(exitOutput, closeErr)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&summaryOnly, "summary", false, "print only the table of endpoints (no events)")
	cmd.Flags().IntVar(&top, "top", forwarder.DefaultTopEndpoints, "endpoints in the summary table (0: all)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar and no endpoint table")
	flags.register(cmd)
	return cmd
}

// totalSize is the bytes of the named files, for the progress bar; 0 when one
// is standard input or cannot be read.
func totalSize(paths []string) int64 {
	var n int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if p == "-" || err != nil || !fi.Mode().IsRegular() {
			return 0
		}
		n += fi.Size()
	}
	return n
}

// stderrFile is w as a file when it is one, so the progress bar can tell a
// terminal; nil otherwise.
func stderrFile(w io.Writer) *os.File {
	f, _ := w.(*os.File)
	return f
}

// inputError gives a capture error its exit code.
func inputError(err error) error {
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return err
	case errors.Is(err, capture.ErrTruncated):
		return withCode(exitTruncated, err)
	case errors.Is(err, capture.ErrNotCapture), errors.Is(err, capture.ErrUnsupportedLinkType), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return withCode(exitInput, err)
	}
	return withCode(exitFailure, err)
}
