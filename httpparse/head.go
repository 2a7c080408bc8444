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
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
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

// headText hands out the strings of a head block as substrings of one copy of
// it: one allocation per block instead of one per field.
type headText struct {
	block []byte
	text  string
}

func newHeadText(block []byte) headText { return headText{block: block, text: string(block)} }

// str returns b, a slice of the block, as a string. b's offset in the block is
// cap(block)-cap(b), since every slice taken of it ends at the same place.
func (t headText) str(b []byte) string {
	if len(b) == 0 {
		return "" // bytes.Trim returns nil, not a slice of the block, when nothing is left
	}
	off := cap(t.block) - cap(b)
	return t.text[off : off+len(b)]
}

// parseRequestLine fills m from "METHOD SP target SP HTTP/1.x", a line of t.
func parseRequestLine(line []byte, m *Message, t headText) error {
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
	m.Method, m.Target, m.Proto = t.str(line[:sp]), t.str(target), t.str(line[last+1:])
	if lenient {
		m.Anomalies = append(m.Anomalies, anomalyLenientVersion)
	}
	return nil
}

// parseStatusLine fills m from "HTTP/1.x SP 3DIGIT [SP reason]", a line of t.
func parseStatusLine(line []byte, m *Message, t headText) error {
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
	m.Proto, m.StatusCode = t.str(line[:8]), code
	if len(line) > 13 {
		m.Reason = t.str(line[13:])
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

// parseFields parses header or trailer lines up to the empty line. Field syntax is
// read leniently (a sniffer must see what the server accepted); oddities become
// anomalies, only a field count over maxFields fails. b is a slice of t.
func parseFields(b []byte, maxFields int, m *Message, t headText) (Header, error) {
	var h Header
	if n := bytes.Count(b, []byte{'\n'}); n > 0 {
		// b ends with the empty line, which is not a field: the slice is exact
		// for the usual block without folded lines.
		h = make(Header, 0, min(n-1, maxFields))
	}
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
			if len(h) == 0 {
				m.addAnomaly(anomalyInvalidHeader)
				continue
			}
			cont := trimOWS(line)
			if len(cont) > 0 {
				f := &h[len(h)-1]
				if f.Value == "" {
					f.Value = string(cont)
				} else {
					f.Value += " " + string(cont)
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
		if trimmed := bytes.TrimRight(name, " \t"); len(trimmed) != len(name) {
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
		if len(h) >= maxFields {
			return nil, fmt.Errorf("more than %d fields: %w", maxFields, errOversized)
		}
		h = append(h, Field{Name: t.str(name), Value: t.str(trimOWS(line[colon+1:]))})
	}
	return h, nil
}

func trimOWS(b []byte) []byte {
	return bytes.Trim(b, " \t")
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
func parseContentLength(values []string) (int64, error) {
	n := int64(-1)
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.Trim(part, " \t")
			if part == "" {
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
func transferCoding(values []string) (chunked, present bool) {
	var last string
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.Trim(part, " \t")
			if part == "" {
				continue
			}
			present = true
			last = part
		}
	}
	return strings.EqualFold(last, "chunked"), present
}

// requestFraming decides a request's body framing. A request with neither
// Content-Length nor Transfer-Encoding has no body.
func requestFraming(m *Message) (bodyFraming, int64, error) {
	// The arrays keep the usual single values off the heap.
	var teBuf, clBuf [2]string
	chunked, te := transferCoding(m.Header.appendValues(teBuf[:0], "Transfer-Encoding"))
	cls := m.Header.appendValues(clBuf[:0], "Content-Length")
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

// responseFraming decides a response's body framing given the request method.
func responseFraming(m *Message, requestMethod string) (bodyFraming, int64, error) {
	code := m.StatusCode
	if requestMethod == "HEAD" || code < 200 || code == 204 || code == 304 {
		return framingNone, 0, nil
	}
	// The arrays keep the usual single values off the heap.
	var teBuf, clBuf [2]string
	chunked, te := transferCoding(m.Header.appendValues(teBuf[:0], "Transfer-Encoding"))
	cls := m.Header.appendValues(clBuf[:0], "Content-Length")
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
