package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/httpparse"
	"github.com/otas/otas-sniff/reassembly"
)

// pipeline wires the four stages: segments in, events out.
//
// With one worker every stage runs on the caller's goroutine. With more,
// connections are shared out among the workers (both directions of one go to
// one worker: see placement); each worker owns an Assembler and a parser
// factory and builds (redacts) its events, and one merge goroutine writes them
// to the sinks in the order a single worker would have: by the capture
// position of the segment (or timeout tick) that completed them. So every
// output sees the same order whatever the worker count, up to the order of
// streams closed by one flush, which gopacket leaves unspecified anyway.
type pipeline struct {
	ports     capture.Ports
	acks      *reassembly.ACKFilter
	asm       assemblers
	parser    parsers
	fwd       *forwarder.Forwarder
	build     *forwarder.Builder // one worker's
	log       *slog.Logger
	ctx       context.Context
	exchanges atomic.Uint64
	filtered  atomic.Uint64
	// limit, when not 0, is how many exchanges to emit (--count); onLimit is
	// called when the last of them is emitted, and later ones are dropped.
	limit   uint64
	onLimit func()
	// sinkErr is the first sink failure; the run stops on it. It is written by
	// the goroutine that delivers events, so others read failed until the
	// pipeline is flushed.
	sinkErr error
	failed  atomic.Bool
	// onExchange, when set, is called for each exchange (a progress bar).
	onExchange func()

	// Sharded mode (more than one worker) only.
	workers  []*worker
	place    placement
	placed   int           // the worker a connection went to last
	merged   chan struct{} // closed when the merge goroutine has delivered everything
	seq      uint64        // position of the last segment handed to a worker
	inRound  int           // segments handed out since the last round ended
	now      time.Time     // newest capture time seen
	lastScan time.Time     // capture time of the last timeout tick
	// firstHanded is the worker handed its batch first in the next round.
	firstHanded int
	// early counts batches of events handed on before their round ended;
	// written by the merge, read after merged is closed.
	early uint64
}

type pipelineConfig struct {
	ports      capture.Ports
	parserOpts httpparse.Options
	asmOpts    reassembly.Options
	fwd        *forwarder.Forwarder
	log        *slog.Logger
	// workers is how many goroutines reassemble and parse; 0 or 1 is one, on
	// the caller's goroutine.
	workers int
}

// assemblers and parsers are the workers' stages, summed for statistics.
type assemblers []*reassembly.Assembler

func (a assemblers) Stats() reassembly.Stats {
	var s reassembly.Stats
	for _, x := range a {
		s = s.Add(x.Stats())
	}
	return s
}

type parsers []*httpparse.StreamFactory

func (ps parsers) Stats() httpparse.Stats {
	var s httpparse.Stats
	for _, x := range ps {
		s = s.Add(x.Stats())
	}
	return s
}

func newPipeline(ctx context.Context, cfg pipelineConfig) *pipeline {
	p := &pipeline{ports: cfg.ports, fwd: cfg.fwd, log: cfg.log, ctx: ctx, acks: reassembly.NewACKFilter(cfg.asmOpts)}
	if cfg.workers <= 1 {
		p.build = cfg.fwd.NewBuilder()
		parser := httpparse.NewStreamFactory(cfg.parserOpts, p.emit)
		p.parser = parsers{parser}
		p.asm = assemblers{reassembly.NewAssembler(parser, cfg.asmOpts)}
		return p
	}
	p.merged = make(chan struct{})
	for range cfg.workers {
		w := newWorker(cfg, p.fwd)
		p.workers = append(p.workers, w)
		p.parser = append(p.parser, w.parser)
		p.asm = append(p.asm, w.asm)
		go w.run()
	}
	p.place = newPlacement(p.asm[0].Options())
	go p.merge()
	return p
}

// emit is the single-worker path: every exchange is delivered as it completes.
func (p *pipeline) emit(ex *httpparse.Exchange) {
	if p.limit > 0 && p.exchanges.Load() >= p.limit {
		return
	}
	ev := p.build.Build(ex)
	p.deliver(ev)
	p.fwd.Release(ev) // the sinks copy what they keep
}

// deliver counts an event against --count and writes it to the sinks. Whoever
// built the event releases it after: emit, or the worker (worker.release).
func (p *pipeline) deliver(ev *forwarder.Event) {
	if p.limit > 0 && p.exchanges.Load() >= p.limit {
		return
	}
	if n := p.exchanges.Add(1); n == p.limit && p.onLimit != nil {
		p.onLimit()
	}
	if p.sinkErr != nil {
		return
	}
	if err := p.fwd.Deliver(p.ctx, ev); err != nil {
		p.sinkErr = err
		p.failed.Store(true)
	}
}

// feed hands one segment to reassembly unless the port filter or the ACK
// filter drops it.
func (p *pipeline) feed(seg *capture.Segment) {
	if len(p.ports) > 0 && !p.ports.Contains(uint16(seg.TCP.SrcPort)) && !p.ports.Contains(uint16(seg.TCP.DstPort)) {
		p.filtered.Add(1)
		return
	}
	conn := reassembly.ConnHash(seg.NetFlow, &seg.TCP)
	if !p.acks.Keep(conn, &seg.TCP, seg.CaptureInfo.Timestamp) {
		return
	}
	if p.workers == nil {
		p.asm[0].Assemble(seg.NetFlow, &seg.TCP, seg.CaptureInfo, seg.Source)
		return
	}
	p.seq++
	// The timeout scan of a single Assembler (once a second of capture time,
	// before the segment that crosses the second) is done here for all of them,
	// so every worker scans at the same point of the capture.
	if ts := seg.CaptureInfo.Timestamp; ts.After(p.now) {
		p.now = ts
	}
	if p.now.Sub(p.lastScan) >= time.Second {
		p.broadcastTick(p.now, p.seq)
	}
	w := p.workers[p.place.worker(conn, p.now, p.leastLoaded)]
	w.filling.addSegment(seg, p.seq)
	if p.inRound++; p.inRound >= roundSegments {
		p.endRound()
	}
}

// tick lets reassembly time out holes and idle streams when no packet comes
// (live capture).
func (p *pipeline) tick(now time.Time) {
	if p.workers == nil {
		p.asm[0].Tick(now)
		return
	}
	if now.After(p.now) {
		p.now = now
	}
	p.broadcastTick(p.now, p.seq+1)
	// A quiet link still gets its exchanges out: the round goes now.
	p.endRound()
}

// flushAll ends every stream with reason and, in sharded mode, waits for every
// event to be delivered and stops the workers. Nothing may be fed after it.
func (p *pipeline) flushAll(reason reassembly.CloseReason) {
	if p.workers == nil {
		p.asm[0].FlushAll(reason)
		return
	}
	for _, w := range p.workers {
		w.filling.items = append(w.filling.items, workItem{kind: itemFlush, seq: p.seq + 1, reason: reason})
	}
	p.endRound()
	for _, w := range p.workers {
		close(w.in)
	}
	<-p.merged
}

// broadcastTick has every worker scan for timeouts as of now, before the
// segment at position seq.
func (p *pipeline) broadcastTick(now time.Time, seq uint64) {
	p.lastScan = now
	for _, w := range p.workers {
		w.filling.items = append(w.filling.items, workItem{kind: itemTick, seq: seq, ts: now})
	}
}

// endRound hands every worker its batch, empty or not: the merge takes one
// batch from each worker per round, so it always knows how far each one got.
func (p *pipeline) endRound() {
	first := p.nextFirst()
	for k := range p.workers {
		w := p.workers[(first+k)%len(p.workers)]
		w.handed += uint64(len(w.filling.items))
		w.in <- w.filling
	}
	for _, w := range p.workers {
		w.filling = <-w.free
		w.filling.reset()
	}
	p.inRound = 0
}

// nextFirst is the worker endRound hands its batch first, then the others in
// turn: a different one each round. The worker handed its batch first starts,
// and so ends, its round first, and looks the less loaded while the other
// works: always the same one, it was placed 10% more of the new connections
// (and of a --max-streams cap split among the workers, reached that much sooner).
func (p *pipeline) nextFirst() int {
	first := p.firstHanded
	p.firstHanded = (first + 1) % len(p.workers)
	return first
}

// leastLoaded is the worker with the fewest items handed to it and not yet
// worked through; of several, the one after the last chosen.
func (p *pipeline) leastLoaded() int {
	best, least := 0, uint64(math.MaxUint64)
	for k := range p.workers {
		i := (p.placed + 1 + k) % len(p.workers)
		w := p.workers[i]
		if n := w.handed + uint64(len(w.filling.items)) - w.done.Load(); n < least {
			best, least = i, n
		}
	}
	p.placed = best
	return best
}

// merge delivers each round's events in capture order: by the position of
// what completed them, ticks before segments, then by worker.
func (p *pipeline) merge() {
	defer close(p.merged)
	round := make([]*batch, len(p.workers))
	next := make([]int, len(p.workers))
	for {
		for i, w := range p.workers {
			b, ok := <-w.out
			if !ok {
				return // every worker ends after the same (flush) round
			}
			round[i], next[i] = b, 0
		}
		for {
			// A worker that handed on part of its round (see worker.emit)
			// sends the rest next: take it before anything of a later worker.
			for i, w := range p.workers {
				for next[i] == len(round[i].events) && round[i].partial {
					w.recycle(round[i])
					round[i], next[i] = <-w.out, 0
					p.early++
				}
			}
			best := -1
			for i, b := range round {
				if next[i] < len(b.events) && (best < 0 || b.events[next[i]].before(round[best].events[next[best]])) {
					best = i
				}
			}
			if best < 0 {
				break
			}
			p.deliver(round[best].events[next[best]].ev)
			next[best]++
		}
		for i, w := range p.workers {
			w.recycle(round[i])
		}
	}
}

// placement decides which worker a connection goes to. Hashing connections
// to workers left them unevenly loaded for seconds at a time (a few busy
// keep-alive connections on one of them), and as the merge takes every
// worker's rounds in step, the others then waited: one of two ran alone 37%
// of a replay. So a connection seen for the first time goes to the worker
// with the least work queued, and stays there: its flow hash picks a slot,
// and the slot keeps its worker while any connection in it may still be open
// in that worker's Assembler (one that has seen no segment for the idle
// timeout is closed at the next timeout scan, at most a second of capture
// time later). Connections that share a slot share a worker.
type placement struct {
	slots []placementSlot
	// expiry is how long after its last segment a slot may change worker.
	expiry int64
}

type placementSlot struct {
	lastSeen int64 // capture time of the slot's last segment, Unix ns
	worker   int32
	used     bool
}

// placementSlots is a power of two: 64k slots take 1 MiB.
const placementSlots = 1 << 16

func newPlacement(opts reassembly.Options) placement {
	return placement{
		slots:  make([]placementSlot, placementSlots),
		expiry: int64(opts.IdleTimeout + opts.ReorderWait + 2*time.Second),
	}
}

// worker returns the worker for a segment with flow hash h seen at capture
// time now (never earlier than the last call's); pick chooses one for a slot
// that is new or has expired.
func (pl *placement) worker(h uint64, now time.Time, pick func() int) int {
	sl := &pl.slots[h&(placementSlots-1)]
	t := now.UnixNano()
	if !sl.used || t-sl.lastSeen > pl.expiry {
		sl.worker, sl.used = int32(pick()), true
	}
	sl.lastSeen = t
	return int(sl.worker)
}

// drain reads src to its end, then flushes every stream with reason. It returns
// the source's error other than io.EOF (a truncated file, say) after flushing, so
// nothing read before the error is lost.
func (p *pipeline) drain(ctx context.Context, src capture.Source, reason reassembly.CloseReason) error {
	var srcErr error
	for !p.failed.Load() {
		seg, err := src.Next(ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				srcErr = err
			}
			break
		}
		p.feed(seg)
	}
	if ctx.Err() != nil {
		reason = reassembly.Stopped
	}
	p.flushAll(reason)
	if p.sinkErr != nil {
		return withCode(exitOutput, p.sinkErr)
	}
	return srcErr
}

// summary is the closing line on stderr.
func (p *pipeline) summary(w io.Writer, src capture.Stats) {
	a := p.asm.Stats()
	h := p.parser.Stats()
	fmt.Fprintf(w, "otas-sniff: %d packets, %d TCP streams, %d exchanges, %d unmatched requests, %d unmatched responses, %d parse errors",
		src.Packets, a.Connections, p.exchanges.Load(), h.UnmatchedRequests, h.UnmatchedResponses, h.ParseErrors)
	if a.Gaps > 0 {
		fmt.Fprintf(w, ", %d capture gaps (%d bytes lost)", a.Gaps, a.GapBytes)
	}
	if a.Evicted > 0 {
		fmt.Fprintf(w, ", %d streams evicted (--max-streams)", a.Evicted)
	}
	if a.FarSegments > 0 {
		fmt.Fprintf(w, ", %d segments dropped too far from their stream's bytes", a.FarSegments)
	}
	if src.DecodeErrors > 0 {
		fmt.Fprintf(w, ", %d undecodable packets", src.DecodeErrors)
	}
	if src.KernelDrops+src.IfaceDrops+src.QueueDrops > 0 {
		fmt.Fprintf(w, ", drops: %d kernel, %d interface, %d queue", src.KernelDrops, src.IfaceDrops, src.QueueDrops)
	}
	fmt.Fprintln(w)
}

// roundSegments is how many segments the workers get per round; batchesPerWorker
// how many rounds may be in flight (filling, queued, processed, merging). A
// round's payload and events should stay in cache until the next stage reads
// them: 4,096 segments (2.7 MB of payload) took 9% more CPU than 1,024 for the
// same wall time; smaller rounds wake goroutines more often than they save.
// With most pure ACKs dropped before this (reassembly.ACKFilter), 640 segments
// carry what 1,024 did.
const (
	roundSegments    = 640
	batchesPerWorker = 4
	// maxHeldEvents bounds the events a worker holds for the merge: 100k
	// connections flushed at the end of a replay held ~130 MB of events.
	maxHeldEvents = 1024
)

// worker reassembles, parses and builds events for its share of the
// connections, on its own goroutine.
type worker struct {
	asm    *reassembly.Assembler
	parser *httpparse.StreamFactory
	fwd    *forwarder.Forwarder
	build  *forwarder.Builder
	// Batches circulate: filling (by the reader) -> in -> out (to the merge) ->
	// free -> filling.
	in, out, free chan *batch
	filling       *batch
	// handed counts the items the reader has handed to this worker (in rounds
	// ended), done those the worker has worked through.
	handed uint64
	done   atomic.Uint64
	// working is the batch being processed, and seq and phase the position of
	// the item in it, for the events it completes.
	working *batch
	seq     uint64
	phase   uint8
	tcp     layers.TCP // the segment being worked on
}

func newWorker(cfg pipelineConfig, fwd *forwarder.Forwarder) *worker {
	w := &worker{
		fwd:     fwd,
		build:   fwd.NewDetachedBuilder(),
		in:      make(chan *batch, batchesPerWorker),
		out:     make(chan *batch, batchesPerWorker),
		free:    make(chan *batch, batchesPerWorker),
		filling: &batch{},
	}
	for range batchesPerWorker - 1 {
		w.free <- &batch{}
	}
	w.parser = httpparse.NewStreamFactory(cfg.parserOpts, w.emit)
	w.asm = reassembly.NewAssembler(w.parser, cfg.asmOpts)
	return w
}

func (w *worker) run() {
	defer close(w.out)
	for b := range w.in {
		w.release(b)
		w.working = b
		for i := range b.items {
			it := &b.items[i]
			w.seq = it.seq
			switch it.kind {
			case itemSegment:
				w.phase = 1
				// Decoded again from the batch's copy: layers.TCP keeps slices of
				// the bytes it was decoded from (ports, payload). Assemble keeps
				// neither the header nor the bytes it does not copy.
				if err := w.tcp.DecodeFromBytes(b.data[it.off:it.off+it.n], gopacket.NilDecodeFeedback); err != nil {
					continue // decoded once already; cannot happen
				}
				ci := gopacket.CaptureInfo{Timestamp: it.ts, CaptureLength: int(it.capLen), Length: int(it.length), InterfaceIndex: int(it.ifIndex)}
				w.asm.Assemble(it.netFlow, &w.tcp, ci, it.source)
			case itemTick:
				w.phase = 0
				w.asm.Tick(it.ts)
			case itemFlush:
				w.phase = 0
				w.asm.FlushAll(it.reason)
			}
		}
		w.done.Add(uint64(len(b.items)))
		w.out <- b
	}
}

// emit builds the event here, in parallel with the other workers; the merge
// delivers it.
//
// A flush or a timeout tick can close every stream at once: rather than hold
// all their events until the round ends, every maxHeldEvents go to the merge
// in a batch of their own, marked partial.
func (w *worker) emit(ex *httpparse.Exchange) {
	w.working.events = append(w.working.events, seqEvent{seq: w.seq, phase: w.phase, ev: w.build.Build(ex)})
	if len(w.working.events) < maxHeldEvents {
		return
	}
	var carrier *batch
	select {
	case carrier = <-w.free:
		w.release(carrier)
		carrier.reset()
	default:
		// Every batch is queued to this worker or held by the merge, which
		// waits for this round: waiting for one here would stall them all.
		carrier = new(batch)
	}
	carrier.events, w.working.events = w.working.events, carrier.events
	carrier.partial = true
	w.out <- carrier
}

// release lets the worker's later events reuse the memory of b's merged
// events: here, on the worker's goroutine, rather than on the merge's, which
// would pass the buffers (and the pools' locks) between CPUs.
func (w *worker) release(b *batch) {
	for i := range b.events {
		w.fwd.Release(b.events[i].ev)
	}
	clear(b.events)
	b.events, b.partial = b.events[:0], false
}

// recycle hands a merged batch back to the reader, or drops it when the
// free list is full already: one of the carriers emit made.
func (w *worker) recycle(b *batch) {
	select {
	case w.free <- b:
	default:
	}
}

type itemKind uint8

const (
	itemSegment itemKind = iota
	itemTick             // scan for timeouts as of now
	itemFlush            // end every stream with reason
)

// workItem is one thing for a worker to do, at position seq of the capture.
// Kept small, two cache lines (it was 856 bytes with a whole capture.Segment,
// then 184 with a whole CaptureInfo): the reader writes one per packet, and
// the worker reads it on another CPU.
type workItem struct {
	kind   itemKind
	reason reassembly.CloseReason
	// A segment: its TCP header and payload are copied to data[off:off+n] of
	// the batch and decoded when it is worked on; its CaptureInfo is ts and the
	// lengths (a packet is at most 256 KiB). A tick's time is ts.
	off, n         uint32
	capLen, length uint32
	ifIndex        int32
	seq            uint64
	ts             time.Time
	netFlow        gopacket.Flow
	source         string
}

// batch is one round of one worker: its work, with the segments' payloads
// copied (the source reuses its buffers), and the events it completed.
type batch struct {
	items  []workItem
	data   []byte
	events []seqEvent
	// partial marks events handed on early: more of the round follows.
	partial bool
}

// reset empties b for the reader; its events are released by the worker.
func (b *batch) reset() { b.items, b.data = b.items[:0], b.data[:0] }

func (b *batch) addSegment(seg *capture.Segment, seq uint64) {
	off := len(b.data)
	b.data = append(b.data, seg.TCP.Contents...)
	b.data = append(b.data, seg.TCP.Payload...)
	ci := &seg.CaptureInfo
	b.items = append(b.items, workItem{kind: itemSegment, seq: seq, off: uint32(off), n: uint32(len(b.data) - off),
		ts: ci.Timestamp, capLen: uint32(ci.CaptureLength), length: uint32(ci.Length), ifIndex: int32(ci.InterfaceIndex),
		netFlow: seg.NetFlow, source: seg.Source})
}

// seqEvent is an event with the position of what completed it.
type seqEvent struct {
	seq   uint64
	phase uint8 // 0: a tick or flush, 1: a segment; ticks come first
	ev    *forwarder.Event
}

func (e seqEvent) before(o seqEvent) bool {
	return e.seq < o.seq || e.seq == o.seq && e.phase < o.phase
}
