package httpparse

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/otas/otas-sniff/reassembly"
)

// Options bound what the parser buffers per message.
type Options struct {
	// MaxBodyBytes is how many bytes of (decoded) body are kept per message;
	// 100 KiB when 0.
	MaxBodyBytes int
	// MaxHeaderBytes bounds a header (or trailer) block; 64 KiB when 0.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header fields; 200 when 0.
	MaxHeaders int
}

func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 100 << 10
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.MaxHeaders <= 0 {
		o.MaxHeaders = 200
	}
	return o
}

// Errors set on exchanges handed on without a (complete) final response.
const (
	errNoResponse         = "no response"
	errCaptureStopped     = "capture stopped"
	errResponseLostInGap  = "response lost in capture gap"
	errResponseIncomplete = "response incomplete"
	errResponseInvalid    = "invalid response"
	errRequestInvalid     = "invalid request"
	errEvicted            = "connection evicted (--max-streams)"
)

// maxChunkLine bounds a chunk-size line, extensions included.
const maxChunkLine = 4 << 10

// StreamFactory creates one parser per TCP connection and hands every exchange
// to emit. It implements reassembly.StreamFactory.
type StreamFactory struct {
	opts     Options
	emit     func(*Exchange)
	stats    counters
	decoders decoders
	// bufs keeps the buffers of released exchanges for later messages.
	bufs bufferPool
	// works recycles the mid-message state of directions (see work): most
	// directions need it only for the length of a Data call.
	works sync.Pool // of *work
}

var _ reassembly.StreamFactory = (*StreamFactory)(nil)

// NewStreamFactory returns a factory whose streams call emit synchronously, from
// Data, End or Close, once per request, in the order exchanges complete.
func NewStreamFactory(opts Options, emit func(*Exchange)) *StreamFactory {
	return &StreamFactory{opts: opts.withDefaults(), emit: emit}
}

// Stats returns the counters summed over all streams; safe from any goroutine.
func (f *StreamFactory) Stats() Stats { return f.stats.Snapshot() }

// NewStream implements reassembly.StreamFactory.
func (f *StreamFactory) NewStream(c reassembly.Conn) reassembly.Stream {
	f.stats.streams.Add(1)
	s := &stream{f: f, initiator: c.Initiator, responder: c.Responder, source: c.Source}
	for i := range s.dirs {
		s.dirs[i] = direction{s: s, side: reassembly.Side(i)}
	}
	return s
}

// role is what a side of the connection turned out to send.
type role uint8

const (
	roleUnknown role = iota
	roleClient
	roleServer
)

// getWork returns cleared work state, recycled when one is free.
func (f *StreamFactory) getWork() *work {
	if w, ok := f.works.Get().(*work); ok {
		return w
	}
	return new(work)
}

// maxPooledBuf bounds the buffer a recycled work keeps: a rare huge head must
// not pin its memory in the pool.
const maxPooledBuf = 4 << 10

// maxPooledFields likewise bounds the field scratch a recycled work keeps.
const maxPooledFields = 64

// putWork clears w, keeping its buffers' arrays when small, and recycles it.
func (f *StreamFactory) putWork(w *work) {
	buf, marks := w.buf[:0], w.marks[:0]
	if cap(buf) > maxPooledBuf {
		buf = nil
	}
	if cap(marks) > 16 {
		marks = nil
	}
	w.head.reset(nil)
	fields := w.head.fields
	if cap(fields) > maxPooledFields {
		fields = nil
	}
	*w = work{buf: buf, marks: marks, head: rawHead{fields: fields}}
	f.works.Put(w)
}

// pendingExchange is a request waiting for its final response or completion:
// the fields of its Exchange known so far. It shares the request's allocation,
// and the Exchange handed on is the one allocated with the final response (a
// waiting request then costs no more than it needs).
type pendingExchange struct {
	req *Message
	// ex is the Exchange allocated with the final response, its Response set;
	// nil while there is none.
	ex      *Exchange
	interim []*Message
	err     string
	// next is the next request on the connection (see stream.pending).
	next     *pendingExchange
	index    int
	upgraded bool
	reqDone  bool
	// answered: a final response is attached, or it is known none will come.
	answered bool
	respDone bool
}

// stream parses one connection: two directions plus the pairing between them.
type stream struct {
	f *StreamFactory
	// initiator, responder and source are the connection's, for the exchanges.
	initiator, responder netip.AddrPort
	source               string
	dirs                 [2]direction
	// pending and pendingTail are the ends of the queue, linked through next,
	// of requests not yet handed on, oldest first.
	pending, pendingTail *pendingExchange
	// nextIndex is the position of the next request on the connection.
	nextIndex int
	// respGap: a gap in the response direction may have swallowed responses; the
	// next response is paired by timestamps (see matchResponse).
	respGap  bool
	stopped  bool
	sawBytes bool
	sawHTTP  bool
	closed   bool
}

// Data implements reassembly.Stream.
func (s *stream) Data(c reassembly.Chunk) {
	if s.stopped || s.closed || len(c.Bytes) == 0 {
		return
	}
	s.sawBytes = true
	s.dirs[c.Side&1].feed(c.Bytes, c.Seen, c.Completed)
	s.settle()
}

// release feeds bytes held after an upgrade request once the answer says the
// connection stays HTTP.
func (s *stream) release() {
	if s.stopped {
		return
	}
	for i := range s.dirs {
		d := &s.dirs[i]
		if d.state != stHold {
			continue
		}
		w := d.w
		held := w.held
		w.held = nil
		d.state = stStart
		if len(held) > 0 {
			w.start, w.haveStart = w.heldSeen, true
			d.feed(held, w.heldSeen, w.heldCompleted)
		}
	}
}

// settle recycles the work state of each direction that waits at a message
// boundary with nothing buffered (or parses nothing any more), so that an idle
// connection holds no parsing state beyond its two directions.
func (s *stream) settle() {
	for i := range s.dirs {
		d := &s.dirs[i]
		if w := d.w; w != nil && (d.state == stDead || d.state == stStart && len(w.buf) == 0 && !w.haveStart) {
			d.w = nil
			s.f.putWork(w)
		}
	}
}

// Gap implements reassembly.Stream. A gap loses only the messages it touches:
// inside a body of known length the lost bytes are counted and framing kept;
// otherwise the touched message is dropped and the side resynchronises.
func (s *stream) Gap(side reassembly.Side, n int, ts time.Time) {
	if s.stopped || s.closed {
		return
	}
	s.dirs[side&1].gap(n)
	s.settle()
}

// End implements reassembly.Stream: the side's FIN ends a close-delimited body.
func (s *stream) End(side reassembly.Side, ts time.Time) {
	if s.stopped || s.closed {
		return
	}
	d := &s.dirs[side&1]
	if d.state == stBodyClose {
		d.finishMessage()
	}
	s.settle()
}

// Close implements reassembly.Stream: it finishes a close-delimited response and
// hands on every request still waiting, with an error saying why.
func (s *stream) Close(reason reassembly.CloseReason, ts time.Time) {
	if s.closed {
		return
	}
	s.closed = true
	why := errNoResponse
	switch reason {
	case reassembly.Stopped:
		why = errCaptureStopped
	case reassembly.Evicted:
		why = errEvicted
	}
	if !s.stopped {
		for i := range s.dirs {
			d := &s.dirs[i]
			if d.state == stBodyClose {
				d.finishMessage()
			} else if d.msg != nil {
				d.abandonAtClose(why)
			}
			d.dropScanned()
		}
	}
	for pe := s.pending; pe != nil; pe = pe.next {
		pe.reqDone = true
		if !pe.respDone {
			pe.answered, pe.respDone = true, true
			if pe.err == "" {
				pe.err = why
			}
			if pe.ex == nil {
				s.f.stats.unmatchedRequests.Add(1)
			}
		}
	}
	s.emitReady()
	if s.sawBytes && !s.sawHTTP && !s.stopped {
		s.f.stats.notHTTP.Add(1)
	}
	// Nothing is parsed after Close.
	for i := range s.dirs {
		if w := s.dirs[i].w; w != nil {
			s.dirs[i].w = nil
			s.f.putWork(w)
		}
	}
}

// stop ends parsing of the whole connection (upgrade, TLS, HTTP/2).
func (s *stream) stop() {
	s.stopped = true
	for i := range s.dirs {
		d := &s.dirs[i]
		d.dropScanned()
		d.state = stDead
		if d.w != nil {
			d.w.held = nil
		}
	}
}

// setRole records what side d sends, and so what the other side sends.
func (s *stream) setRole(d *direction, r role) {
	if d.role == roleUnknown {
		d.role = r
	}
	other := &s.dirs[1-d.side&1]
	if other.role == roleUnknown {
		if r == roleClient {
			other.role = roleServer
		} else {
			other.role = roleClient
		}
	}
}

// matchResponse finds the request a response starting at start answers, or nil.
//
// Pairing is FIFO, but a capture gap can swallow whole messages, and plain FIFO
// would then shift every later pair by one. Timestamps correct for it, assuming
// the common non-pipelined keep-alive pattern:
//   - a response cannot answer a request whose first byte was captured after the
//     response's first byte; such a response answers a request lost in a gap
//     (or sent before the capture began) and is unmatched;
//   - after a gap in the response direction, the response answers the last
//     request sent before it began; older waiting requests lost their responses
//     in the gap and are handed on with errResponseLostInGap.
//
// A pipelining client that lost responses in a gap gets its older requests
// reported as lost, which is the price of not shifting every later pair.
func (s *stream) matchResponse(start time.Time) *pendingExchange {
	first := s.pending
	for first != nil && first.answered {
		first = first.next
	}
	if first == nil {
		s.respGap = false
		return nil
	}
	pe := first
	if s.respGap {
		s.respGap = false
		for p := first; p != nil; p = p.next {
			if !p.answered && !p.req.Start.After(start) {
				pe = p
			}
		}
		for p := first; p != pe; p = p.next {
			if !p.answered {
				p.answered, p.respDone = true, true
				p.err = errResponseLostInGap
				s.f.stats.unmatchedRequests.Add(1)
			}
		}
		defer s.emitReady()
	}
	if pe.req.Start.After(start) {
		return nil
	}
	return pe
}

// enqueue appends pe to the requests waiting to be handed on.
func (s *stream) enqueue(pe *pendingExchange) {
	if s.pendingTail == nil {
		s.pending = pe
	} else {
		s.pendingTail.next = pe
	}
	s.pendingTail = pe
}

// emitReady hands on, in order, the exchanges at the head of the queue whose
// request and response are both done.
func (s *stream) emitReady() {
	for pe := s.pending; pe != nil && pe.reqDone && pe.respDone; pe = s.pending {
		s.pending, pe.next = pe.next, nil
		if s.pending == nil {
			s.pendingTail = nil
		}
		s.emit(pe)
	}
}

// emit completes pe's Exchange and hands it on.
func (s *stream) emit(pe *pendingExchange) {
	ex := pe.ex
	if ex == nil {
		ex = new(Exchange)
	}
	ex.Source = s.source
	ex.Index = pe.index
	ex.Request = pe.req
	ex.Interim = pe.interim
	ex.Error = pe.err
	ex.Upgraded = pe.upgraded
	ex.Client, ex.Server = s.endpoints()
	ex.pool = &s.f.bufs
	s.f.stats.exchanges.Add(1)
	s.f.emit(ex)
}

// endpoints maps the connection's sides to client and server by content.
func (s *stream) endpoints() (client, server netip.AddrPort) {
	if s.dirs[reassembly.Responder].role == roleClient || s.dirs[reassembly.Initiator].role == roleServer {
		return s.responder, s.initiator
	}
	return s.initiator, s.responder
}

// parseState is where a direction is within its byte stream.
type parseState uint8

const (
	stStart      parseState = iota // at a message boundary
	stHead                         // inside a start line + header block
	stBodyLength                   // inside a Content-Length body
	stChunkSize                    // reading a chunk-size line
	stChunkData                    // inside chunk data
	stChunkEnd                     // expecting the CRLF after chunk data
	stTrailers                     // reading the trailer section
	stBodyClose                    // inside a close-delimited body
	stResync                       // looking for the next message start
	stHold                         // after an upgrade request, until its answer
	stDead                         // not HTTP any more
)

// timeMark says the resync buffer's bytes from off on arrived in a chunk seen at seen.
type timeMark struct {
	off  int
	seen time.Time
}

// direction parses the messages one side sends. It is kept small, since every
// connection has two for as long as it is open: what a direction needs only
// inside a message or a scan is in w.
type direction struct {
	s *stream
	// msg is the message in progress; pe its exchange (a request's own, or the
	// one a response answers), nil for an unmatched response.
	msg *Message
	pe  *pendingExchange
	// w is nil while the direction waits at a message boundary with nothing
	// buffered; see work.
	w     *work
	side  reassembly.Side
	role  role
	state parseState
	// begun: bytes or a gap were seen, so TLS/HTTP/2 are no longer looked for.
	begun   bool
	interim bool
	upgrade bool
}

// work is a direction's state inside a message, a partial head or line, a scan
// for the next message start, or an upgrade hold. A direction gets it when bytes
// or a gap arrive and gives it back (settle) once it is between messages again,
// so a connection waiting for its next message holds none of it.
type work struct {
	// buf holds a partial header block, chunk-size line, trailer section or the
	// window being scanned while resynchronising.
	buf      []byte
	marks    []timeMark
	scanFrom int
	// minStart: no message starts before this resync buffer offset (the bytes
	// there were already rejected as a start).
	minStart int
	// seen and completed are the times of the chunk being fed; completed, of the
	// last one fed, is also the end of a message cut by a FIN, a gap or the close.
	seen, completed time.Time
	// start is the capture time of the next message's first byte.
	start     time.Time
	haveStart bool
	chunkCR   bool
	body      bodySink
	remaining int64

	held                    []byte
	heldSeen, heldCompleted time.Time

	// head is the head block being parsed, as offsets into it.
	head rawHead
}

func (d *direction) stats() *counters { return &d.s.f.stats }

// work returns d's work state, getting one if d has none.
func (d *direction) work() *work {
	if d.w == nil {
		d.w = d.s.f.getWork()
	}
	return d.w
}

func (d *direction) feed(data []byte, seen, completed time.Time) {
	if d.state == stDead {
		return
	}
	w := d.work()
	w.seen, w.completed = seen, completed
	for len(data) > 0 {
		switch d.state {
		case stDead:
			return
		case stStart:
			data = d.onStart(data)
		case stHead:
			data = d.onHead(data)
		case stBodyLength:
			k := min(int64(len(data)), w.remaining)
			w.body.write(data[:k])
			w.remaining -= k
			data = data[k:]
			if w.remaining == 0 {
				d.finishMessage()
			}
		case stChunkSize:
			data = d.onChunkSize(data)
		case stChunkData:
			k := min(int64(len(data)), w.remaining)
			w.body.write(data[:k])
			w.remaining -= k
			data = data[k:]
			if w.remaining == 0 {
				d.state, w.chunkCR = stChunkEnd, false
			}
		case stChunkEnd:
			data = d.onChunkEnd(data)
		case stTrailers:
			data = d.onTrailers(data)
		case stBodyClose:
			w.body.write(data)
			data = nil
		case stResync:
			data = d.onResync(data)
		case stHold:
			data = d.onHold(data)
		}
	}
}

// onStart classifies the bytes at a message boundary.
func (d *direction) onStart(data []byte) []byte {
	w := d.w
	if len(w.buf) == 0 {
		// Empty lines before a message are tolerated (RFC 9112 section 2.2).
		i := 0
		for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
			i++
		}
		data = data[i:]
		if len(data) == 0 {
			return nil
		}
		if !w.haveStart {
			w.start, w.haveStart = w.seen, true
		}
	} else {
		// The joined bytes get their own array: the next state may reuse buf.
		data = append(w.buf, data...)
		w.buf = nil
	}
	kind := classifyStart(data, !d.begun)
	if kind == startNeedMore {
		w.buf = append(w.buf, data...)
		return nil
	}
	d.begun = true
	switch kind {
	case startTLS:
		d.stats().tlsStreams.Add(1)
		d.s.stop()
		return nil
	case startHTTP2:
		d.stats().http2Streams.Add(1)
		d.s.stop()
		return nil
	case startRequest:
		if d.role != roleServer {
			d.s.setRole(d, roleClient)
			d.state = stHead
			return data
		}
	case startResponse:
		if d.role != roleClient {
			d.s.setRole(d, roleServer)
			d.state = stHead
			return data
		}
	}
	// Not a message start: scan for one, never at this very offset again.
	d.enterResync()
	w.minStart = 1
	return data
}

// onHead accumulates the start line and header block, then parses them. Only
// the first MaxHeaderBytes bytes are searched for the block's end: a block that
// does not end within them is oversized wherever TCP cut it.
func (d *direction) onHead(data []byte) []byte {
	w := d.w
	limit := d.s.f.opts.MaxHeaderBytes
	var block, rest []byte
	if len(w.buf) == 0 {
		end := endOfHead(data[:min(len(data), limit)], 0)
		if end < 0 {
			if len(data) >= limit {
				return d.oversizedHead(data[limit:])
			}
			w.buf = append(w.buf, data...)
			return nil
		}
		block, rest = data[:end], data[end:]
	} else {
		prev := len(w.buf)
		w.buf = append(w.buf, data...)
		end := endOfHead(w.buf[:min(len(w.buf), limit)], max(0, prev-3))
		if end < 0 {
			if len(w.buf) >= limit {
				// prev < limit, so the bytes past the limit are all in data.
				return d.oversizedHead(data[limit-prev:])
			}
			return nil
		}
		// buf now holds the block and everything after it.
		block, rest, data = w.buf[:end], data[end-prev:], w.buf
	}
	if !d.onHeadBlock(block) {
		// Not a start line after all: rescan these bytes, past the first.
		whole := bytes.Clone(data)
		w.haveStart = false
		d.enterResync()
		w.minStart = 1
		return whole
	}
	w.buf = w.buf[:0]
	return rest
}

// oversizedHead skips a message whose header block does not end within
// MaxHeaderBytes: those bytes are dropped unread and counted as skipped, and
// rest, the bytes after them, is scanned for the next message start like any
// other. The same bytes are dropped however the head was segmented.
func (d *direction) oversizedHead(rest []byte) []byte {
	d.stats().oversizedHeaders.Add(1)
	d.stats().skippedBytes.Add(uint64(d.s.f.opts.MaxHeaderBytes))
	d.w.haveStart = false
	d.enterResync()
	return rest
}

// onHeadBlock parses a complete head; false means its first line is not a start
// line at all.
func (d *direction) onHeadBlock(block []byte) bool {
	w := d.w
	h := &w.head
	h.reset(block)
	// m collects what parsing finds until keep copies it into its allocation.
	m := Message{Start: w.start}
	line, rest, _ := nextLine(block)
	var err error
	if d.role == roleClient {
		err = parseRequestLine(line, &m, h)
	} else {
		err = parseStatusLine(line, &m, h)
	}
	if err != nil {
		return false
	}
	if err := parseFields(rest, d.s.f.opts.MaxHeaders, &m, h); err != nil {
		if errors.Is(err, errOversized) {
			d.stats().oversizedHeaders.Add(1)
		} else {
			d.stats().parseErrors.Add(1)
		}
		w.haveStart = false
		d.enterResync()
		return true
	}
	for _, a := range m.Anomalies {
		if a == anomalyLenientVersion {
			d.stats().lenientVersions.Add(1)
		}
	}
	if d.role == roleClient {
		d.beginRequest(&m, h)
	} else {
		d.beginResponse(&m, h)
	}
	return true
}

// bodyReserve is the most room reserved for a body before its bytes arrive:
// a Content-Length is only the peer's word, and 100,000 connections that
// declare 100 KiB each and send nothing must not hold 10 GB. Most API bodies
// fit; a larger one grows as it arrives (bodySink.write).
const bodyReserve = 4 << 10

// keep makes msg, allocated with room for h's fields, the message in progress:
// m as parsed plus h's strings, in a buffer that also has room for the body of
// expected bytes, unless it will not be kept as is.
func (d *direction) keep(msg *Message, fields Header, m *Message, h *rawHead, expected int64) {
	limit := d.s.f.opts.MaxBodyBytes
	notKept := notKeptType(h.get("Content-Type"))
	room := 0
	if expected > 0 && notKept == "" {
		room = int(min(int64(limit), expected, bodyReserve))
	}
	// A body to be decoded is replaced by its decoding: it gets its own buffer,
	// so that the strings of the head do not keep it alive.
	shared := room
	if decodes(h.get("Content-Encoding")) {
		shared = 0
	}
	pool := &d.s.f.bufs
	text, buf, raw := keepText(pool, h.block, shared)
	own := false
	if raw == nil && room > 0 {
		raw, own = pool.get(room), true
	}
	*msg = *m
	msg.bufs[0] = buf
	h.fill(msg, fields, text)
	d.w.body.reset(limit, notKept, raw, expected, pool, own)
	d.msg = msg
}

func (d *direction) beginRequest(m *Message, h *rawHead) {
	framing, n, err := requestFraming(m, h)
	if err != nil {
		d.stats().parseErrors.Add(1)
		d.w.haveStart = false
		d.enterResync()
		return
	}
	s := d.s
	s.sawHTTP = true
	pe, msg, fields := newBox[pendingExchange](len(h.fields))
	d.keep(msg, fields, m, h, n)
	*pe = pendingExchange{index: s.nextIndex, req: msg}
	s.nextIndex++
	s.enqueue(pe)
	d.pe = pe
	d.upgrade = msg.Method == "CONNECT" || msg.Header.Get("Upgrade") != "" && hasToken(msg.Header, "Connection", "upgrade")
	d.startBody(framing, n)
}

func (d *direction) beginResponse(m *Message, h *rawHead) {
	s := d.s
	s.sawHTTP = true
	code := m.StatusCode
	if code < 200 && code != 101 {
		// Interim (1xx other than 101): attached to the request it precedes.
		d.interim = true
		d.pe = s.matchResponse(m.Start)
		_, msg, fields := newBox[struct{}](len(h.fields))
		d.keep(msg, fields, m, h, 0)
		d.startBody(framingNone, 0)
		return
	}
	pe := s.matchResponse(m.Start)
	method := ""
	if pe == nil {
		d.stats().unmatchedResponses.Add(1)
	} else {
		pe.answered = true
		method = pe.req.Method
	}
	d.pe = pe
	if code == 101 || method == "CONNECT" && code/100 == 2 {
		d.stats().responses.Add(1)
		d.stats().upgrades.Add(1)
		if pe != nil {
			ex, msg, fields := newBox[Exchange](len(h.fields))
			d.keep(msg, fields, m, h, 0)
			msg.End = d.w.completed
			ex.Response, pe.ex = msg, ex
			pe.upgraded = true
			pe.respDone, pe.reqDone = true, true
		}
		// The stream lives on as a tunnel: it keeps no message.
		d.msg, d.pe = nil, nil
		s.emitReady()
		s.stop()
		return
	}
	// The client's bytes held after an upgrade request are HTTP again: parsed
	// now, before the server's next bytes, however TCP cut them (a request
	// among them may be what the next response answers).
	defer s.release()
	framing, n, err := responseFraming(m, h, method)
	if err != nil {
		d.stats().parseErrors.Add(1)
		if pe != nil {
			pe.err = fmt.Sprintf("%s: %v", errResponseInvalid, err)
			pe.respDone = true
			d.stats().unmatchedRequests.Add(1)
		}
		d.pe, d.w.haveStart = nil, false
		d.enterResync()
		s.emitReady()
		return
	}
	ex, msg, fields := newBox[Exchange](len(h.fields))
	d.keep(msg, fields, m, h, n)
	if pe != nil {
		ex.Response, pe.ex = msg, ex
	}
	d.startBody(framing, n)
}

// hasToken reports whether a comma-separated list in any name field holds token.
func hasToken(h Header, name, token string) bool {
	for _, f := range h {
		if !equalFold(f.Name, name) {
			continue
		}
		for part := range strings.SplitSeq(f.Value, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// startBody enters the body of the message kept (see keep).
func (d *direction) startBody(framing bodyFraming, n int64) {
	w := d.w
	switch framing {
	case framingNone:
		d.finishMessage()
	case framingLength:
		w.remaining = n
		d.state = stBodyLength
	case framingChunked:
		d.msg.Chunked = true
		d.state = stChunkSize
	case framingClose:
		d.state = stBodyClose
	}
}

// finishMessage completes the message in progress and hands on what is ready.
func (d *direction) finishMessage() {
	m, pe, w := d.msg, d.pe, d.w
	m.End = w.completed
	w.body.finish(m, d.stats(), &d.s.f.decoders)
	d.msg, d.pe, w.haveStart = nil, nil, false
	d.state = stStart
	if d.role == roleClient {
		d.stats().requests.Add(1)
		pe.reqDone = true
		if d.upgrade {
			d.state = stHold
		}
	} else {
		d.stats().responses.Add(1)
		if d.interim {
			if pe != nil {
				pe.interim = append(pe.interim, m)
			}
		} else if pe != nil {
			pe.respDone = true
		}
	}
	d.interim, d.upgrade = false, false
	d.s.emitReady()
}

// abandonAtClose hands on a message cut by the end of the connection.
func (d *direction) abandonAtClose(why string) {
	m, pe, w := d.msg, d.pe, d.w
	m.End = w.completed
	m.addAnomaly(anomalyIncomplete)
	w.body.cut = true
	w.body.finish(m, d.stats(), &d.s.f.decoders)
	d.msg, d.pe = nil, nil
	if pe == nil || d.interim {
		return
	}
	if d.role == roleClient {
		pe.reqDone = true
		return
	}
	pe.respDone = true
	if why == errNoResponse {
		why = errResponseIncomplete
	}
	pe.err = why
}

// dropMessage abandons the message in progress and resynchronises.
func (d *direction) dropMessage(why string) {
	w := d.w
	if m, pe := d.msg, d.pe; m != nil && pe != nil && !d.interim {
		if d.role == roleClient {
			if pe.answered {
				// Its response already arrived: hand on what was captured.
				m.addAnomaly(anomalyIncomplete)
				w.body.cut = true
				w.body.finish(m, d.stats(), &d.s.f.decoders)
				pe.reqDone = true
			} else {
				// Keep its place in the pipeline: the server answers it (often
				// with a 400), and that answer must not go to the next request.
				m.addAnomaly(anomalyInvalidFraming)
				w.body.cut = true
				w.body.finish(m, d.stats(), &d.s.f.decoders)
				pe.reqDone = true
				pe.err = errRequestInvalid + strings.TrimPrefix(why, errResponseInvalid)
			}
		} else {
			pe.ex = nil
			pe.err = why
			pe.respDone = true
			d.stats().unmatchedRequests.Add(1)
		}
	}
	d.msg, d.pe, w.haveStart = nil, nil, false
	d.interim, d.upgrade = false, false
	d.enterResync()
	d.s.emitReady()
}

func (d *direction) enterResync() {
	w := d.work()
	d.state = stResync
	w.buf = w.buf[:0]
	w.marks = w.marks[:0]
	w.scanFrom, w.minStart = 0, 0
}

// dropScanned counts the bytes being scanned for a message start as skipped and
// forgets them: a gap, a protocol switch or the end of the connection means no
// message starts in them. Counting them then, and not only as the scan window
// slides, keeps SkippedBytes independent of how TCP cut the stream.
func (d *direction) dropScanned() {
	if d.state != stResync {
		return
	}
	w := d.w
	d.stats().skippedBytes.Add(uint64(len(w.buf)))
	w.buf, w.marks = w.buf[:0], w.marks[:0]
	w.scanFrom, w.minStart = 0, 0
}

// onChunkSize reads a chunk-size line. A line longer than maxChunkLine is
// invalid wherever TCP cut it: its first maxChunkLine+1 bytes are dropped and
// counted as skipped, and the bytes after them are scanned for a message start.
func (d *direction) onChunkSize(data []byte) []byte {
	w := d.w
	i := bytes.IndexByte(data, '\n')
	if i < 0 || len(w.buf)+i > maxChunkLine {
		if i < 0 && len(w.buf)+len(data) <= maxChunkLine {
			w.buf = append(w.buf, data...)
			return nil
		}
		over := maxChunkLine + 1 - len(w.buf)
		d.stats().parseErrors.Add(1)
		d.stats().skippedBytes.Add(maxChunkLine + 1)
		d.dropMessage(errResponseInvalid + ": chunk-size line too long")
		return data[over:]
	}
	line := data[:i]
	if len(w.buf) > 0 {
		w.buf = append(w.buf, line...)
		line = w.buf
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	n, err := parseChunkSize(line)
	w.buf = w.buf[:0]
	if err != nil {
		d.stats().parseErrors.Add(1)
		d.dropMessage(fmt.Sprintf("%s: %v", errResponseInvalid, err))
		return data[i+1:]
	}
	if n == 0 {
		d.state = stTrailers
	} else {
		w.remaining, d.state = n, stChunkData
	}
	return data[i+1:]
}

func (d *direction) onChunkEnd(data []byte) []byte {
	w := d.w
	switch {
	case data[0] == '\r' && !w.chunkCR:
		w.chunkCR = true
		return data[1:]
	case data[0] == '\n':
		d.state = stChunkSize
		return data[1:]
	}
	d.stats().parseErrors.Add(1)
	d.dropMessage(errResponseInvalid + ": chunk data not followed by CRLF")
	return data
}

// onTrailers reads the trailer section. Like a head, a section that does not end
// within MaxHeaderBytes is oversized wherever TCP cut it: those bytes are
// dropped and counted as skipped, and the bytes after them are scanned.
func (d *direction) onTrailers(data []byte) []byte {
	w := d.w
	if len(w.buf) == 0 {
		// The usual case: no trailer fields, just the final CRLF.
		if data[0] == '\n' {
			d.finishMessage()
			return data[1:]
		}
		if len(data) >= 2 && data[0] == '\r' && data[1] == '\n' {
			d.finishMessage()
			return data[2:]
		}
	}
	limit := d.s.f.opts.MaxHeaderBytes
	prev := len(w.buf)
	w.buf = append(w.buf, data...)
	var end int
	switch {
	case w.buf[0] == '\n':
		end = 1
	case w.buf[0] == '\r' && len(w.buf) == 1:
		return nil
	case w.buf[0] == '\r' && w.buf[1] == '\n':
		end = 2
	default:
		end = endOfHead(w.buf[:min(len(w.buf), limit)], max(0, prev-3))
	}
	if end < 0 {
		if len(w.buf) >= limit {
			d.stats().oversizedHeaders.Add(1)
			d.stats().skippedBytes.Add(uint64(limit))
			d.dropMessage(errResponseInvalid + ": trailer section too large")
			// prev < limit, so the bytes past the limit are all in data.
			return data[limit-prev:]
		}
		return nil
	}
	if end > 2 {
		h := &w.head
		h.reset(w.buf[:end])
		if err := parseFields(h.block, d.s.f.opts.MaxHeaders, d.msg, h); err != nil {
			d.stats().oversizedHeaders.Add(1)
			d.dropMessage(fmt.Sprintf("%s: %v", errResponseInvalid, err))
			return data[end-prev:]
		}
		// Trailers are rare: their text and fields get plain allocations.
		d.msg.Trailer = h.header(make(Header, len(h.fields)), string(h.block))
	}
	w.buf = w.buf[:0]
	d.finishMessage()
	return data[end-prev:]
}

// onResync scans for the next plausible message start, skipping (and counting)
// the bytes before it.
func (d *direction) onResync(data []byte) []byte {
	w := d.w
	w.marks = append(w.marks, timeMark{off: len(w.buf), seen: w.seen})
	w.buf = append(w.buf, data...)
	start, resume := findStart(w.buf, w.scanFrom, w.minStart, d.role != roleServer, d.role != roleClient)
	if start >= 0 {
		d.stats().skippedBytes.Add(uint64(start))
		w.start, w.haveStart = d.timeAt(start), true
		rest := bytes.Clone(w.buf[start:])
		w.buf, w.marks, w.scanFrom, w.minStart = w.buf[:0], w.marks[:0], 0, 0
		d.state = stStart
		return rest
	}
	w.scanFrom = resume
	// Keep only what a request line found later could still start in.
	if drop := resume - maxResyncLine; drop > 0 && drop >= len(w.buf)/2 {
		d.stats().skippedBytes.Add(uint64(drop))
		w.buf = w.buf[:copy(w.buf, w.buf[drop:])]
		w.scanFrom -= drop
		w.minStart = max(0, w.minStart-drop)
		kept := w.marks[:0]
		for i, mk := range w.marks {
			mk.off -= drop
			if mk.off <= 0 {
				if i+1 < len(w.marks) && w.marks[i+1].off-drop <= 0 {
					continue
				}
				mk.off = 0
			}
			kept = append(kept, mk)
		}
		w.marks = kept
	}
	return nil
}

// timeAt is the capture time of the chunk that brought resync byte off.
func (d *direction) timeAt(off int) time.Time {
	t := d.w.seen
	for _, mk := range d.w.marks {
		if mk.off > off {
			break
		}
		t = mk.seen
	}
	return t
}

// onHold keeps what the client sends after an upgrade request until the answer
// shows whether it is still HTTP; past the header limit it is parsed anyway.
func (d *direction) onHold(data []byte) []byte {
	w := d.w
	if len(w.held)+len(data) > d.s.f.opts.MaxHeaderBytes {
		joined := append(w.held, data...)
		w.held = nil
		d.state = stStart
		if len(joined) > len(data) {
			w.start, w.haveStart = w.heldSeen, true
		}
		return joined
	}
	if len(w.held) == 0 {
		w.heldSeen = w.seen
	}
	w.held = append(w.held, data...)
	w.heldCompleted = w.completed
	return nil
}

// gap handles n lost bytes (-1: unknown) of this side.
func (d *direction) gap(n int) {
	if d.state == stDead {
		return
	}
	w := d.work()
	d.begun = true
	lost := int64(n)
	switch d.state {
	case stBodyLength, stChunkData:
		if lost >= 0 {
			d.stats().gapsInMsgs.Add(1)
			d.msg.addAnomaly(anomalyGapInBody)
			if lost <= w.remaining {
				w.body.hole(lost)
				w.remaining -= lost
				if w.remaining == 0 {
					if d.state == stBodyLength {
						d.finishMessage()
					} else {
						d.state, w.chunkCR = stChunkEnd, false
					}
				}
				return
			}
			if d.state == stBodyLength {
				// The body ends inside the gap; what follows it is lost too.
				w.body.hole(w.remaining)
				w.remaining = 0
				d.finishMessage()
				d.lostMessages()
				return
			}
		}
	case stBodyClose:
		d.stats().gapsInMsgs.Add(1)
		d.msg.addAnomaly(anomalyGapInBody)
		w.body.hole(max(lost, 0))
		w.body.cut = true
		return
	case stHold:
		w.held = nil
		d.state = stStart
		d.lostMessages()
		return
	case stResync:
		// Bytes on either side of a gap do not form a line.
		d.dropScanned()
		d.lostMessages()
		return
	case stStart:
		if len(w.buf) == 0 {
			w.haveStart = false
			d.lostMessages()
			return
		}
	}
	d.stats().gapsInMsgs.Add(1)
	d.stats().skippedBytes.Add(uint64(len(w.buf)))
	d.dropMessage(errResponseLostInGap)
	d.lostMessages()
}

// lostMessages notes that whole messages of this side may be gone, and starts
// looking for the next one.
func (d *direction) lostMessages() {
	if d.role == roleServer {
		d.s.respGap = true
	}
	if d.state != stResync {
		d.enterResync()
	}
}
