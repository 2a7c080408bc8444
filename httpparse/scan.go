package httpparse

import "bytes"

// Message start detection, used at stream start and to resynchronise after
// garbage, a gap or a stream that was captured mid-connection.

const (
	// maxResyncLine bounds how far back from " HTTP/1.x" a request line is looked
	// for while resynchronising; longer request lines are missed.
	maxResyncLine = 8 << 10
	h2Preface     = "PRI * HTTP/2.0\r\n"
)

// knownMethods are the methods accepted when a request line is found in the
// middle of other bytes (at a message boundary any token is accepted).
func knownMethodSuffix(tok []byte) int {
	best := 0
	for _, m := range [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
		"TRACE", "PATCH", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
		"SEARCH", "REPORT", "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY",
		"SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR", "LINK", "UNLINK", "QUERY", "ACL",
		"BIND", "REBIND", "UNBIND", "SOURCE"} {
		if len(m) > best && bytes.HasSuffix(tok, []byte(m)) {
			best = len(m)
		}
	}
	return best
}

// startKind is what the bytes at a message boundary look like.
type startKind uint8

const (
	startNeedMore startKind = iota
	startRequest
	startResponse
	startTLS
	startHTTP2
	startGarbage
)

// classifyStart looks at the first bytes of a message (leading CR/LF already
// skipped). atStreamStart enables TLS and HTTP/2 preface detection.
func classifyStart(b []byte, atStreamStart bool) startKind {
	if len(b) == 0 {
		return startNeedMore
	}
	if atStreamStart {
		// A TLS record: handshake/alert/CCS/application data, version 3.x.
		if b[0] >= 0x14 && b[0] <= 0x17 {
			if len(b) < 3 {
				return startNeedMore
			}
			if b[1] == 3 && b[2] <= 4 {
				return startTLS
			}
		}
		n := min(len(b), len(h2Preface))
		if string(b[:n]) == h2Preface[:n] {
			if n < len(h2Preface) {
				return startNeedMore
			}
			return startHTTP2
		}
	}
	const httpSlash = "HTTP/"
	n := min(len(b), len(httpSlash))
	if bytes.EqualFold(b[:n], []byte(httpSlash[:n])) {
		if n < len(httpSlash) {
			return startNeedMore
		}
		return startResponse
	}
	// A request line starts with an upper-case method token and a space.
	for i, c := range b {
		if c == ' ' {
			if i == 0 {
				return startGarbage
			}
			return startRequest
		}
		if !isMethodChar(c) || i >= 24 {
			return startGarbage
		}
	}
	return startNeedMore
}

// isMethodChar accepts the characters of registered method names.
func isMethodChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c == '-' || c == '_'
}

// findStart looks in b, from offset from on, for the first plausible message
// start: a status line "HTTP/1.x SP 3DIGIT" (when wantResponse) or a request line
// "METHOD SP target SP HTTP/1.x CRLF" (when wantRequest). It returns the start's
// offset, or -1 and the offset from which scanning must resume once more bytes
// arrive (bytes before resume-maxResyncLine can be dropped). Starts before
// minStart are not taken.
func findStart(b []byte, from, minStart int, wantRequest, wantResponse bool) (start, resume int) {
	const marker = "HTTP/1."
	i := from
	for {
		j := bytes.Index(b[i:], []byte(marker))
		if j < 0 {
			return -1, max(from, len(b)-len(marker)+1)
		}
		j += i
		if j+len(marker) >= len(b) {
			return -1, j
		}
		if c := b[j+len(marker)]; c >= '0' && c <= '9' {
			after := b[j+len(marker)+1:]
			if wantRequest && j > 0 && b[j-1] == ' ' {
				if len(after) == 0 || after[0] == '\r' && len(after) < 2 {
					return -1, j
				}
				if after[0] == '\n' || after[0] == '\r' && after[1] == '\n' {
					if s := requestLineStart(b, j-1); s >= minStart {
						return s, 0
					}
				}
			}
			if wantResponse && (len(after) == 0 || after[0] == ' ') {
				if len(after) < 5 {
					return -1, j
				}
				if isStatusTail(after) && j >= minStart {
					return j, 0
				}
			}
		}
		i = j + 1
	}
}

// isStatusTail checks " 3DIGIT" followed by SP, CR or LF.
func isStatusTail(b []byte) bool {
	if len(b) < 5 || b[0] != ' ' {
		return false
	}
	for _, c := range b[1:4] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return b[4] == ' ' || b[4] == '\r' || b[4] == '\n'
}

// requestLineStart walks back from the space before "HTTP/1.x" over the target
// and the method, returning the method's offset or -1.
func requestLineStart(b []byte, sp int) int {
	k := sp - 1
	low := max(0, sp-maxResyncLine)
	for k >= low && b[k] > ' ' && b[k] < 0x7f {
		k--
	}
	if k < low || k == sp-1 || b[k] != ' ' {
		return -1
	}
	end := k
	m := end - 1
	for m >= 0 && isMethodChar(b[m]) {
		m--
	}
	m++
	tok := b[m:end]
	if len(tok) == 0 {
		return -1
	}
	// At a line start any upper-case token is a method; after other bytes only a
	// known method is believed.
	if (m == 0 || b[m-1] == '\n') && len(tok) >= 3 {
		return m
	}
	if n := knownMethodSuffix(tok); n > 0 {
		return end - n
	}
	return -1
}
