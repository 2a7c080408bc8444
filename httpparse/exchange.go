// Package httpparse parses the two byte streams of a TCP connection as HTTP/1.0 and
// HTTP/1.1 messages, incrementally and by content (any port), applying RFC 9112's
// framing rules, and pairs each request with its final response in order. It hands
// on one Exchange per request.
package httpparse

import (
	"net/netip"
	"time"
)

// Field is one header or trailer line, as captured.
type Field struct {
	Name  string
	Value string
}

// Header is a message's header fields in wire order.
type Header []Field

// Get returns the first value of the named field (case-insensitive), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if equalFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Values returns every value of the named field (case-insensitive).
func (h Header) Values(name string) []string {
	return h.appendValues(nil, name)
}

func (h Header) appendValues(dst []string, name string) []string {
	for _, f := range h {
		if equalFold(f.Name, name) {
			dst = append(dst, f.Value)
		}
	}
	return dst
}

// equalFold reports whether a and b are equal under ASCII case folding (all
// that HTTP field names and tokens need).
func equalFold[T string | []byte](a T, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// Message is one HTTP request or response.
type Message struct {
	// Request line (requests only).
	Method string
	Target string
	// Status line (responses only).
	StatusCode int
	Reason     string
	// Proto is "HTTP/1.0" or "HTTP/1.1" as sent.
	Proto   string
	Header  Header
	Trailer Header

	// Body is the kept body: de-chunked, decoded per Content-Encoding when that is
	// gzip, deflate or br, and cut at Options.MaxBodyBytes. Empty when not kept.
	Body []byte
	// BodySize is the body's size as transferred: after de-chunking, before
	// content decoding, whether or not it was kept.
	BodySize int64
	// BodyTruncated is true when Body holds less than the whole (decoded) body.
	BodyTruncated bool
	// BodyNotKept says why the body was not kept at all ("multipart/form-data",
	// "application/octet-stream"), or is empty.
	BodyNotKept string
	// DecodeError is set when Content-Encoding decoding failed; Body then holds
	// the raw bytes.
	DecodeError string
	// Chunked is true when the body used chunked transfer coding.
	Chunked bool

	// Start is the capture time of the message's first byte, End of its last.
	Start time.Time
	End   time.Time

	// Anomalies names framing irregularities seen (e.g. "content_length_and_chunked",
	// "gap_in_body"); empty for a clean message.
	Anomalies []string

	// bufs are the pooled buffers the message's strings and body view: the
	// head's (with the body when it fit the room after it), and the body's own.
	bufs [2][]byte
}

// Exchange is a request paired with its final response.
type Exchange struct {
	Client netip.AddrPort
	Server netip.AddrPort
	// Source names the capture file or interface.
	Source string
	// Index is the request's 0-based position on its connection.
	Index   int
	Request *Message
	// Response is nil when no final response was captured; Error then says why.
	Response *Message
	// Interim holds 1xx responses that came before the final one (e.g. 100 Continue).
	Interim []*Message
	// Error is empty for a complete exchange, else what went wrong: "no response",
	// "capture stopped", "response lost in capture gap", ...
	Error string
	// Upgraded is true when the connection switched protocol (101 or CONNECT 2xx)
	// after this exchange; the rest of the stream is not parsed.
	Upgraded bool

	// pool takes the messages' buffers back at Release.
	pool *bufferPool
}
