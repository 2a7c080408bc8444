package forwarder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
)

// Drop reasons reported in OTASStats.Dropped.
const (
	DropQueueFull       = "queue_full"    // live capture, queue full, no spool
	DropSpoolFull       = "spool_full"    // spool over its cap: oldest events
	DropSpoolError      = "spool_error"   // the spool could not be written
	DropSpoolCorrupt    = "spool_corrupt" // torn or damaged spool records
	DropKeyRejected     = "key_rejected"  // the SDK key was refused, no spool
	DropServerError     = "rejected_server_error"
	DropTooLarge        = "too_large"       // 413 for a single event
	DropRetryExhausted  = "retry_exhausted" // live, no spool, backend down too long
	DropShutdown        = "shutdown"        // not sent within the drain timeout, no spool
	DropEncode          = "encode_error"    // the event could not be encoded
	DropMissingToken    = "missing_agent_session_token"
	DropInvalidToken    = "invalid_or_expired_token"
	DropInvalidJSON     = "invalid_json"
	DropMissingRequired = "missing_required_fields"
)

// ErrSinkClosed is returned by Write after Close.
var ErrSinkClosed = errors.New("otas sink closed")

// OTASStats is a snapshot of the OTAS sink's counters.
type OTASStats struct {
	// Uploaded events were stored by the backend.
	Uploaded uint64
	// Dropped counts events given up, by reason (the Drop* constants, or
	// "http_NNN" for an unexpected status).
	Dropped map[string]uint64
	// SkippedUntokened counts events without an agent session token not sent.
	SkippedUntokened uint64
	// Spooled counts events written to the spool; SpoolEvents and SpoolBytes are
	// what it holds now.
	Spooled     uint64
	SpoolEvents int64
	SpoolBytes  int64
	// QueueDepth is events waiting in memory; QueueCapacity its bound.
	QueueDepth, QueueCapacity int
	// QueueWait is how long Write waited for room in a full queue (a replay
	// waits; a live capture spools or drops instead).
	QueueWait time.Duration
	// Requests counts every HTTP request made, by kind; FailedRequests those
	// that got no usable answer (network error, 429, 5xx) and Retries how many
	// times events were sent again.
	Requests, BatchRequests, EventRequests, AuthRequests uint64
	FailedRequests, Retries                              uint64
	// WireBytes is bytes written to the backend's connections (headers, bodies,
	// TLS).
	WireBytes int64
	// PerEventMode is true once the batch endpoint was found missing.
	PerEventMode bool
	// Authenticated is true once the key was accepted; KeyRejected once it was
	// refused for good.
	Authenticated, KeyRejected bool
}

// DroppedTotal sums Dropped.
func (s OTASStats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// item is one encoded event on its way.
type item struct {
	// data is the event's JSON without project_id, beginning with '{'.
	data  []byte
	token string
	// serverErrors counts 500 answers that point at this event.
	serverErrors int
	created      time.Time
	lastTry      time.Time
	seg          *segRef
}

// segRef tracks the events read from one spool segment.
type segRef struct {
	seg     *segment
	pending atomic.Int64
}

// OTASSink uploads events to the OTAS backend. Create it with NewOTASSink.
type OTASSink struct {
	cfg   OTASConfig
	c     *client
	log   *slog.Logger
	spool *spool

	queue   chan *item
	replayq chan *item
	batches chan []*item
	sem     chan struct{}
	gzPool  sync.Pool

	writeMu sync.RWMutex
	closed  atomic.Bool

	project  atomic.Pointer[Project]
	authed   chan struct{}
	authOnce sync.Once
	keyErr   atomic.Pointer[OTASAuthError]
	perEvent atomic.Bool
	gate     gate

	keyMu        sync.Mutex
	keyCheckedAt time.Time
	keyCheckBad  bool

	bg, sendCtx, pumpCtx          context.Context
	bgCancel, sendCancel, pumpCan context.CancelFunc
	workers, batcher, pump        sync.WaitGroup

	uploaded, spooled, untokened              atomic.Uint64
	batchReqs, eventReqs, failedReqs, retries atomic.Uint64
	dropMu                                    sync.Mutex
	dropped                                   map[string]uint64
	closeDropped                              atomic.Uint64
	queueWait                                 atomic.Int64 // nanoseconds
}

// NewOTASSink loads and checks the key, authenticates, opens the spool and starts
// the uploader. A refused key is an error at once. When the backend cannot be
// reached a replay (cfg.Live false) retries until cfg.AuthTimeout and then fails;
// a live capture starts anyway, spools (or queues) events, retries authentication
// with backoff in the background and reports not ready until it succeeds.
func NewOTASSink(ctx context.Context, cfg OTASConfig) (*OTASSink, error) {
	cfg = cfg.withDefaults()
	if cfg.SDKKey == "" {
		key, err := LoadSDKKey(os.Getenv, cfg.SDKKeyFile)
		if err != nil {
			return nil, err
		}
		cfg.SDKKey = key
	} else if err := CheckSDKKey(cfg.SDKKey); err != nil {
		return nil, err
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	s := &OTASSink{
		cfg:     cfg,
		c:       c,
		log:     cfg.Logger.With("sink", "otas"),
		queue:   make(chan *item, cfg.QueueSize),
		replayq: make(chan *item, cfg.BatchSize),
		batches: make(chan []*item),
		sem:     make(chan struct{}, cfg.Workers*4),
		authed:  make(chan struct{}),
		dropped: map[string]uint64{},
		gate:    gate{initial: cfg.RetryInitial, max: cfg.RetryMax},
	}
	s.gzPool.New = func() any {
		w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		return w
	}
	if cfg.SpoolDir != "" {
		sp, err := openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes,
			func(n int) { s.drop(DropSpoolFull, n) },
			func(n int) { s.drop(DropSpoolCorrupt, n) })
		if err != nil {
			return nil, err
		}
		s.spool = sp
		if ev, b := sp.backlog(); ev > 0 {
			s.log.Info("spool holds events from an earlier run; they will be sent", "events", ev, "bytes", b, "dir", cfg.SpoolDir)
		}
	}
	fail := func(err error) (*OTASSink, error) {
		if s.spool != nil {
			_ = s.spool.close()
		}
		c.http.CloseIdleConnections()
		return nil, err
	}

	p, err := c.authenticate(ctx)
	var ae *OTASAuthError
	switch {
	case err == nil:
		s.setProject(p)
	case errors.As(err, &ae) && ae.Rejected():
		return fail(err)
	case !errors.As(err, &ae):
		return fail(err)
	case cfg.Live:
		s.log.Warn("OTAS backend unreachable; capturing and queueing, retrying authentication", "error", err)
	default:
		p, err = s.authRetry(ctx, cfg.AuthTimeout)
		if err != nil {
			return fail(fmt.Errorf("waited %s for the OTAS backend: %w", cfg.AuthTimeout, err))
		}
		s.setProject(p)
	}

	s.bg, s.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	s.sendCtx, s.sendCancel = context.WithCancel(s.bg)
	s.pumpCtx, s.pumpCan = context.WithCancel(s.bg)
	if s.project.Load() == nil {
		go s.authLoop()
	}
	s.batcher.Add(1)
	go s.runBatcher()
	for range cfg.Workers {
		s.workers.Add(1)
		go s.runWorker()
	}
	if s.spool != nil {
		s.pump.Add(1)
		go s.runPump()
	}
	return s, nil
}

func (s *OTASSink) setProject(p Project) {
	s.project.Store(&p)
	s.authOnce.Do(func() { close(s.authed) })
	s.log.Info("authenticated with OTAS", "project_id", p.ID, "project", p.Name)
}

// authRetry retries authentication with backoff until it succeeds, the key is
// refused, or timeout passes; it returns the last error.
func (s *OTASSink) authRetry(ctx context.Context, timeout time.Duration) (Project, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for n := 1; ; n++ {
		p, err := s.c.authenticate(ctx)
		if err == nil {
			return p, nil
		}
		last = err
		var ae *OTASAuthError
		if errors.As(err, &ae) && ae.Rejected() {
			return Project{}, err
		}
		t := time.NewTimer(backoff(s.cfg.RetryInitial, s.cfg.RetryMax, n))
		select {
		case <-ctx.Done():
			t.Stop()
			return Project{}, last
		case <-t.C:
		}
	}
}

// authLoop authenticates in the background for a live capture.
func (s *OTASSink) authLoop() {
	p, err := s.authRetry(s.bg, 1<<62)
	if err != nil {
		var ae *OTASAuthError
		if errors.As(err, &ae) && ae.Rejected() {
			s.setKeyBad(ae)
		}
		return
	}
	s.setProject(p)
}

// Ready reports nil once the key is authenticated and not refused since.
func (s *OTASSink) Ready() error {
	if ke := s.keyErr.Load(); ke != nil {
		return ke
	}
	if s.project.Load() == nil {
		return errors.New("otas: not authenticated yet (backend unreachable)")
	}
	return nil
}

func (s *OTASSink) setKeyBad(e *OTASAuthError) {
	if s.keyErr.CompareAndSwap(nil, e) {
		what := "events are dropped"
		if s.spool != nil {
			what = "events are kept in the spool"
		}
		s.log.Error("OTAS REJECTED THE SDK KEY: uploads stopped; capture continues and "+what+"; fix the key and restart", "status", e.Status, "reason", e.Reason)
	}
}

// Write queues ev for upload. In a live capture it never blocks: when the queue
// is full the event goes to the spool, or is dropped and counted. In a replay it
// blocks until there is room, so nothing is lost.
func (s *OTASSink) Write(ctx context.Context, ev *Event) error {
	if s.closed.Load() {
		return ErrSinkClosed
	}
	if ev.SessionToken == "" && !s.cfg.IncludeUntokened {
		s.untokened.Add(1)
		return nil
	}
	data, err := encodeEvent(ev)
	if err != nil {
		s.drop(DropEncode, 1)
		return fmt.Errorf("otas: encode event: %w", err)
	}
	// A clone: the token shares the captured request's buffer, which a queued
	// item must not keep alive.
	it := &item{data: data, token: strings.Clone(ev.SessionToken), created: time.Now()}
	s.writeMu.RLock()
	defer s.writeMu.RUnlock()
	if s.closed.Load() {
		return ErrSinkClosed
	}
	if s.cfg.Live {
		select {
		case s.queue <- it:
		default:
			s.toSpoolOr([]*item{it}, DropQueueFull)
		}
		return nil
	}
	select {
	case s.queue <- it:
		return nil
	default:
	}
	// The queue is full: the uploader is behind, and the caller waits. The
	// time is counted, so a replay can show whether the uploader held it back.
	start := time.Now()
	defer func() { s.queueWait.Add(int64(time.Since(start))) }()
	select {
	case s.queue <- it:
		return nil
	case <-ctx.Done():
		s.drop(DropShutdown, 1)
		return fmt.Errorf("otas: queue event: %w", ctx.Err())
	}
}

// encodeEvent encodes ev without project_id (added when sent, once known) and
// with an event id.
func encodeEvent(ev *Event) ([]byte, error) {
	cp := *ev
	cp.ProjectID = ""
	if cp.Metadata.EventID == "" {
		cp.Metadata.EventID = uuid.NewString()
	}
	bodies := len(cp.RequestBody) + len(cp.ResponseBody) + len(cp.requestBodyJSON.json) + len(cp.responseBodyJSON.json)
	out, err := cp.AppendJSON(make([]byte, 0, 512+bodies+len(cp.RequestHeaders)+len(cp.ResponseHeaders)), false)
	if err != nil {
		return nil, err
	}
	const pre = `{"project_id":"",`
	if bytes.HasPrefix(out, []byte(pre)) {
		// Drop the empty project_id in place: the buffer is ours.
		out[len(pre)-1] = '{'
		return out[len(pre)-1:], nil
	}
	// The field order changed: fall back to a map.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, err
	}
	delete(m, "project_id")
	return json.Marshal(m)
}

// CopiesEvents marks OTASSink an EventCopier: events are encoded in Write,
// the token cloned.
func (s *OTASSink) CopiesEvents() {}

// UsesEncodedBodies marks OTASSink an EncodedBodiesSink: an upload carries the
// events' JSON encodings.
func (s *OTASSink) UsesEncodedBodies() {}

// Close stops taking events, sends what it holds within DrainTimeout (or ctx's
// deadline when earlier), and spools the rest, or drops and counts it without a
// spool. It returns an error when events were dropped at shutdown or the key was
// refused.
func (s *OTASSink) Close(ctx context.Context) error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.writeMu.Lock()
	close(s.queue)
	s.writeMu.Unlock()
	s.pumpCan()
	s.pump.Wait()
	close(s.replayq)

	deadline := time.Now().Add(s.cfg.DrainTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, s.sendCancel)
	timer := time.AfterFunc(time.Until(deadline), s.sendCancel)
	s.batcher.Wait()
	s.workers.Wait()
	timer.Stop()
	stop()
	s.sendCancel()
	s.bgCancel()
	var errs []error
	if s.spool != nil {
		if err := s.spool.close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.c.http.CloseIdleConnections()
	st := s.Stats()
	s.log.Info("otas sink closed", "uploaded", st.Uploaded, "dropped", st.DroppedTotal(), "spooled", st.Spooled,
		"spool_backlog", st.SpoolEvents, "requests", st.Requests, "skipped_untokened", st.SkippedUntokened)
	if n := s.closeDropped.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("otas: %d events not delivered within the drain timeout (%s) and dropped: use --spool-dir to keep them", n, s.cfg.DrainTimeout))
	}
	if ke := s.keyErr.Load(); ke != nil {
		errs = append(errs, ke)
	}
	return errors.Join(errs...)
}

// Stats returns a snapshot of the counters.
func (s *OTASSink) Stats() OTASStats {
	st := OTASStats{
		Uploaded:         s.uploaded.Load(),
		SkippedUntokened: s.untokened.Load(),
		Spooled:          s.spooled.Load(),
		QueueDepth:       len(s.queue),
		QueueCapacity:    cap(s.queue),
		QueueWait:        time.Duration(s.queueWait.Load()),
		BatchRequests:    s.batchReqs.Load(),
		EventRequests:    s.eventReqs.Load(),
		AuthRequests:     uint64(s.c.reqs.Load()),
		FailedRequests:   s.failedReqs.Load(),
		Retries:          s.retries.Load(),
		WireBytes:        s.c.wire.Load(),
		PerEventMode:     s.perEvent.Load(),
		Authenticated:    s.project.Load() != nil,
		KeyRejected:      s.keyErr.Load() != nil,
		Dropped:          map[string]uint64{},
	}
	st.Requests = st.BatchRequests + st.EventRequests + st.AuthRequests
	if s.spool != nil {
		st.SpoolEvents, st.SpoolBytes = s.spool.backlog()
	}
	s.dropMu.Lock()
	for k, v := range s.dropped {
		st.Dropped[k] = v
	}
	s.dropMu.Unlock()
	return st
}

func (s *OTASSink) drop(reason string, n int) {
	if n <= 0 {
		return
	}
	s.dropMu.Lock()
	s.dropped[reason] += uint64(n)
	s.dropMu.Unlock()
}

// finish accounts for an item that reached its end (sent, dropped or spooled
// again): the spool segment it came from is deleted once all of its are.
func (s *OTASSink) finish(it *item) {
	if it.seg != nil {
		s.segDone(it.seg)
	}
}

func (s *OTASSink) segDone(ref *segRef) {
	if ref.pending.Add(-1) == 0 {
		s.spool.done(ref.seg)
	}
}

func (s *OTASSink) dropItems(items []*item, reason string) {
	s.drop(reason, len(items))
	for _, it := range items {
		s.finish(it)
	}
}

// toSpoolOr writes items to the spool, or drops them for reason without one.
func (s *OTASSink) toSpoolOr(items []*item, reason string) {
	if len(items) == 0 {
		return
	}
	if s.spool == nil {
		if reason == DropShutdown {
			s.closeDropped.Add(uint64(len(items)))
		}
		s.dropItems(items, reason)
		return
	}
	recs := make([]spoolRecord, len(items))
	for i, it := range items {
		recs[i] = spoolRecord{attempts: uint8(min(it.serverErrors, 255)), token: it.token, data: it.data}
	}
	n, err := s.spool.append(recs)
	s.spooled.Add(uint64(n))
	for _, it := range items[:n] {
		s.finish(it)
	}
	if rest := items[n:]; len(rest) > 0 {
		r := DropSpoolError
		if errors.Is(err, errSpoolFull) {
			r = DropSpoolFull
		} else {
			s.log.Error("cannot write the spool; events dropped", "error", err, "events", len(rest))
		}
		s.dropItems(rest, r)
	}
}

// runBatcher groups queued events into batches by count, bytes and time.
func (s *OTASSink) runBatcher() {
	defer s.batcher.Done()
	defer close(s.batches)
	var batch []*item
	size := 0
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		timer.Stop()
		s.batches <- batch
		batch, size = nil, 0
	}
	add := func(it *item) {
		if len(batch) > 0 && size+len(it.data) > s.cfg.BatchBytes {
			flush()
		}
		if len(batch) == 0 {
			timer.Reset(s.cfg.FlushInterval)
		}
		batch = append(batch, it)
		size += len(it.data) + 64
		if len(batch) >= s.cfg.BatchSize {
			flush()
		}
	}
	queue, replay := s.queue, s.replayq
	for queue != nil || replay != nil {
		select {
		case it, ok := <-queue:
			if !ok {
				queue = nil
				continue
			}
			add(it)
		case it, ok := <-replay:
			if !ok {
				replay = nil
				continue
			}
			add(it)
		case <-timer.C:
			flush()
		}
	}
	flush()
}

// runPump feeds spooled events back while the backend answers.
func (s *OTASSink) runPump() {
	defer s.pump.Done()
	tick := time.NewTicker(min(s.cfg.FlushInterval, 200*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.pumpCtx.Done():
			return
		case <-tick.C:
		}
		for s.project.Load() != nil && s.keyErr.Load() == nil && s.gate.delay() == 0 && len(s.queue) < cap(s.queue)/2 {
			seg, recs, err := s.spool.take()
			if err != nil {
				s.log.Error("cannot read the spool", "error", err)
				break
			}
			if seg == nil {
				break
			}
			ref := &segRef{seg: seg}
			// The pump holds one count until every record is queued, so an
			// interrupted segment is kept for the next run.
			ref.pending.Store(int64(len(recs)) + 1)
			for i, r := range recs {
				// While the backend has not answered since it failed, send one
				// event at a time as a probe rather than churn the whole spool.
				for !s.gate.healthy() && (s.gate.delay() > 0 || ref.pending.Load() != int64(len(recs)-i+1)) {
					if s.keyErr.Load() != nil {
						return
					}
					select {
					case <-s.pumpCtx.Done():
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
				it := &item{data: r.data, token: r.token, serverErrors: int(r.attempts), created: time.Now(), seg: ref}
				select {
				case s.replayq <- it:
				case <-s.pumpCtx.Done():
					return
				}
			}
			s.segDone(ref)
		}
	}
}

func (s *OTASSink) runWorker() {
	defer s.workers.Done()
	for b := range s.batches {
		s.deliver(b)
	}
}

// deliver sends items until each is uploaded, dropped or spooled.
func (s *OTASSink) deliver(items []*item) {
	ctx := s.sendCtx
	if s.project.Load() == nil {
		if s.spool != nil && s.cfg.Live {
			s.toSpoolOr(items, DropShutdown)
			return
		}
		select {
		case <-s.authed:
		case <-ctx.Done():
			s.toSpoolOr(items, DropShutdown)
			return
		}
	}
	first := time.Now()
	pending := items
	for round := 0; len(pending) > 0; round++ {
		if s.keyErr.Load() != nil {
			s.toSpoolOr(pending, DropKeyRejected)
			return
		}
		if ctx.Err() != nil {
			s.toSpoolOr(pending, DropShutdown)
			return
		}
		wait := s.gate.delay()
		if wait > 0 && s.spool != nil {
			// The backend is failing: park the events on disk and move on.
			s.toSpoolOr(pending, DropSpoolError)
			return
		}
		if round > 0 {
			wait = max(wait, backoff(s.cfg.RetryInitial, s.cfg.RetryMax, round))
			if s.cfg.Live && s.spool == nil && time.Since(first) > s.cfg.RetryGiveUp {
				s.log.Warn("OTAS backend unavailable too long; events dropped", "events", len(pending))
				s.dropItems(pending, DropRetryExhausted)
				return
			}
			s.retries.Add(uint64(len(pending)))
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				continue
			}
		}
		if s.perEvent.Load() {
			pending = s.sendEach(ctx, pending)
		} else {
			pending = s.sendBatch(ctx, pending)
		}
	}
}

// verdict is what to do with an event after an answer.
type verdict int

const (
	vOK verdict = iota
	vDrop
	vRetry
	vServerError
	vKey
	vTooLarge
)

// classify maps an answer (HTTP status and status_description) to a verdict and
// the drop reason.
func classify(code int, desc string) (verdict, string) {
	switch {
	case code >= 200 && code < 300:
		return vOK, ""
	case desc == DropMissingToken || desc == DropInvalidToken:
		return vDrop, desc
	case desc == "invalid_sdk_key" || desc == "missing_sdk_key" || (code == 401 && desc == ""):
		return vKey, ""
	case code == http.StatusRequestEntityTooLarge:
		return vTooLarge, DropTooLarge
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		return vRetry, ""
	case code == http.StatusInternalServerError:
		return vServerError, ""
	case code >= 500:
		return vRetry, ""
	case desc != "":
		return vDrop, desc
	default:
		return vDrop, "http_" + strconv.Itoa(code)
	}
}

// answer is one HTTP exchange's outcome.
type answer struct {
	code       int
	desc       string
	body       []byte
	retryAfter time.Duration
	err        error
}

func (s *OTASSink) post(ctx context.Context, url string, body []byte, gz bool, token string) answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "otas-sniff")
	req.Header.Set("X-OTAS-SDK-KEY", s.cfg.SDKKey)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if token != "" {
		req.Header.Set("X-OTAS-AGENT-SESSION-TOKEN", token)
	}
	resp, err := s.c.http.Do(req)
	if err != nil {
		return answer{err: scrub(err, s.cfg.SDKKey, token)}
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode, body: readSmall(resp.Body)}
	var d struct {
		Desc string `json:"status_description"`
	}
	if json.Unmarshal(a.body, &d) == nil {
		a.desc = d.Desc
	}
	a.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return a
}

// parseRetryAfter reads seconds or an HTTP date; 0 when absent or past. Values
// are capped at 10 minutes so a wrong header cannot stall uploads for days.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 10*time.Minute)
}

// requestFailed records an answer that says nothing about the events themselves.
func (s *OTASSink) requestFailed(a answer) {
	s.failedReqs.Add(1)
	s.gate.fail(a.retryAfter)
}

// sendBatch sends items in one batch request and returns those to try again.
func (s *OTASSink) sendBatch(ctx context.Context, items []*item) []*item {
	body := s.batchBody(items)
	now := time.Now()
	s.batchReqs.Add(1)
	a := s.post(ctx, s.c.batchURL, body, !s.cfg.DisableGzip, "")
	if a.err != nil {
		if ctx.Err() == nil {
			s.requestFailed(a)
		}
		return s.tried(items, now)
	}
	switch {
	case a.code == http.StatusNotFound || a.code == http.StatusMethodNotAllowed:
		if s.perEvent.CompareAndSwap(false, true) {
			s.log.Warn("the OTAS backend has no batch endpoint; sending one request per event (slower: every event costs the backend a key check)", "status", a.code)
		}
		return s.sendEach(ctx, items)
	case a.code >= 200 && a.code < 300:
		s.gate.ok()
		return s.batchResults(ctx, items, a, now)
	}
	v, reason := classify(a.code, a.desc)
	switch v {
	case vTooLarge:
		if len(items) == 1 {
			s.dropItems(items, DropTooLarge)
			return nil
		}
		half := len(items) / 2
		retry := s.sendBatch(ctx, items[:half])
		return append(retry, s.sendBatch(ctx, items[half:])...)
	case vKey:
		return s.keyTrouble(ctx, items, a, now)
	case vServerError:
		s.requestFailed(a)
		return s.serverErrors(items, now)
	case vRetry:
		s.requestFailed(a)
		return s.tried(items, now)
	default:
		s.log.Warn("OTAS refused a batch; its events are dropped", "status", a.code, "reason", reason, "events", len(items))
		s.dropItems(items, reason)
		return nil
	}
}

func (s *OTASSink) tried(items []*item, now time.Time) []*item {
	for _, it := range items {
		it.lastTry = now
	}
	return items
}

// batchResults applies a 2xx batch answer's per-event results.
func (s *OTASSink) batchResults(ctx context.Context, items []*item, a answer, now time.Time) []*item {
	var br struct {
		Results []struct {
			Index      int    `json:"index"`
			Status     int    `json:"status"`
			Desc       string `json:"status_description"`
			HTTPStatus int    `json:"http_status"`
		} `json:"results"`
	}
	_ = json.Unmarshal(a.body, &br)
	failed := make(map[int]answer, len(br.Results))
	for _, r := range br.Results {
		if r.Status == 1 || r.Index < 0 || r.Index >= len(items) {
			continue
		}
		code := r.HTTPStatus
		if code == 0 {
			code = http.StatusBadRequest
			if r.Desc == "event_capture_failed" {
				code = http.StatusInternalServerError
			}
		}
		failed[r.Index] = answer{code: code, desc: r.Desc}
	}
	var retry, serverErr []*item
	for i, it := range items {
		ia, bad := failed[i]
		if !bad {
			s.uploaded.Add(1)
			s.finish(it)
			continue
		}
		switch v, reason := classify(ia.code, ia.desc); v {
		case vDrop, vTooLarge:
			s.dropItems([]*item{it}, reason)
		case vServerError:
			serverErr = append(serverErr, it)
		case vKey:
			retry = append(retry, s.keyTrouble(ctx, []*item{it}, ia, now)...)
		default:
			// A per-event 429 or 503: the backend is straining.
			s.gate.fail(0)
			it.lastTry = now
			retry = append(retry, it)
		}
	}
	return append(retry, s.serverErrors(serverErr, now)...)
}

// serverErrors handles 500 answers: an event that gets them while the backend
// stores other events is probably what makes it fail, so it is retried a bounded
// number of times and then dropped as rejected; during an outage nothing counts.
func (s *OTASSink) serverErrors(items []*item, now time.Time) []*item {
	var retry []*item
	for _, it := range items {
		since := it.lastTry
		if since.IsZero() {
			since = it.created
		}
		if s.gate.succeededSince(since) {
			it.serverErrors++
		}
		it.lastTry = now
		if it.serverErrors >= s.cfg.MaxServerErrors {
			s.log.Warn("OTAS keeps failing on one event; dropped as rejected", "attempts", it.serverErrors)
			s.dropItems([]*item{it}, DropServerError)
			continue
		}
		retry = append(retry, it)
	}
	return retry
}

// keyTrouble handles brain's invalid_sdk_key, which it also answers when it
// cannot reach uasam: uasam decides.
func (s *OTASSink) keyTrouble(ctx context.Context, items []*item, a answer, now time.Time) []*item {
	if s.checkKey(ctx) {
		s.toSpoolOr(items, DropKeyRejected)
		return nil
	}
	s.requestFailed(a)
	return s.tried(items, now)
}

// checkKey asks uasam whether the key is still good, at most once per backoff
// step (each check costs the server a slow hash). True means refused for good.
func (s *OTASSink) checkKey(ctx context.Context) bool {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.keyErr.Load() != nil {
		return true
	}
	if !s.keyCheckedAt.IsZero() && time.Since(s.keyCheckedAt) < s.cfg.RetryInitial {
		return s.keyCheckBad
	}
	_, err := s.c.authenticate(ctx)
	s.keyCheckedAt = time.Now()
	var ae *OTASAuthError
	s.keyCheckBad = errors.As(err, &ae) && ae.Rejected()
	if s.keyCheckBad {
		s.setKeyBad(ae)
	}
	return s.keyCheckBad
}

// sendEach sends items one request each, a bounded number at a time, and
// returns those to try again.
func (s *OTASSink) sendEach(ctx context.Context, items []*item) []*item {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var retry []*item
	pid := s.project.Load().ID
	for _, it := range items {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			retry = append(retry, it)
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.sem }()
			r := s.sendOne(ctx, pid, it)
			if r != nil {
				mu.Lock()
				retry = append(retry, r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return retry
}

// sendOne sends one event; it returns it when it must be tried again.
func (s *OTASSink) sendOne(ctx context.Context, pid string, it *item) *item {
	body := make([]byte, 0, len(it.data)+64)
	body = appendWithFields(body, it.data, pid, "", false)
	now := time.Now()
	s.eventReqs.Add(1)
	a := s.post(ctx, s.c.eventURL, body, false, it.token)
	if a.err != nil {
		if ctx.Err() == nil {
			s.requestFailed(a)
		}
		it.lastTry = now
		return it
	}
	v, reason := classify(a.code, a.desc)
	switch v {
	case vOK:
		s.gate.ok()
		s.uploaded.Add(1)
		s.finish(it)
	case vDrop, vTooLarge:
		s.dropItems([]*item{it}, reason)
	case vKey:
		if r := s.keyTrouble(ctx, []*item{it}, a, now); len(r) > 0 {
			return it
		}
	case vServerError:
		s.requestFailed(a)
		if r := s.serverErrors([]*item{it}, now); len(r) > 0 {
			return it
		}
	default:
		s.requestFailed(a)
		it.lastTry = now
		return it
	}
	return nil
}

// batchBody builds {"events":[...]}, gzipped unless disabled.
func (s *OTASSink) batchBody(items []*item) []byte {
	pid := s.project.Load().ID
	if s.cfg.DisableGzip {
		size := 16
		for _, it := range items {
			size += len(it.data) + len(it.token) + len(pid) + 64
		}
		raw := make([]byte, 0, size)
		raw = append(raw, `{"events":[`...)
		for i, it := range items {
			if i > 0 {
				raw = append(raw, ',')
			}
			raw = appendWithFields(raw, it.data, pid, it.token, true)
		}
		return append(raw, "]}"...)
	}
	// Compressed event by event: the plain batch is never built whole.
	var b bytes.Buffer
	b.Grow(32 << 10)
	zw := s.gzPool.Get().(*gzip.Writer)
	zw.Reset(&b)
	var head []byte
	_, _ = zw.Write([]byte(`{"events":[`))
	for i, it := range items {
		head = head[:0]
		if i > 0 {
			head = append(head, ',')
		}
		head = appendFieldsHead(head, it.data, pid, it.token, true)
		_, _ = zw.Write(head)
		_, _ = zw.Write(it.data[1:])
	}
	_, _ = zw.Write([]byte("]}"))
	_ = zw.Close()
	s.gzPool.Put(zw)
	return b.Bytes()
}

// appendWithFields appends the event data with project_id (and the session token
// for a batch) put first.
func appendWithFields(dst, data []byte, pid, token string, withToken bool) []byte {
	return append(appendFieldsHead(dst, data, pid, token, withToken), data[1:]...)
}

// appendFieldsHead appends what appendWithFields puts before data[1:].
func appendFieldsHead(dst, data []byte, pid, token string, withToken bool) []byte {
	dst = append(dst, `{"project_id":`...)
	dst = appendStringJSON(dst, pid, false)
	if withToken {
		dst = append(dst, `,"agent_session_token":`...)
		dst = appendStringJSON(dst, token, false)
	}
	if len(data) > 2 {
		dst = append(dst, ',')
	}
	return dst
}

// gate is the shared backoff: after a failed request every worker waits (or
// spools) until it passes, so an outage costs one probe per step, not one
// request per batch.
type gate struct {
	initial, max time.Duration

	mu          sync.Mutex
	failures    int
	until       time.Time
	lastSuccess time.Time
}

func (g *gate) delay() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(time.Until(g.until), 0)
}

func (g *gate) fail(retryAfter time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	// Failures of requests sent together count once.
	if !now.Before(g.until) {
		g.failures++
	}
	d := max(backoff(g.initial, g.max, g.failures), retryAfter)
	if until := now.Add(d); until.After(g.until) {
		g.until = until
	}
}

func (g *gate) ok() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failures = 0
	g.until = time.Time{}
	g.lastSuccess = time.Now()
}

// healthy is true when no request failed since the last success.
func (g *gate) healthy() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failures == 0
}

func (g *gate) succeededSince(t time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lastSuccess.After(t)
}

// backoff is the n-th (from 1) exponential step, capped, with jitter in its
// upper half so senders spread out.
func backoff(initial, maxD time.Duration, n int) time.Duration {
	d := initial
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d/2 + rand.N(d/2+1)
}
