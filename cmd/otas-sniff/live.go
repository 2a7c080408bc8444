package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/spf13/cobra"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/reassembly"
)

// liveFlags are the root command's flags on top of commonFlags.
type liveFlags struct {
	commonFlags
	interfaces    []string
	filter        string
	snapLen       int
	bufferMB      int
	promisc       bool
	immediate     bool
	engine        string
	fanout        int
	queuePackets  int
	statsInterval time.Duration
	duration      time.Duration
	count         int
	write         string
	user          string
	metricsAddr   string
	k8sNode       string
	kubeconfig    string
}

func (l *liveFlags) register(cmd *cobra.Command) {
	l.commonFlags.register(cmd)
	f := cmd.Flags()
	f.StringSliceVarP(&l.interfaces, "interface", "i", nil, "interfaces to capture on, repeatable or comma-separated; any = all (see: otas-sniff interfaces)")
	f.StringVarP(&l.filter, "filter", "f", "", "BPF capture filter in tcpdump syntax, instead of the one -p builds (combined with it when both are given)")
	f.IntVar(&l.snapLen, "snaplen", capture.DefaultSnapLen, "bytes kept of each packet; the default keeps whole packets, also offloaded 64 KiB ones")
	f.IntVar(&l.bufferMB, "buffer-mb", capture.DefaultBufferSize>>20, "kernel capture buffer per interface, in MiB")
	f.BoolVar(&l.promisc, "promisc", true, "promiscuous mode: also see traffic not addressed to this host (mirror ports); ignored for any")
	f.BoolVar(&l.immediate, "immediate", true, "deliver each packet at once; =false lets libpcap batch, which on some kernels holds packets back indefinitely")
	f.StringVar(&l.engine, "engine", capture.EngineLibpcap, "capture engine: libpcap, or afpacket (Linux TPACKET_V3 ring: packets packed by size, so the same --buffer-mb holds many more; raw IP, no link headers)")
	f.IntVar(&l.fanout, "fanout", 1, "with --engine afpacket: sockets per interface, each read by its own goroutine, sharing packets by flow hash")
	f.IntVar(&l.queuePackets, "queue", capture.DefaultQueuePackets, "packets held between capture and processing; beyond it packets are dropped and counted")
	f.DurationVar(&l.statsInterval, "stats-interval", 10*time.Second, "print a status line on stderr this often (0 = never)")
	f.DurationVar(&l.duration, "duration", 0, "stop after this long, e.g. 30s (0 = until SIGINT/SIGTERM)")
	f.IntVar(&l.count, "count", 0, "stop after this many exchanges (0 = no limit)")
	f.StringVarP(&l.write, "write", "w", "", "also write the captured packets to this pcap file (pcapng for interfaces of different link types)")
	f.StringVar(&l.user, "user", "", "after opening the interfaces, switch to this unprivileged user")
	f.StringVar(&l.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics, /healthz and /readyz on this address, e.g. :9090 (empty: off)")
	f.StringVar(&l.k8sNode, "k8s-node", "", "Kubernetes node name: add the client and server pods of this node to events (set from the downward API)")
	f.StringVar(&l.kubeconfig, "kubeconfig", "", "kubeconfig for --k8s-node (default: the in-cluster service account)")
}

// liveOptions checks the live flags and builds the capture options.
func (l *liveFlags) liveOptions(ports string) (capture.LiveOptions, error) {
	var opts capture.LiveOptions
	for _, i := range l.interfaces {
		if i = strings.TrimSpace(i); i != "" {
			opts.Interfaces = append(opts.Interfaces, i)
		}
	}
	if len(opts.Interfaces) == 0 {
		return opts, usageErrorf("name an interface to capture on with -i (any for all; otas-sniff interfaces lists them), or use: otas-sniff replay FILE")
	}
	switch {
	case l.snapLen < 128:
		return opts, usageErrorf("--snaplen must be at least 128 bytes to hold the headers, not %d", l.snapLen)
	case l.bufferMB < 1:
		return opts, usageErrorf("--buffer-mb must be at least 1, not %d", l.bufferMB)
	case l.queuePackets < 1:
		return opts, usageErrorf("--queue must be at least 1, not %d", l.queuePackets)
	case l.statsInterval < 0 || l.duration < 0:
		return opts, usageErrorf("--stats-interval and --duration cannot be negative")
	case l.count < 0:
		return opts, usageErrorf("--count cannot be negative, not %d", l.count)
	case l.engine != capture.EngineLibpcap && l.engine != capture.EngineAFPacket:
		return opts, usageErrorf("--engine must be %s or %s, not %q", capture.EngineLibpcap, capture.EngineAFPacket, l.engine)
	case l.fanout < 1 || l.fanout > 64:
		return opts, usageErrorf("--fanout must be from 1 to 64, not %d", l.fanout)
	case l.fanout > 1 && l.engine != capture.EngineAFPacket:
		return opts, usageErrorf("--fanout needs --engine %s", capture.EngineAFPacket)
	}
	filter := strings.TrimSpace(l.filter)
	if ports != "" {
		ps, err := capture.ParsePorts(ports)
		if err != nil {
			return opts, withCode(exitUsage, fmt.Errorf("--port: %w", err))
		}
		if filter == "" {
			filter = ps.BPF()
		} else {
			filter = "(" + filter + ") and (" + ps.BPF() + ")"
		}
	}
	if filter == "" {
		filter = "tcp"
	}
	opts.Filter = filter
	opts.SnapLen = l.snapLen
	opts.BufferSize = l.bufferMB << 20
	opts.Promisc = l.promisc
	opts.Immediate = l.immediate
	opts.Engine = l.engine
	opts.Fanout = l.fanout
	opts.QueuePackets = l.queuePackets
	return opts, nil
}

// runLive is the root command: capture, then the same pipeline as replay.
func runLive(cmd *cobra.Command, flags *liveFlags) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	log := loggerFor(cmd)
	if err := applyMemoryLimit(flags.memoryLimit); err != nil {
		return err
	}
	defer startHeapFloor(liveHeapFloor)()
	cfg, err := flags.pipelineConfig()
	if err != nil {
		return err
	}
	opts, err := flags.liveOptions(flags.ports)
	if err != nil {
		return err
	}
	obs := newObserved()
	// Outputs, interfaces, the -w file and the metrics listener are all opened
	// before privileges are dropped; nothing later needs them.
	sc, err := flags.sinkConfig(cmd, true)
	if err != nil {
		return err
	}
	sc.summary = stderr
	sc.enrich = obs.observe
	if flags.k8sNode != "" {
		pods, err := podResolver(ctx, flags.k8sNode, flags.kubeconfig, log)
		if err != nil {
			return err
		}
		defer pods.Stop()
		sc.enrich = func(ev *forwarder.Event) {
			pods.Enrich(ev)
			obs.observe(ev)
		}
	}
	fwd, err := buildForwarder(ctx, sc)
	if err != nil {
		return err
	}
	if sc.otasSink != nil {
		obs.otas.Store(sc.otasSink)
	}
	cfg.fwd, cfg.log = fwd, log
	// Sinks keep writing after the run is stopped: the flush emits the rest.
	p := newPipeline(context.WithoutCancel(ctx), cfg)
	obs.pipeline.Store(p)
	msrv, err := obs.serve(ctx, flags.metricsAddr)
	if err != nil {
		fwd.Close(ctx)
		return err
	}
	if msrv != nil {
		defer msrv.Shutdown(context.WithoutCancel(ctx))
	}
	src, err := capture.OpenLive(opts)
	if err != nil {
		fwd.Close(ctx)
		return liveOpenError(err)
	}
	obs.source.Store(src)
	var pw *packetWriter
	if flags.write != "" {
		if pw, err = newPacketWriter(flags.write, src.Interfaces()); err != nil {
			src.Close()
			fwd.Close(ctx)
			return withCode(exitOutput, err)
		}
	}
	if err := dropPrivileges(flags.user); err != nil {
		src.Close()
		fwd.Close(ctx)
		return withCode(exitPermission, err)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if flags.duration > 0 {
		runCtx, stop = context.WithTimeout(runCtx, flags.duration)
		defer stop()
	}
	p.limit, p.onLimit = uint64(flags.count), stop
	log.Info("capturing", "interfaces", strings.Join(opts.Interfaces, ","), "filter", opts.Filter, "engine", opts.Engine, "fanout", opts.Fanout, "immediate", opts.Immediate)

	src.Start(runCtx)
	writeErr := p.live(src, pw, stop, flags.statsInterval, stderr, obs)
	// Every stream still open ends here: pending requests come out with the
	// error "capture stopped".
	p.flushAll(reassembly.Stopped)
	src.Close()
	if pw != nil {
		if err := pw.close(); err != nil && writeErr == nil {
			writeErr = err
		}
	}
	closeErr := fwd.Close(ctx)
	p.summary(stderr, src.Stats())
	switch {
	case p.sinkErr != nil:
		return withCode(exitOutput, p.sinkErr)
	case writeErr != nil:
		return withCode(exitOutput, writeErr)
	case src.Err() != nil:
		return withCode(exitInterface, fmt.Errorf("%w; capture stopped, and everything captured before was emitted", src.Err()))
	case closeErr != nil:
		return withCode(exitOutput, closeErr)
	}
	return nil
}

// Timers of the live loop.
const (
	// tickEvery lets reassembly time out holes and idle streams when no packet
	// comes, so a quiet link still gets its exchanges out.
	tickEvery = 250 * time.Millisecond
	// pcapFlushEvery keeps the -w file current for someone reading it live.
	pcapFlushEvery = time.Second
)

// live processes packets until capture stops and the queue is empty. It
// returns the first -w write error; sink errors stay in p.sinkErr. stop ends
// capture early, on an output error.
func (p *pipeline) live(src *capture.LiveSource, pw *packetWriter, stop func(), statsEvery time.Duration, status io.Writer, obs *observed) error {
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	var statusC <-chan time.Time
	if statsEvery > 0 {
		t := time.NewTicker(statsEvery)
		defer t.Stop()
		statusC = t.C
	}
	var writeErr error
	lastFlush := time.Now()
	for {
		select {
		case pkt, ok := <-src.Packets():
			if !ok {
				return writeErr
			}
			if !p.failed.Load() && writeErr == nil {
				if pw != nil {
					if writeErr = pw.write(pkt); writeErr != nil {
						stop()
					}
				}
				if seg, ok := src.Decode(pkt); ok {
					p.feed(seg)
				}
				if p.failed.Load() {
					stop()
				}
			}
			src.Release(pkt)
		case now := <-tick.C:
			p.tick(now)
			if pw != nil && writeErr == nil && now.Sub(lastFlush) >= pcapFlushEvery {
				lastFlush = now
				if writeErr = pw.flush(); writeErr != nil {
					stop()
				}
			}
		case <-statusC:
			p.status(status, src.Stats(), obs.otas.Load())
		}
	}
}

// status is the periodic one-line report.
func (p *pipeline) status(w io.Writer, src capture.Stats, otas *forwarder.OTASSink) {
	a := p.asm.Stats()
	h := p.parser.Stats()
	fmt.Fprintf(w, "otas-sniff: status: %d packets, %d kernel drops, %d interface drops, %d queue drops, %d open streams, %d exchanges, %d parse errors",
		src.Packets, src.KernelDrops, src.IfaceDrops, src.QueueDrops, a.Open, p.exchanges.Load(), h.ParseErrors)
	if otas != nil {
		u := uploadStats(otas.Stats())
		fmt.Fprintf(w, ", upload queue %d, %d uploaded, %d failed, %d dropped, %d spooled", u.QueueDepth, u.Uploaded, u.Failed, u.Dropped, u.Spooled)
	}
	fmt.Fprintln(w)
}

// liveOpenError gives an OpenLive error its exit code and tells the user what
// to do about it.
func liveOpenError(err error) error {
	switch {
	case errors.Is(err, capture.ErrPermission):
		return withCode(exitPermission, fmt.Errorf("%w: run with sudo, or grant the binary the capture capabilities once: sudo setcap cap_net_raw,cap_net_admin+eip %s", err, executable()))
	case errors.Is(err, capture.ErrNoSuchInterface):
		names := capture.InterfaceNames()
		if len(names) == 0 {
			return withCode(exitInterface, fmt.Errorf("%w (otas-sniff interfaces lists the interfaces)", err))
		}
		return withCode(exitInterface, fmt.Errorf("%w; these exist: %s (otas-sniff interfaces shows their addresses)", err, strings.Join(names, ", ")))
	case errors.Is(err, capture.ErrInterfaceDown):
		return withCode(exitInterface, fmt.Errorf("%w: bring it up first (ip link set DEV up)", err))
	case errors.Is(err, capture.ErrBadFilter):
		return withCode(exitUsage, err)
	}
	return withCode(exitFailure, err)
}

func executable() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "otas-sniff"
}

// packetWriter writes the captured packets to -w: pcap when every interface
// has the same link type, else pcapng with one interface block each.
type packetWriter struct {
	path string
	f    *os.File
	bw   *bufio.Writer
	pcap *pcapgo.Writer
	ng   *pcapgo.NgWriter
	ids  []int // pcapng interface id per capture handle
}

func newPacketWriter(path string, ifaces []capture.LiveInterface) (*packetWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-w: %w", err)
	}
	w := &packetWriter{path: path, f: f, bw: bufio.NewWriterSize(f, 256<<10)}
	same := true
	for _, i := range ifaces {
		same = same && i.LinkType == ifaces[0].LinkType
	}
	if same {
		w.pcap = pcapgo.NewWriterNanos(w.bw)
		err = w.pcap.WriteFileHeader(uint32(ifaces[0].SnapLen), ifaces[0].LinkType)
	} else {
		for i, in := range ifaces {
			ngi := pcapgo.NgInterface{Name: in.Name, LinkType: in.LinkType, SnapLength: uint32(in.SnapLen), TimestampResolution: 9, OS: runtime.GOOS}
			if i == 0 {
				w.ng, err = pcapgo.NewNgWriterInterface(w.bw, ngi, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "otas-sniff", OS: runtime.GOOS, Hardware: runtime.GOARCH}})
				w.ids = append(w.ids, 0)
			} else {
				var id int
				id, err = w.ng.AddInterface(ngi)
				w.ids = append(w.ids, id)
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("-w %s: %w", path, err)
	}
	return w, nil
}

func (w *packetWriter) write(p *capture.Packet) error {
	var err error
	if w.pcap != nil {
		err = w.pcap.WritePacket(p.CaptureInfo, p.Data)
	} else {
		ci := p.CaptureInfo
		ci.InterfaceIndex = w.ids[p.Handle]
		err = w.ng.WritePacket(ci, p.Data)
	}
	if err != nil {
		return fmt.Errorf("-w %s: %w", w.path, err)
	}
	return nil
}

func (w *packetWriter) flush() error {
	var err error
	if w.ng != nil {
		err = w.ng.Flush()
	}
	if err == nil {
		err = w.bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("-w %s: %w", w.path, err)
	}
	return nil
}

func (w *packetWriter) close() error {
	err := w.flush()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("-w %s: %w", w.path, cerr)
	}
	return err
}
