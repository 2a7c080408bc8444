package doctor

import "bytes"

// TLS record and handshake constants (RFC 8446).
const (
	tlsRecordHandshake   = 0x16
	tlsHandshakeClientHi = 0x01
	tlsExtServerName     = 0
	tlsExtALPN           = 16
)

// helloInfo is what a ClientHello tells about the connection without keys.
type helloInfo struct {
	SNI  string
	ALPN []string
}

// looksLikeTLS reports whether b starts with a TLS record header: content type
// 20..23, major version 3, minor 0..4. Mid-stream captures start on any record.
func looksLikeTLS(b []byte) bool {
	return len(b) >= 3 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 3 && b[2] <= 4
}

// parseClientHello reads the SNI and ALPN offer from the first bytes a TLS
// client sent. The hello may span several handshake records (post-quantum key
// shares make it larger than one segment, rarely than one record); ok is false
// when b does not hold a whole ClientHello.
func parseClientHello(b []byte) (h helloInfo, ok bool) {
	// Join the handshake records' fragments.
	var hs []byte
	for len(b) >= 5 && b[0] == tlsRecordHandshake {
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			hs = append(hs, b[5:]...)
			break
		}
		hs = append(hs, b[5:5+n]...)
		b = b[5+n:]
		if len(hs) >= 4 && len(hs) >= 4+hsLen(hs) {
			break
		}
	}
	if len(hs) < 4 || hs[0] != tlsHandshakeClientHi || len(hs) < 4+hsLen(hs) {
		return h, false
	}
	p := reader(hs[4 : 4+hsLen(hs)])
	p.skip(2 + 32) // legacy_version, random
	p.skip(int(p.u8()))
	p.skip(int(p.u16()))
	p.skip(int(p.u8()))
	exts := reader(p.take(int(p.u16())))
	for len(exts) >= 4 && !p.bad() {
		typ := exts.u16()
		data := reader(exts.take(int(exts.u16())))
		switch typ {
		case tlsExtServerName:
			list := reader(data.take(int(data.u16())))
			for len(list) >= 3 {
				kind := list.u8()
				name := list.take(int(list.u16()))
				if kind == 0 && name != nil {
					h.SNI = string(name)
				}
			}
		case tlsExtALPN:
			list := reader(data.take(int(data.u16())))
			for len(list) >= 1 {
				if proto := list.take(int(list.u8())); proto != nil {
					h.ALPN = append(h.ALPN, string(proto))
				}
			}
		}
	}
	return h, true
}

func hsLen(hs []byte) int { return int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]) }

// reader consumes big-endian fields; a read past the end empties it, so
// parsing a malformed hello stops instead of panicking.
type reader []byte

func (r *reader) take(n int) []byte {
	if n < 0 || n > len(*r) {
		*r = nil
		return nil
	}
	b := (*r)[:n]
	*r = (*r)[n:]
	return b
}

func (r *reader) skip(n int) { r.take(n) }

func (r *reader) u8() int {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.take(2)
	if b == nil {
		return 0
	}
	return int(b[0])<<8 | int(b[1])
}

func (r *reader) bad() bool { return *r == nil }

// h2Preface is the HTTP/2 connection preface a client sends first (RFC 9113 3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// isH2Preface reports whether b starts with the preface, or is a prefix of it
// long enough to tell.
func isH2Preface(b []byte) bool {
	n := min(len(b), len(h2Preface))
	return n >= 8 && bytes.Equal(b[:n], h2Preface[:n])
}

// isHTTP1Request reports whether b starts with an HTTP/1.x request line.
func isHTTP1Request(b []byte) bool {
	sp := bytes.IndexByte(b, ' ')
	if sp < 1 || sp > 20 {
		return false
	}
	for _, c := range b[:sp] {
		if c < 'A' || c > 'Z' {
			if c != '-' && c != '_' {
				return false
			}
		}
	}
	line := b
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		line = b[:i]
	} else if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
	} else if len(b) < 8192 {
		// A request line longer than what was captured: judge by the method.
		return true
	}
	return bytes.Contains(line, []byte(" HTTP/1."))
}

// isHTTP1Response reports whether b starts with an HTTP/1.x status line.
func isHTTP1Response(b []byte) bool { return bytes.HasPrefix(b, []byte("HTTP/1.")) }
