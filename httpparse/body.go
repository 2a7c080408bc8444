package httpparse

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"
	"unsafe"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"

	"github.com/otas/otas-sniff/internal/sizedread"
)

// bodySink collects a message body as it streams past: it counts every byte and
// keeps at most limit of them, since bodies can be arbitrarily large.
type bodySink struct {
	raw   []byte
	limit int
	size  int64
	// expected is the declared length (Content-Length), or 0: how far raw
	// may grow at once.
	expected int64
	// cut is true when raw holds less than the whole transferred body (limit hit
	// or a capture gap punched a hole in it).
	cut     bool
	notKept string
	// pool gives raw's buffers, and own says raw is one of them, not the room
	// after the head in the head's buffer.
	pool *bufferPool
	own  bool
}

// reset starts a body of which at most limit bytes are kept in raw, an empty
// buffer with room for (the start of) the body or nil; notKept, if set, says
// why none is; expected is the declared length, or 0.
func (b *bodySink) reset(limit int, notKept string, raw []byte, expected int64, pool *bufferPool, own bool) {
	*b = bodySink{limit: limit, notKept: notKept, raw: raw, expected: expected, pool: pool, own: own}
}

// notKeptType returns the media type of a Content-Type value whose bodies are
// not kept ("multipart/form-data", "application/octet-stream"), or "".
func notKeptType(ct []byte) string {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	// ASCII case folding suffices: no other letter lower-cases to one of these.
	ct = bytes.TrimSpace(ct)
	for _, mt := range [...]string{"multipart/form-data", "application/octet-stream"} {
		if equalFold(ct, mt) {
			return mt
		}
	}
	return ""
}

// decodes reports whether decode makes a new buffer for a Content-Encoding
// value (else the body is kept as sent); it follows decode's cases.
func decodes(coding []byte) bool {
	coding = bytes.TrimSpace(coding)
	for _, c := range [...]string{"gzip", "x-gzip", "deflate", "br"} {
		if equalFold(coding, c) {
			return true
		}
	}
	return false
}

func (b *bodySink) write(p []byte) {
	b.size += int64(len(p))
	if b.notKept != "" || b.cut {
		return
	}
	if room := b.limit - len(b.raw); len(p) > room {
		p = p[:room]
		b.cut = true
	}
	if need := len(b.raw) + len(p); need > cap(b.raw) {
		// Four times larger (at first bodyReserve), but never past the
		// declared length or the limit: the buffer holds at most four times
		// the bytes that came, or bodyReserve.
		bound := b.limit
		if b.expected > 0 {
			bound = int(min(b.expected, int64(b.limit)))
		}
		old := b.raw
		b.raw = append(b.pool.get(max(need, min(max(4*cap(b.raw), bodyReserve), bound))), b.raw...)
		if b.own {
			b.pool.put(old)
		}
		b.own = true
	}
	b.raw = append(b.raw, p...)
}

// hole records n body bytes that were never captured.
func (b *bodySink) hole(n int64) {
	b.size += n
	if n > 0 {
		b.cut = true
	}
}

// finish stores the body in m, decoding its Content-Encoding within the limit.
func (b *bodySink) finish(m *Message, c *counters, dec *decoders) {
	m.BodySize = b.size
	if b.notKept != "" {
		if b.size > 0 {
			m.BodyNotKept = b.notKept
		}
		return
	}
	if len(b.raw) == 0 {
		m.BodyTruncated = b.cut
		if b.own && b.raw != nil {
			b.pool.put(b.raw)
		}
		b.raw = nil
		return
	}
	// The message takes the buffer; the next message gets its own.
	raw := b.raw
	b.raw = nil
	coding := strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Encoding")))
	decoded, truncated, err := dec.decode(coding, raw, b.limit, b.cut, b.pool)
	if err != nil {
		c.decodeErrors.Add(1)
		m.DecodeError = err.Error()
		m.Body, m.BodyTruncated = raw, b.cut
		b.keepOwn(m, raw)
		return
	}
	m.Body, m.BodyTruncated = decoded, truncated
	if unsafe.SliceData(decoded) == unsafe.SliceData(raw) {
		b.keepOwn(m, raw)
		return
	}
	// Decoded into a buffer of its own, which the message keeps; nothing
	// views raw any more.
	m.bufs[1] = decoded
	if b.own {
		b.pool.put(raw)
	}
}

// keepOwn hands raw to m when it is a pooled buffer of its own.
func (b *bodySink) keepOwn(m *Message, raw []byte) {
	if b.own {
		m.bufs[1] = raw
	}
}

// decoders keeps gzip readers for reuse: setting one up costs tens of
// kilobytes, more than decoding a typical API body. Safe for concurrent use.
type decoders struct {
	gzip sync.Pool // of *gzipDecoder
}

// gzipDecoder is a gzip reader with the readers it reads through, reused
// together so that decoding a body allocates only its output.
type gzipDecoder struct {
	zr  *gzip.Reader
	src bytes.Reader
	lim io.LimitedReader
}

// decode decodes raw per coding, producing at most limit bytes so that a
// compression bomb costs no more than the limit. rawCut says raw is a prefix of
// the body, so an unexpected end of the compressed data is not an error.
func (d *decoders) decode(coding string, raw []byte, limit int, rawCut bool, pool *bufferPool) ([]byte, bool, error) {
	var r io.Reader
	var lim *io.LimitedReader
	sizeHint := 4 * len(raw)
	switch coding {
	case "", "identity":
		return raw, rawCut, nil
	case "gzip", "x-gzip":
		gd, _ := d.gzip.Get().(*gzipDecoder)
		if gd == nil {
			gd = new(gzipDecoder)
		}
		gd.src.Reset(raw)
		var err error
		if gd.zr == nil {
			gd.zr, err = gzip.NewReader(&gd.src)
		} else {
			err = gd.zr.Reset(&gd.src)
		}
		if err != nil {
			return nil, false, fmt.Errorf("gzip: %w", err)
		}
		defer func() {
			// Pooled readers must not keep the body alive.
			gd.src.Reset(nil)
			gd.lim = io.LimitedReader{}
			d.gzip.Put(gd)
		}()
		// A whole single-member body ends with its decoded size (RFC 1952 ISIZE).
		if n := len(raw); !rawCut && n >= 18 {
			sizeHint = int(binary.LittleEndian.Uint32(raw[n-4:]))
		}
		r, lim = gd.zr, &gd.lim
	case "deflate":
		// RFC 9110 deflate is zlib-wrapped, but many servers send raw deflate.
		if zr, err := zlib.NewReader(bytes.NewReader(raw)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(raw))
		}
	case "br":
		r = brotli.NewReader(bytes.NewReader(raw))
	default:
		// Unknown or stacked codings are kept as sent.
		return raw, rawCut, nil
	}
	if lim == nil {
		lim = new(io.LimitedReader)
	}
	*lim = io.LimitedReader{R: r, N: int64(limit) + 1}
	out, err := sizedread.ReadAllInto(pool.get(min(max(sizeHint, 512), limit)+1), lim)
	if len(out) > limit {
		return out[:limit], true, nil
	}
	if err != nil {
		if rawCut {
			// The compressed data stops where keeping stopped; what decoded is kept.
			return out, true, nil
		}
		return nil, false, fmt.Errorf("%s: %w", coding, err)
	}
	return out, rawCut, nil
}
