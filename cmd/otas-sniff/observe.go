package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/k8smeta"
	"github.com/otas/otas-sniff/internal/metrics"
)

// observed holds what a running capture exposes: the stages whose counters
// metrics read, set as each one opens.
type observed struct {
	pipeline atomic.Pointer[pipeline]
	source   atomic.Pointer[capture.LiveSource]
	otas     atomic.Pointer[forwarder.OTASSink]
	m        *metrics.Metrics
}

func newObserved() *observed {
	o := &observed{}
	o.m = metrics.New(metrics.Sources{
		Capture: func() metrics.CaptureStats {
			src := o.source.Load()
			if src == nil {
				return metrics.CaptureStats{}
			}
			st := src.Stats()
			return metrics.CaptureStats{Packets: st.Packets, KernelDrops: st.KernelDrops, InterfaceDrops: st.IfaceDrops, QueueDrops: st.QueueDrops}
		},
		Streams: func() metrics.StreamStats {
			p := o.pipeline.Load()
			if p == nil {
				return metrics.StreamStats{}
			}
			st := p.asm.Stats()
			return metrics.StreamStats{Streams: st.Connections, Open: st.Open, Gaps: st.Gaps}
		},
		Parser: func() metrics.ParserStats {
			p := o.pipeline.Load()
			if p == nil {
				return metrics.ParserStats{}
			}
			st := p.parser.Stats()
			return metrics.ParserStats{Exchanges: p.exchanges.Load(), ParseErrors: st.ParseErrors, UnmatchedRequests: st.UnmatchedRequests, UnmatchedResponses: st.UnmatchedResponses}
		},
		Upload: func() metrics.UploadStats {
			s := o.otas.Load()
			if s == nil {
				return metrics.UploadStats{}
			}
			return uploadStats(s.Stats())
		},
	})
	return o
}

// Drop reasons that are the backend's refusal, not ours.
var refusedReasons = map[string]bool{
	forwarder.DropKeyRejected: true, forwarder.DropServerError: true, forwarder.DropTooLarge: true,
	forwarder.DropMissingToken: true, forwarder.DropInvalidToken: true, forwarder.DropInvalidJSON: true,
	forwarder.DropMissingRequired: true,
}

// uploadStats splits the OTAS sink's drops into events the backend refused
// (failed) and events we gave up ourselves (dropped: queue full, spool cap).
func uploadStats(st forwarder.OTASStats) metrics.UploadStats {
	u := metrics.UploadStats{Uploaded: st.Uploaded, Spooled: st.Spooled, QueueDepth: int64(st.QueueDepth)}
	for reason, n := range st.Dropped {
		if refusedReasons[reason] || strings.HasPrefix(reason, "http_") {
			u.Failed += n
		} else {
			u.Dropped += n
		}
	}
	return u
}

// observe records an event's latency by status class.
func (o *observed) observe(ev *forwarder.Event) {
	o.m.ObserveExchange(ev.StatusCode, time.Duration(ev.LatencyMS*float64(time.Millisecond)))
}

// ready is /readyz: capture open, and for the otas output, authenticated and
// the queue not full.
func (o *observed) ready() (bool, string) {
	if o.source.Load() == nil {
		return false, "capture not open"
	}
	if s := o.otas.Load(); s != nil {
		if err := s.Ready(); err != nil {
			return false, err.Error()
		}
	}
	return true, "ok"
}

// serve starts the metrics and health server on addr ("" = none).
func (o *observed) serve(ctx context.Context, addr string) (*metrics.Server, error) {
	if addr == "" {
		return nil, nil
	}
	srv, err := metrics.Serve(ctx, addr, o.m.Registry(), o.ready)
	if err != nil {
		return nil, usageErrorf("--metrics-addr: %w", err)
	}
	return srv, nil
}

// podResolver watches the pods of node through the Kubernetes API, so events
// name the pods at both ends. It waits for the first list of pods.
func podResolver(ctx context.Context, node, kubeconfig string, log *slog.Logger) (*k8smeta.Resolver, error) {
	client, err := k8smeta.NewClient(kubeconfig)
	if err != nil {
		return nil, withCode(exitFailure, fmt.Errorf("--k8s-node: %w", err))
	}
	res, err := k8smeta.New(ctx, client, node, log)
	if err != nil {
		return nil, withCode(exitFailure, fmt.Errorf("--k8s-node %s: %w", node, err))
	}
	return res, nil
}
