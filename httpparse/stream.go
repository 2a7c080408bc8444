package httpparse

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
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
	s := &stream{f: f, conn: c}
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

// pendingExchange is a request waiting for its final response or completion.
type pendingExchange struct {
	ex *Exchange
	// exchange is where ex points: one allocation for both.
	exchange Exchange
	reqDone  bool
	// answered: a final response is attached, or it is known none will come.
	answered bool
	respDone bool
}

// stream parses one connection: two directions plus the pairing between them.
type stream struct {
	f       *StreamFactory
	conn    reassembly.Conn
	dirs    [2]direction
	pending []*pendingExchange
	// nextIndex is the position of the next request on the connection.
	nextIndex int
	// respGap: a gap in the response direction may have swallowed responses; the
	// next response is paired by timestamps (see matchResponse).
	respGap bool
	// releaseHold: a final non-upgrade response arrived, so bytes the client sent
	// after an upgrade request are HTTP again.
	releaseHold bool
	stopped     bool
	sawBytes    bool
	sawHTTP     bool
	closed      bool
}

// Data implements reassembly.Stream.
func (s *stream) Data(c reassembly.Chunk) {
	if s.stopped || s.closed || len(c.Bytes) == 0 {
		return
	}
	s.sawBytes = true
	s.dirs[c.Side&1].feed(c.Bytes, c.Seen, c.Completed)
	s.release()
}

// release feeds bytes held after an upgrade request once the answer says the
// connection stays HTTP.
func (s *stream) release() {
	if !s.releaseHold || s.stopped {
		return
	}
	s.releaseHold = false
	for i := range s.dirs {
		d := &s.dirs[i]
		if d.state != stHold {
			continue
		}
		held := d.held
		d.held = nil
		d.state = stStart
		if len(held) > 0 {
			d.start, d.haveStart = d.heldSeen, true
			d.feed(held, d.heldSeen, d.heldCompleted)
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
	s.release()
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
		}
	}
	for _, pe := range s.pending {
		pe.reqDone = true
		if !pe.respDone {
			pe.answered, pe.respDone = true, true
			if pe.ex.Error == "" {
				pe.ex.Error = why
			}
			if pe.ex.Response == nil {
				s.f.stats.unmatchedRequests.Add(1)
			}
		}
	}
	s.emitReady()
	if s.sawBytes && !s.sawHTTP && !s.stopped {
		s.f.stats.notHTTP.Add(1)
	}
}

// stop ends parsing of the whole connection (upgrade, TLS, HTTP/2).
func (s *stream) stop() {
	s.stopped = true
	for i := range s.dirs {
		s.dirs[i].state = stDead
		s.dirs[i].buf, s.dirs[i].held = nil, nil
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
	idx := -1
	for i, pe := range s.pending {
		if !pe.answered {
			idx = i
			break
		}
	}
	if idx < 0 {
		s.respGap = false
		return nil
	}
	if s.respGap {
		s.respGap = false
		last := idx
		for i := idx; i < len(s.pending); i++ {
			if pe := s.pending[i]; !pe.answered && !pe.ex.Request.Start.After(start) {
				last = i
			}
		}
		for i := idx; i < last; i++ {
			if pe := s.pending[i]; !pe.answered {
				pe.answered, pe.respDone = true, true
				pe.ex.Error = errResponseLostInGap
				s.f.stats.unmatchedRequests.Add(1)
			}
		}
		idx = last
		defer s.emitReady()
	}
	pe := s.pending[idx]
	if pe.ex.Request.Start.After(start) {
		return nil
	}
	return pe
}

// emitReady hands on, in order, the exchanges at the head of the queue whose
// request and response are both done.
func (s *stream) emitReady() {
	for len(s.pending) > 0 {
		pe := s.pending[0]
		if !pe.reqDone || !pe.respDone {
			return
		}
		s.pending[0] = nil
		s.pending = s.pending[1:]
		s.emit(pe.ex)
	}
}

func (s *stream) emit(ex *Exchange) {
	ex.Client, ex.Server = s.endpoints()
	ex.Source = s.conn.Source
	s.f.stats.exchanges.Add(1)
	s.f.emit(ex)
}

// endpoints maps the connection's sides to client and server by content.
func (s *stream) endpoints() (client, server netip.AddrPort) {
	if s.dirs[reassembly.Responder].role == roleClient || s.dirs[reassembly.Initiator].role == roleServer {
		return s.conn.Responder, s.conn.Initiator
	}
	return s.conn.Initiator, s.conn.Responder
}

// removePending drops pe from the queue (its request was lost).
func (s *stream) removePending(pe *pendingExchange) {
	for i, p := range s.pending {
		if p == pe {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			return
		}
	}
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

// direction parses the messages one side sends.
type direction struct {
	s     *stream
	side  reassembly.Side
	role  role
	state parseState
	// begun: bytes or a gap were seen, so TLS/HTTP/2 are no longer looked for.
	begun bool
	// buf holds a partial header block, chunk-size line, trailer section or the
	// window being scanned while resynchronising.
	buf      []byte
	marks    []timeMark
	scanFrom int
	// minStart: no message starts before this resync buffer offset (the bytes
	// there were already rejected as a start).
	minStart int
	// seen and completed are the times of the chunk being fed.
	seen, completed time.Time
	// start is the capture time of the next message's first byte.
	start     time.Time
	haveStart bool

	msg *Message
	// pe is the exchange of the message in progress (a request's own, or the one
	// a response answers); nil for an unmatched response.
	pe        *pendingExchange
	interim   bool
	upgrade   bool
	body      bodySink
	remaining int64
	chunkCR   bool

	held                    []byte
	heldSeen, heldCompleted time.Time
}

func (d *direction) stats() *counters { return &d.s.f.stats }

func (d *direction) feed(data []byte, seen, completed time.Time) {
	d.seen, d.completed = seen, completed
	for len(data) > 0 {
		switch d.state {
		case stDead:
			return
		case stStart:
			data = d.onStart(data)
		case stHead:
			data = d.onHead(data)
		case stBodyLength:
			k := min(int64(len(data)), d.remaining)
			d.body.write(data[:k])
			d.remaining -= k
			data = data[k:]
			if d.remaining == 0 {
				d.finishMessage()
			}
		case stChunkSize:
			data = d.onChunkSize(data)
		case stChunkData:
			k := min(int64(len(data)), d.remaining)
			d.body.write(data[:k])
			d.remaining -= k
			data = data[k:]
			if d.remaining == 0 {
				d.state, d.chunkCR = stChunkEnd, false
			}
		case stChunkEnd:
			data = d.onChunkEnd(data)
		case stTrailers:
			data = d.onTrailers(data)
		case stBodyClose:
			d.body.write(data)
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
	if len(d.buf) == 0 {
		// Empty lines before a message are tolerated (RFC 9112 section 2.2).
		i := 0
		for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
			i++
		}
		data = data[i:]
		if len(data) == 0 {
			return nil
		}
		if !d.haveStart {
			d.start, d.haveStart = d.seen, true
		}
	} else {
		// The joined bytes get their own array: the next state may reuse buf.
		data = append(d.buf, data...)
		d.buf = nil
	}
	kind := classifyStart(data, !d.begun)
	if kind == startNeedMore {
		d.buf = append(d.buf, data...)
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
	d.minStart = 1
	return data
}

// onHead accumulates the start line and header block, then parses them.
func (d *direction) onHead(data []byte) []byte {
	limit := d.s.f.opts.MaxHeaderBytes
	var block, rest []byte
	if len(d.buf) == 0 {
		end := endOfHead(data, 0)
		if end < 0 {
			if len(data) > limit {
				return d.oversized(data)
			}
			d.buf = append(d.buf, data...)
			return nil
		}
		block, rest = data[:end], data[end:]
	} else {
		prev := len(d.buf)
		d.buf = append(d.buf, data...)
		end := endOfHead(d.buf, max(0, prev-3))
		if end < 0 {
			if len(d.buf) > limit {
				return d.oversized(nil)
			}
			return nil
		}
		// buf now holds the block and everything after it.
		block, rest, data = d.buf[:end], data[end-prev:], d.buf
	}
	if len(block) > limit {
		whole := bytes.Clone(data)
		d.buf = d.buf[:0]
		return d.oversized(whole)
	}
	if !d.onHeadBlock(block) {
		// Not a start line after all: rescan these bytes, past the first.
		whole := bytes.Clone(data)
		d.haveStart = false
		d.enterResync()
		d.minStart = 1
		return whole
	}
	d.buf = d.buf[:0]
	return rest
}

// oversized skips a message whose header block is over the limits: buffered
// bytes are dropped, the rest is rescanned past the message's first byte.
func (d *direction) oversized(rest []byte) []byte {
	d.stats().oversizedHeaders.Add(1)
	d.stats().skippedBytes.Add(uint64(len(d.buf)))
	d.buf = d.buf[:0]
	d.haveStart = false
	d.enterResync()
	if len(rest) > 0 {
		d.minStart = 1
	}
	return rest
}

// onHeadBlock parses a complete head; false means its first line is not a start
// line at all.
func (d *direction) onHeadBlock(block []byte) bool {
	m := &Message{Start: d.start}
	line, rest, _ := nextLine(block)
	var err error
	t := newHeadText(block)
	if d.role == roleClient {
		err = parseRequestLine(line, m, t)
	} else {
		err = parseStatusLine(line, m, t)
	}
	if err != nil {
		return false
	}
	m.Header, err = parseFields(rest, d.s.f.opts.MaxHeaders, m, t)
	if err != nil {
		if errors.Is(err, errOversized) {
			d.stats().oversizedHeaders.Add(1)
		} else {
			d.stats().parseErrors.Add(1)
		}
		d.haveStart = false
		d.enterResync()
		return true
	}
	for _, a := range m.Anomalies {
		if a == anomalyLenientVersion {
			d.stats().lenientVersions.Add(1)
		}
	}
	d.msg = m
	if d.role == roleClient {
		d.beginRequest(m)
	} else {
		d.beginResponse(m)
	}
	return true
}

func (d *direction) beginRequest(m *Message) {
	framing, n, err := requestFraming(m)
	if err != nil {
		d.stats().parseErrors.Add(1)
		d.msg, d.haveStart = nil, false
		d.enterResync()
		return
	}
	s := d.s
	s.sawHTTP = true
	pe := &pendingExchange{exchange: Exchange{Index: s.nextIndex, Request: m}}
	pe.ex = &pe.exchange
	s.nextIndex++
	s.pending = append(s.pending, pe)
	d.pe = pe
	d.upgrade = m.Method == "CONNECT" || m.Header.Get("Upgrade") != "" && hasToken(m.Header, "Connection", "upgrade")
	d.startBody(framing, n)
}

func (d *direction) beginResponse(m *Message) {
	s := d.s
	s.sawHTTP = true
	code := m.StatusCode
	if code < 200 && code != 101 {
		// Interim (1xx other than 101): attached to the request it precedes.
		d.interim = true
		d.pe = s.matchResponse(m.Start)
		d.startBody(framingNone, 0)
		return
	}
	pe := s.matchResponse(m.Start)
	method := ""
	if pe == nil {
		d.stats().unmatchedResponses.Add(1)
	} else {
		pe.answered = true
		pe.ex.Response = m
		method = pe.ex.Request.Method
	}
	d.pe = pe
	if code == 101 || method == "CONNECT" && code/100 == 2 {
		m.End = d.completed
		d.stats().responses.Add(1)
		d.stats().upgrades.Add(1)
		if pe != nil {
			pe.ex.Upgraded = true
			pe.respDone, pe.reqDone = true, true
		}
		s.emitReady()
		s.stop()
		return
	}
	s.releaseHold = true
	framing, n, err := responseFraming(m, method)
	if err != nil {
		d.stats().parseErrors.Add(1)
		if pe != nil {
			pe.ex.Response = nil
			pe.ex.Error = fmt.Sprintf("%s: %v", errResponseInvalid, err)
			pe.respDone = true
			d.stats().unmatchedRequests.Add(1)
		}
		d.msg, d.pe, d.haveStart = nil, nil, false
		d.enterResync()
		s.emitReady()
		return
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

func (d *direction) startBody(framing bodyFraming, n int64) {
	d.body.reset(d.s.f.opts.MaxBodyBytes, d.msg, n)
	switch framing {
	case framingNone:
		d.finishMessage()
	case framingLength:
		d.remaining = n
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
	m, pe := d.msg, d.pe
	m.End = d.completed
	d.body.finish(m, d.stats(), &d.s.f.decoders)
	d.msg, d.pe, d.haveStart = nil, nil, false
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
				pe.ex.Interim = append(pe.ex.Interim, m)
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
	m, pe := d.msg, d.pe
	m.End = d.completed
	m.addAnomaly(anomalyIncomplete)
	d.body.cut = true
	d.body.finish(m, d.stats(), &d.s.f.decoders)
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
	pe.ex.Error = why
}

// dropMessage abandons the message in progress and resynchronises.
func (d *direction) dropMessage(why string) {
	if m, pe := d.msg, d.pe; m != nil && pe != nil && !d.interim {
		if d.role == roleClient {
			if pe.answered {
				// Its response already arrived: hand on what was captured.
				m.addAnomaly(anomalyIncomplete)
				d.body.cut = true
				d.body.finish(m, d.stats(), &d.s.f.decoders)
				pe.reqDone = true
			} else {
				// Keep its place in the pipeline: the server answers it (often
				// with a 400), and that answer must not go to the next request.
				m.addAnomaly(anomalyInvalidFraming)
				d.body.cut = true
				d.body.finish(m, d.stats(), &d.s.f.decoders)
				pe.reqDone = true
				pe.ex.Error = errRequestInvalid + strings.TrimPrefix(why, errResponseInvalid)
			}
		} else {
			pe.ex.Response = nil
			pe.ex.Error = why
			pe.respDone = true
			d.stats().unmatchedRequests.Add(1)
		}
	}
	d.msg, d.pe, d.haveStart = nil, nil, false
	d.interim, d.upgrade = false, false
	d.enterResync()
	d.s.emitReady()
}

func (d *direction) enterResync() {
	d.state = stResync
	d.buf = d.buf[:0]
	d.marks = d.marks[:0]
	d.scanFrom, d.minStart = 0, 0
}

func (d *direction) onChunkSize(data []byte) []byte {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		d.buf = append(d.buf, data...)
		if len(d.buf) > maxChunkLine {
			d.stats().parseErrors.Add(1)
			d.dropMessage(errResponseInvalid + ": chunk-size line too long")
		}
		return nil
	}
	line := data[:i]
	if len(d.buf) > 0 {
		d.buf = append(d.buf, line...)
		line = d.buf
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	n, err := parseChunkSize(line)
	d.buf = d.buf[:0]
	if err != nil {
		d.stats().parseErrors.Add(1)
		d.dropMessage(fmt.Sprintf("%s: %v", errResponseInvalid, err))
		return data[i+1:]
	}
	if n == 0 {
		d.state = stTrailers
	} else {
		d.remaining, d.state = n, stChunkData
	}
	return data[i+1:]
}

func (d *direction) onChunkEnd(data []byte) []byte {
	switch {
	case data[0] == '\r' && !d.chunkCR:
		d.chunkCR = true
		return data[1:]
	case data[0] == '\n':
		d.state = stChunkSize
		return data[1:]
	}
	d.stats().parseErrors.Add(1)
	d.dropMessage(errResponseInvalid + ": chunk data not followed by CRLF")
	return data
}

func (d *direction) onTrailers(data []byte) []byte {
	if len(d.buf) == 0 {
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
	prev := len(d.buf)
	d.buf = append(d.buf, data...)
	var end int
	switch {
	case d.buf[0] == '\n':
		end = 1
	case d.buf[0] == '\r' && len(d.buf) == 1:
		return nil
	case d.buf[0] == '\r' && d.buf[1] == '\n':
		end = 2
	default:
		end = endOfHead(d.buf, max(0, prev-3))
	}
	if end < 0 {
		if len(d.buf) > d.s.f.opts.MaxHeaderBytes {
			d.stats().oversizedHeaders.Add(1)
			d.dropMessage(errResponseInvalid + ": trailer section too large")
		}
		return nil
	}
	if end > 2 {
		tr, err := parseFields(d.buf[:end], d.s.f.opts.MaxHeaders, d.msg, newHeadText(d.buf[:end]))
		if err != nil {
			d.stats().oversizedHeaders.Add(1)
			d.dropMessage(fmt.Sprintf("%s: %v", errResponseInvalid, err))
			return data[end-prev:]
		}
		d.msg.Trailer = tr
	}
	d.buf = d.buf[:0]
	d.finishMessage()
	return data[end-prev:]
}

// onResync scans for the next plausible message start, skipping (and counting)
// the bytes before it.
func (d *direction) onResync(data []byte) []byte {
	d.marks = append(d.marks, timeMark{off: len(d.buf), seen: d.seen})
	d.buf = append(d.buf, data...)
	start, resume := findStart(d.buf, d.scanFrom, d.minStart, d.role != roleServer, d.role != roleClient)
	if start >= 0 {
		d.stats().skippedBytes.Add(uint64(start))
		d.start, d.haveStart = d.timeAt(start), true
		rest := bytes.Clone(d.buf[start:])
		d.buf, d.marks, d.scanFrom, d.minStart = d.buf[:0], d.marks[:0], 0, 0
		d.state = stStart
		return rest
	}
	d.scanFrom = resume
	// Keep only what a request line found later could still start in.
	if drop := resume - maxResyncLine; drop > 0 && drop >= len(d.buf)/2 {
		d.stats().skippedBytes.Add(uint64(drop))
		d.buf = d.buf[:copy(d.buf, d.buf[drop:])]
		d.scanFrom -= drop
		d.minStart = max(0, d.minStart-drop)
		kept := d.marks[:0]
		for i, mk := range d.marks {
			mk.off -= drop
			if mk.off <= 0 {
				if i+1 < len(d.marks) && d.marks[i+1].off-drop <= 0 {
					continue
				}
				mk.off = 0
			}
			kept = append(kept, mk)
		}
		d.marks = kept
	}
	return nil
}

// timeAt is the capture time of the chunk that brought resync byte off.
func (d *direction) timeAt(off int) time.Time {
	t := d.seen
	for _, mk := range d.marks {
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
	if len(d.held)+len(data) > d.s.f.opts.MaxHeaderBytes {
		joined := append(d.held, data...)
		d.held = nil
		d.state = stStart
		if len(joined) > len(data) {
			d.start, d.haveStart = d.heldSeen, true
		}
		return joined
	}
	if len(d.held) == 0 {
		d.heldSeen = d.seen
	}
	d.held = append(d.held, data...)
	d.heldCompleted = d.completed
	return nil
}

// gap handles n lost bytes (-1: unknown) of this side.
func (d *direction) gap(n int) {
	if d.state == stDead {
		return
	}
	d.begun = true
	lost := int64(n)
	switch d.state {
	case stBodyLength, stChunkData:
		if lost >= 0 {
			d.stats().gapsInMsgs.Add(1)
			d.msg.addAnomaly(anomalyGapInBody)
			if lost <= d.remaining {
				d.body.hole(lost)
				d.remaining -= lost
				if d.remaining == 0 {
					if d.state == stBodyLength {
						d.finishMessage()
					} else {
						d.state, d.chunkCR = stChunkEnd, false
					}
				}
				return
			}
			if d.state == stBodyLength {
				// The body ends inside the gap; what follows it is lost too.
				d.body.hole(d.remaining)
				d.remaining = 0
				d.finishMessage()
				d.lostMessages()
				return
			}
		}
	case stBodyClose:
		d.stats().gapsInMsgs.Add(1)
		d.msg.addAnomaly(anomalyGapInBody)
		d.body.hole(max(lost, 0))
		d.body.cut = true
		return
	case stHold:
		d.held = nil
		d.state = stStart
		d.lostMessages()
		return
	case stResync:
		// Bytes on either side of a gap do not form a line.
		d.stats().skippedBytes.Add(uint64(len(d.buf)))
		d.enterResync()
		d.lostMessages()
		return
	case stStart:
		if len(d.buf) == 0 {
			d.haveStart = false
			d.lostMessages()
			return
		}
	}
	d.stats().gapsInMsgs.Add(1)
	d.stats().skippedBytes.Add(uint64(len(d.buf)))
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
