package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/httpparse"
	"github.com/otas/otas-sniff/reassembly"
)

// pipeline wires the four stages: segments in, events out.
type pipeline struct {
	ports     capture.Ports
	asm       *reassembly.Assembler
	parser    *httpparse.StreamFactory
	fwd       *forwarder.Forwarder
	log       *slog.Logger
	ctx       context.Context
	exchanges atomic.Uint64
	filtered  atomic.Uint64
	// limit, when not 0, is how many exchanges to emit (--count); onLimit is
	// called when the last of them is emitted, and later ones are dropped.
	limit   uint64
	onLimit func()
	// sinkErr is the first sink failure; the run stops on it.
	sinkErr error
	// onExchange, when set, is called for each exchange (a progress bar).
	onExchange func()
}

type pipelineConfig struct {
	ports      capture.Ports
	parserOpts httpparse.Options
	asmOpts    reassembly.Options
	fwd        *forwarder.Forwarder
	log        *slog.Logger
}

func newPipeline(ctx context.Context, cfg pipelineConfig) *pipeline {
	p := &pipeline{ports: cfg.ports, fwd: cfg.fwd, log: cfg.log, ctx: ctx}
	p.parser = httpparse.NewStreamFactory(cfg.parserOpts, p.emit)
	p.asm = reassembly.NewAssembler(p.parser, cfg.asmOpts)
	return p
}

func (p *pipeline) emit(ex *httpparse.Exchange) {
	if p.limit > 0 && p.exchanges.Load() >= p.limit {
		return
	}
	if n := p.exchanges.Add(1); n == p.limit && p.onLimit != nil {
		p.onLimit()
	}
	if p.sinkErr != nil {
		return
	}
	if err := p.fwd.Handle(p.ctx, ex); err != nil {
		p.sinkErr = err
	}
}

// feed hands one segment to reassembly unless the port filter drops it.
func (p *pipeline) feed(seg *capture.Segment) {
	if len(p.ports) > 0 && !p.ports.Contains(uint16(seg.TCP.SrcPort)) && !p.ports.Contains(uint16(seg.TCP.DstPort)) {
		p.filtered.Add(1)
		return
	}
	p.asm.Assemble(seg.NetFlow, &seg.TCP, seg.CaptureInfo, seg.Source)
}

// drain reads src to its end, then flushes every stream with reason. It returns
// the source's error other than io.EOF (a truncated file, say) after flushing, so
// nothing read before the error is lost.
func (p *pipeline) drain(ctx context.Context, src capture.Source, reason reassembly.CloseReason) error {
	var srcErr error
	for p.sinkErr == nil {
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
	p.asm.FlushAll(reason)
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
	if src.DecodeErrors > 0 {
		fmt.Fprintf(w, ", %d undecodable packets", src.DecodeErrors)
	}
	if src.KernelDrops+src.IfaceDrops+src.QueueDrops > 0 {
		fmt.Fprintf(w, ", drops: %d kernel, %d interface, %d queue", src.KernelDrops, src.IfaceDrops, src.QueueDrops)
	}
	fmt.Fprintln(w)
}
