package forwarder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/otas/otas-sniff/httpparse"
)

// DefaultBodyLimit is where event bodies are cut, as the OTAS middleware did.
const DefaultBodyLimit = 100 << 10

// Sink receives finished, redacted events.
type Sink interface {
	// Write takes one event. It may block (a replay loses nothing) or queue.
	Write(ctx context.Context, ev *Event) error
	// Close flushes what the sink holds and releases it.
	Close(ctx context.Context) error
}

// An EventCopier is a Sink that keeps nothing of an event once Write returns:
// what it holds on to (a line to write, a batch to upload, a table key) it has
// copied. When every sink of a Forwarder is one, Release lets later events
// reuse a delivered event's memory; one sink that is not turns Release off.
type EventCopier interface {
	Sink
	CopiesEvents()
}

// An EncodedBodiesSink is a Sink that never reads an event's RequestBody or
// ResponseBody: it writes the bodies, if at all, through the event's JSON
// encoding (AppendJSON). When every sink of a Forwarder is one and there is no
// Enrich hook, a detached Builder's events keep their bodies only as encoded
// (see NewDetachedBuilder).
type EncodedBodiesSink interface {
	Sink
	UsesEncodedBodies()
}

// Options configures a Forwarder.
type Options struct {
	// BodyLimit is where bodies are cut after redaction; DefaultBodyLimit when 0.
	BodyLimit int
	Redactor  *Redactor
	// Enrich, when set, may add to an event before it is written (path
	// templates, pod names). It must not keep the event: it may be released
	// once written.
	Enrich func(*Event)
	// Prepare, when set, adds to an event as Build makes it; unlike Enrich it
	// may run on several goroutines at once, so it must be a pure function of
	// the event.
	Prepare func(*Event)
	// PathTemplates fills each event's Metadata.PathTemplate (PathTemplate of
	// its path) as Build makes it.
	PathTemplates bool
}

// Forwarder redacts each exchange, turns it into an event and writes it to every
// sink.
type Forwarder struct {
	opts   Options
	sinks  []Sink
	events atomic.Uint64
	errors atomic.Uint64
	slabs  slabPool
	// reuse is true when every sink is an EventCopier.
	reuse bool
	// rawBodies is false when every sink is an EncodedBodiesSink and there is
	// no Enrich hook: nothing reads an event's bodies but its encoding.
	rawBodies bool
}

// New returns a Forwarder writing to sinks.
func New(opts Options, sinks ...Sink) *Forwarder {
	if opts.BodyLimit == 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.Redactor == nil {
		opts.Redactor = NewRedactor(RedactorOptions{})
	}
	f := &Forwarder{opts: opts, sinks: sinks, reuse: true, rawBodies: opts.Enrich != nil}
	for _, s := range sinks {
		if _, ok := s.(EventCopier); !ok {
			f.reuse = false
		}
		if _, ok := s.(EncodedBodiesSink); !ok {
			f.rawBodies = true
		}
	}
	return f
}

// Event redacts ex and builds its event. ex is modified in place.
func (f *Forwarder) Event(ex *httpparse.Exchange) *Event {
	ev := f.Build(ex)
	if f.opts.Enrich != nil {
		f.opts.Enrich(ev)
	}
	return ev
}

// Build redacts ex (in place) and builds its event, without Enrich; the event
// shares the memory of ex's bodies, which must not be written to after. It is safe
// to call from several goroutines at once: the costly half of Handle, so
// parallel workers can run it and leave Deliver to one goroutine.
func (f *Forwarder) Build(ex *httpparse.Exchange) *Event {
	sl := f.slabs.get()
	defer f.slabs.put(sl)
	return f.build(ex, sl, false)
}

// A Builder builds events as Forwarder.Build does, for one goroutine, from a
// slab of its own: slabs taken from the pool passed between the goroutines
// of parallel workers, and each then wrote the event strings into memory the
// other's CPU held.
type Builder struct {
	f      *Forwarder
	sl     *slab
	detach bool
}

// NewBuilder returns a Builder of f's events. It is not safe for concurrent use.
func (f *Forwarder) NewBuilder() *Builder {
	return &Builder{f: f, sl: &slab{pool: &f.slabs}}
}

// NewDetachedBuilder returns a Builder whose events own their bytes: each copies
// what it views of its exchange into its slab and hands the exchange back as it
// is built, instead of at Release. For events held a while before they are
// delivered (a sharded replay's merge): the parser then reuses its buffers
// while they are still in cache, where buffers that came back a round later
// had left it (6% less CPU on two workers). Bodies over 32 KiB are not copied:
// such an event keeps its exchange until Release, as do all when there is a
// Prepare hook or a sink that is not an EventCopier. When every sink is an
// EncodedBodiesSink and there is no Enrich hook, the raw bodies are not copied
// either: the event keeps them only as their JSON encoding, and its
// RequestBody and ResponseBody are empty (5% less CPU on two workers).
func (f *Forwarder) NewDetachedBuilder() *Builder {
	return &Builder{f: f, sl: &slab{pool: &f.slabs}, detach: true}
}

// Build is Forwarder.Build.
func (b *Builder) Build(ex *httpparse.Exchange) *Event { return b.f.build(ex, b.sl, b.detach) }

func (f *Forwarder) build(ex *httpparse.Exchange, sl *slab, detach bool) *Event {
	token := strings.TrimSpace(ex.Request.Header.Get(SessionTokenHeader))
	f.opts.Redactor.Redact(ex)
	ev := newEvent(ex, token, f.opts.BodyLimit, sl)
	if f.opts.PathTemplates {
		// Most paths are their own template: only a changed one takes room.
		path := ev.Path // without query or fragment (splitTarget)
		ev.Metadata.PathTemplate = path
		if t, changed := appendPathTemplate(sl.free(len(path)+2*len(IDPlaceholder)), path); changed {
			ev.Metadata.PathTemplate = sl.string(t)
		}
	}
	if f.opts.Prepare != nil {
		f.opts.Prepare(ev)
	}
	// Escaping the bodies is most of encoding an event: done here, it runs on
	// the parallel workers rather than the one goroutine that writes the sinks.
	ev.requestBodyJSON = encodeString(sl, ev.RequestBody)
	ev.responseBodyJSON = encodeString(sl, ev.ResponseBody)
	// Only where Release returns the exchange's buffers: otherwise nothing
	// reuses them, and the copies would only add to what sinks hold.
	if detach && f.reuse && f.opts.Prepare == nil && len(ev.RequestBody) <= slabMax && len(ev.ResponseBody) <= slabMax {
		ev.detach(sl, f.rawBodies)
		ev.chunks = sl.take()
		ex.Release()
		return ev
	}
	ev.chunks, ev.ex = sl.take(), ex
	return ev
}

// Release lets later events and exchanges reuse the memory of ev's strings and
// of the exchange it was built from, when every sink is an EventCopier. Call
// it once Deliver has returned and nothing will read ev or the exchange again.
// Optional: an event never released is collected as usual.
func (f *Forwarder) Release(ev *Event) {
	if !f.reuse {
		return
	}
	f.slabs.release(&ev.chunks)
	if ex := ev.ex; ex != nil {
		ev.ex = nil
		ex.Release()
	}
}

// Deliver enriches an event from Build and writes it to every sink; calls must
// not overlap.
func (f *Forwarder) Deliver(ctx context.Context, ev *Event) error {
	if f.opts.Enrich != nil {
		f.opts.Enrich(ev)
	}
	f.events.Add(1)
	var errs []error
	for _, s := range f.sinks {
		if err := s.Write(ctx, ev); err != nil {
			f.errors.Add(1)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Handle forwards one exchange to every sink.
func (f *Forwarder) Handle(ctx context.Context, ex *httpparse.Exchange) error {
	ev := f.Build(ex)
	defer f.Release(ev)
	return f.Deliver(ctx, ev)
}

// Close closes every sink, returning every error.
func (f *Forwarder) Close(ctx context.Context) error {
	var errs []error
	for _, s := range f.sinks {
		if err := s.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stats reports how many events were built and how many sink writes failed.
func (f *Forwarder) Stats() (events, writeErrors uint64) {
	return f.events.Load(), f.errors.Load()
}

// SinkSpec is a parsed -o value: KIND or KIND:ARG.
type SinkSpec struct {
	Kind string
	Arg  string
}

// ParseSinkSpec parses "jsonl:PATH" ("-" is stdout), "har:PATH" or "otas".
func ParseSinkSpec(s string) (SinkSpec, error) {
	kind, arg, _ := strings.Cut(s, ":")
	spec := SinkSpec{Kind: strings.ToLower(kind), Arg: arg}
	switch spec.Kind {
	case "jsonl", "har":
		if arg == "" {
			return spec, fmt.Errorf("output %q needs a path: use %s:PATH, or %s:- for standard output", s, kind, kind)
		}
	case "otas":
	default:
		return spec, fmt.Errorf("unknown output %q: use jsonl:PATH, har:PATH or otas", s)
	}
	return spec, nil
}
