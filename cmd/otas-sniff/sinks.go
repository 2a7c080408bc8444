package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/otas/otas-sniff/forwarder"
)

// sinkConfig says where events go and what is added to them.
type sinkConfig struct {
	outputs []string
	maxBody int
	stdout  io.Writer
	// summary, when set, receives the endpoint table when the sinks close.
	summary io.Writer
	top     int
	// summaryOnly drops every output but the endpoint table.
	summaryOnly bool
	live        bool
	redactor    *forwarder.Redactor
	// enrich runs on each event after path templating (pod names, metrics).
	enrich func(*forwarder.Event)
	log    *slog.Logger
	// otas configures the otas output.
	otas *forwarder.OTASConfig
	// otasSink is set by buildForwarder when the otas output is open, for
	// readiness and metrics.
	otasSink *forwarder.OTASSink
}

// buildForwarder opens every -o output. With none given, events go to OTAS.
func buildForwarder(ctx context.Context, cfg *sinkConfig) (*forwarder.Forwarder, error) {
	outputs := cfg.outputs
	if len(outputs) == 0 && !cfg.summaryOnly {
		outputs = []string{"otas"}
	}
	if cfg.summaryOnly {
		outputs = nil
	}
	var sinks []forwarder.Sink
	closeAll := func() {
		for _, s := range sinks {
			s.Close(ctx)
		}
	}
	for _, o := range outputs {
		spec, err := forwarder.ParseSinkSpec(o)
		if err != nil {
			closeAll()
			return nil, withCode(exitUsage, fmt.Errorf("-o: %w", err))
		}
		var s forwarder.Sink
		switch spec.Kind {
		case "jsonl":
			if spec.Arg == "-" {
				s = forwarder.NewJSONLWriter("stdout", cfg.stdout)
			} else {
				s, err = forwarder.NewJSONLSink(spec.Arg)
			}
		case "har":
			if spec.Arg == "-" {
				s = forwarder.NewHARWriter("stdout", cfg.stdout)
			} else {
				s, err = forwarder.NewHARSink(spec.Arg)
			}
		case "otas":
			if cfg.otasSink != nil {
				err = errors.New("otas is given twice")
				break
			}
			var ocfg forwarder.OTASConfig
			if cfg.otas != nil {
				ocfg = *cfg.otas
			}
			if err = checkOTASFlags(&ocfg); err != nil {
				closeAll()
				return nil, err
			}
			ocfg.Live = cfg.live
			ocfg.Logger = cfg.log
			var sink *forwarder.OTASSink
			if sink, err = forwarder.NewOTASSink(ctx, ocfg); err != nil {
				closeAll()
				return nil, otasError(err)
			}
			cfg.otasSink, s = sink, sink
		default:
			err = errors.New("the " + spec.Kind + " output is not available in this build")
		}
		if err != nil {
			closeAll()
			return nil, withCode(exitOutput, fmt.Errorf("-o %s: %w", o, err))
		}
		sinks = append(sinks, s)
	}
	if cfg.summary != nil {
		sinks = append(sinks, forwarder.NewEndpointStats(cfg.summary, cfg.top))
	}
	// Path templates are pure, so they are added where events are built (in
	// parallel); cfg.enrich runs where they are written.
	return forwarder.New(forwarder.Options{BodyLimit: cfg.maxBody, Redactor: cfg.redactor,
		PathTemplates: true, Enrich: cfg.enrich}, sinks...), nil
}
