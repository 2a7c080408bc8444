package httpparse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Reasons a message is dropped; wrapped with details by the parser.
var (
	errStartLine = errors.New("invalid start line")
	errFraming   = errors.New("invalid message framing")
	errOversized = errors.New("header block too large")
)

// Anomaly names recorded in Message.Anomalies.
const (
	anomalyCLAndChunked   = "content_length_and_chunked"
	anomalyGapInBody      = "gap_in_body"
	anomalyObsFold        = "obs_fold"
	anomalyLenientVersion = "lenient_version"
	anomalyInvalidHeader  = "invalid_header_line"
	anomalyIncomplete     = "incomplete"
	anomalyInvalidFraming = "invalid_framing"
	anomalyBareLF         = "bare_lf"
)

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	// Bit c of tokenLo (c < 64) or tokenHi (64 <= c < 128) is set for each
	// tchar: "!#$%&'*+-.^_`|~", digits and letters (TestTokenChars).
	const tokenLo, tokenHi uint64 = 0x03ff6cfa00000000, 0x57ffffffc7fffffe
	if c < 64 {
		return tokenLo>>c&1 != 0
	}
	return c < 128 && tokenHi>>(c-64)&1 != 0
}

// endOfHead returns the offset just past the empty line ending a header block in
// b, searching from from, or -1. Bare LF line ends are accepted.
func endOfHead(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		p := i + j + 1
		if p < len(b) && b[p] == '\n' {
			return p + 1
		}
		if p+1 < len(b) && b[p] == '\r' && b[p+1] == '\n' {
			return p + 2
		}
		i = p
	}
	return -1
}

// nextLine splits b at its first LF, dropping a CR before it.
func nextLine(b []byte) (line, rest []byte, bareLF bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil, false
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1], rest, false
	}
	return line, rest, true
}

// parseVersion accepts "HTTP/1.x"; lower-case is accepted but reported.
func parseVersion(v []byte) (lenient bool, err error) {
	if len(v) != 8 || v[6] != '.' || v[5] != '1' || v[7] < '0' || v[7] > '9' {
		return false, fmt.Errorf("version %q: %w", v, errStartLine)
	}
	switch string(v[:5]) {
	case "HTTP/":
		return false, nil
	default:
		if strings.EqualFold(string(v[:5]), "HTTP/") {
			return true, nil
		}
	}
	return false, fmt.Errorf("version %q: %w", v, errStartLine)
}

// span is the bytes block[off:end] of a head block.
type span struct{ off, end int }

// fieldSpan is a header or trailer field as offsets into its block.
type fieldSpan struct {
	name, value span
	// folded is the value when obs-fold lines extended it: it is then not a
	// piece of the block (rare).
	folded []byte
}

// rawHead is a head block parsed into offsets. Nothing is copied until the
// parser knows how much to allocate for the message (see direction.keep); it is
// scratch state, reused for every head a direction parses.
type rawHead struct {
	block []byte
	// The start line's parts: method, target and proto of a request line; proto
	// and reason of a status line.
	method, target, proto, reason span
	fields                        []fieldSpan
}

// reset starts parsing block, dropping the previous head.
func (h *rawHead) reset(block []byte) {
	clear(h.fields) // drop folded values
	*h = rawHead{block: block, fields: h.fields[:0]}
}

// span returns where b, a slice of the block, is in it. b's offset is
// cap(block)-cap(b), since every slice taken of the block ends at the same place.
func (h *rawHead) span(b []byte) span {
	if len(b) == 0 {
		return span{} // bytes.Trim returns nil, not a slice of the block, when nothing is left
	}
	off := cap(h.block) - cap(b)
	return span{off, off + len(b)}
}

func (h *rawHead) at(sp span) []byte { return h.block[sp.off:sp.end] }

// value is field i's value as captured.
func (h *rawHead) value(i int) []byte {
	if f := &h.fields[i]; f.folded != nil {
		return f.folded
	}
	return h.at(h.fields[i].value)
}

// get returns the first value of the named field (case-insensitive), or nil.
func (h *rawHead) get(name string) []byte {
	for i, f := range h.fields {
		if equalFold(h.at(f.name), name) {
			return h.value(i)
		}
	}
	return nil
}

func (h *rawHead) appendValues(dst [][]byte, name string) [][]byte {
	for i, f := range h.fields {
		if equalFold(h.at(f.name), name) {
			dst = append(dst, h.value(i))
		}
	}
	return dst
}

// fill sets m's start-line strings and header fields from h, whose block text
// holds; fields has room for exactly len(h.fields).
func (h *rawHead) fill(m *Message, fields Header, text string) {
	str := func(sp span) string { return text[sp.off:sp.end] }
	m.Method, m.Target, m.Proto, m.Reason = str(h.method), str(h.target), str(h.proto), str(h.reason)
	m.Header = h.header(fields, text)
}

// header fills fields, with room for exactly len(h.fields), from h, whose block
// text holds.
func (h *rawHead) header(fields Header, text string) Header {
	for i, f := range h.fields {
		v := text[f.value.off:f.value.end]
		if f.folded != nil {
			v = string(f.folded)
		}
		fields[i] = Field{Name: text[f.name.off:f.name.end], Value: v}
	}
	return fields
}

// parseRequestLine reads "METHOD SP target SP HTTP/1.x", the first line of h's
// block, into h.
func parseRequestLine(line []byte, m *Message, h *rawHead) error {
	sp := bytes.IndexByte(line, ' ')
	last := bytes.LastIndexByte(line, ' ')
	if sp <= 0 || last == sp {
		return fmt.Errorf("request line %q: %w", truncateForError(line), errStartLine)
	}
	for _, c := range line[:sp] {
		if !isTokenChar(c) {
			return fmt.Errorf("method %q: %w", truncateForError(line[:sp]), errStartLine)
		}
	}
	target := bytes.Trim(line[sp+1:last], " ")
	if len(target) == 0 {
		return fmt.Errorf("empty request target: %w", errStartLine)
	}
	for _, c := range target {
		if c < 0x21 && c != ' ' || c == 0x7f {
			return fmt.Errorf("control byte in request target: %w", errStartLine)
		}
	}
	lenient, err := parseVersion(line[last+1:])
	if err != nil {
		return err
	}
	h.method, h.target, h.proto = h.span(line[:sp]), h.span(target), h.span(line[last+1:])
	if lenient {
		m.Anomalies = append(m.Anomalies, anomalyLenientVersion)
	}
	return nil
}

// parseStatusLine reads "HTTP/1.x SP 3DIGIT [SP reason]", the first line of h's
// block, into h and m.
func parseStatusLine(line []byte, m *Message, h *rawHead) error {
	if len(line) < 12 || line[8] != ' ' {
		return fmt.Errorf("status line %q: %w", truncateForError(line), errStartLine)
	}
	lenient, err := parseVersion(line[:8])
	if err != nil {
		return err
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("status code %q: %w", line[9:12], errStartLine)
		}
		code = code*10 + int(c-'0')
	}
	if len(line) > 12 && line[12] != ' ' || code < 100 {
		return fmt.Errorf("status line %q: %w", truncateForError(line), errStartLine)
	}
	h.proto, m.StatusCode = h.span(line[:8]), code
	if len(line) > 13 {
		h.reason = h.span(line[13:])
	}
	if lenient {
		m.Anomalies = append(m.Anomalies, anomalyLenientVersion)
	}
	return nil
}

func truncateForError(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// parseFields parses header or trailer lines up to the empty line into
// h.fields. Field syntax is read leniently (a sniffer must see what the server
// accepted); oddities become anomalies, only a field count over maxFields
// fails. b is a slice of h's block.
func parseFields(b []byte, maxFields int, m *Message, h *rawHead) error {
	for len(b) > 0 {
		line, rest, bare := nextLine(b)
		b = rest
		if bare {
			m.addAnomaly(anomalyBareLF)
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: the line continues the previous field's value.
			m.addAnomaly(anomalyObsFold)
			if len(h.fields) == 0 {
				m.addAnomaly(anomalyInvalidHeader)
				continue
			}
			cont := trimOWS(line)
			if len(cont) > 0 {
				i := len(h.fields) - 1
				f := &h.fields[i]
				switch {
				case f.folded != nil:
					f.folded = append(append(f.folded, ' '), cont...)
				case f.value.end == f.value.off:
					f.value = h.span(cont)
				default:
					f.folded = append(append(bytes.Clone(h.at(f.value)), ' '), cont...)
				}
			}
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			m.addAnomaly(anomalyInvalidHeader)
			continue
		}
		name := line[:colon]
		if trimmed := trimRightOWS(name); len(trimmed) != len(name) {
			m.addAnomaly(anomalyInvalidHeader)
			name = trimmed
		}
		valid := len(name) > 0
		for _, c := range name {
			if !isTokenChar(c) {
				valid = false
				break
			}
		}
		if !valid {
			m.addAnomaly(anomalyInvalidHeader)
			continue
		}
		if len(h.fields) >= maxFields {
			return fmt.Errorf("more than %d fields: %w", maxFields, errOversized)
		}
		h.fields = append(h.fields, fieldSpan{name: h.span(name), value: h.span(trimOWS(line[colon+1:]))})
	}
	return nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return trimRightOWS(b)
}

// trimRightOWS drops spaces and tabs at the end of b.
func trimRightOWS(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func (m *Message) addAnomaly(a string) {
	for _, have := range m.Anomalies {
		if have == a {
			return
		}
	}
	m.Anomalies = append(m.Anomalies, a)
}

// bodyFraming is how a message's body is delimited (RFC 9112 section 6.3).
type bodyFraming uint8

const (
	framingNone bodyFraming = iota
	framingLength
	framingChunked
	framingClose
)

// parseContentLength reads every Content-Length value; they must be identical
// non-negative decimal numbers that fit in an int64.
func parseContentLength(values [][]byte) (int64, error) {
	n := int64(-1)
	for _, v := range values {
		for part := range bytes.SplitSeq(v, []byte{','}) {
			part = bytes.Trim(part, " \t")
			if len(part) == 0 {
				return 0, fmt.Errorf("empty content-length: %w", errFraming)
			}
			var x int64
			for i := 0; i < len(part); i++ {
				c := part[i]
				if c < '0' || c > '9' {
					return 0, fmt.Errorf("content-length %q: %w", part, errFraming)
				}
				if x > (1<<63-1-int64(c-'0'))/10 {
					return 0, fmt.Errorf("content-length %q overflows: %w", part, errFraming)
				}
				x = x*10 + int64(c-'0')
			}
			if n >= 0 && x != n {
				return 0, fmt.Errorf("conflicting content-length %d and %d: %w", n, x, errFraming)
			}
			n = x
		}
	}
	return n, nil
}

// transferCoding reports whether chunked is the final transfer coding and
// whether any transfer coding was given.
func transferCoding(values [][]byte) (chunked, present bool) {
	var last []byte
	for _, v := range values {
		for part := range bytes.SplitSeq(v, []byte{','}) {
			part = bytes.Trim(part, " \t")
			if len(part) == 0 {
				continue
			}
			present = true
			last = part
		}
	}
	return bytes.EqualFold(last, []byte("chunked")), present
}

// requestFraming decides a request's body framing from its parsed head. A request with neither
// Content-Length nor Transfer-Encoding has no body.
func requestFraming(m *Message, h *rawHead) (bodyFraming, int64, error) {
	// The arrays keep the usual single values off the heap.
	var teBuf, clBuf [2][]byte
	chunked, te := transferCoding(h.appendValues(teBuf[:0], "Transfer-Encoding"))
	cls := h.appendValues(clBuf[:0], "Content-Length")
	if te {
		if !chunked {
			return 0, 0, fmt.Errorf("request transfer-encoding without final chunked: %w", errFraming)
		}
		if len(cls) > 0 {
			m.addAnomaly(anomalyCLAndChunked)
		}
		return framingChunked, 0, nil
	}
	if len(cls) > 0 {
		n, err := parseContentLength(cls)
		if err != nil {
			return 0, 0, err
		}
		if n == 0 {
			return framingNone, 0, nil
		}
		return framingLength, n, nil
	}
	return framingNone, 0, nil
}

// responseFraming decides a response's body framing from its parsed head,
// given the request method.
func responseFraming(m *Message, h *rawHead, requestMethod string) (bodyFraming, int64, error) {
	code := m.StatusCode
	if requestMethod == "HEAD" || code < 200 || code == 204 || code == 304 {
		return framingNone, 0, nil
	}
	// The arrays keep the usual single values off the heap.
	var teBuf, clBuf [2][]byte
	chunked, te := transferCoding(h.appendValues(teBuf[:0], "Transfer-Encoding"))
	cls := h.appendValues(clBuf[:0], "Content-Length")
	if te {
		if len(cls) > 0 {
			m.addAnomaly(anomalyCLAndChunked)
		}
		if chunked {
			return framingChunked, 0, nil
		}
		// A transfer coding other than a final chunked: the body runs to close.
		return framingClose, 0, nil
	}
	if len(cls) > 0 {
		n, err := parseContentLength(cls)
		if err != nil {
			return 0, 0, err
		}
		if n == 0 {
			return framingNone, 0, nil
		}
		return framingLength, n, nil
	}
	return framingClose, 0, nil
}

// parseChunkSize reads "HEX [ws] [; ext] " (CR already stripped).
func parseChunkSize(line []byte) (int64, error) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 {
		return 0, fmt.Errorf("empty chunk size: %w", errFraming)
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("chunk size %q: %w", truncateForError(line), errFraming)
		}
		if n > (1<<63-1)>>4 {
			return 0, fmt.Errorf("chunk size %q overflows: %w", truncateForError(line), errFraming)
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}
