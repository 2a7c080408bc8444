package forwarder

import (
	"crypto/rand"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/otas/otas-sniff/internal/unzeroed"
)

// A slab hands out the small strings of events (header and query JSON,
// addresses, ids, escaped bodies) from shared chunks, so that building an event
// costs about one allocation, the Event itself, instead of a dozen. Bytes
// handed out are not written again while an event holding them is unreleased:
// only the free tail of a chunk is, which is what makes the strings safe to
// view without copying. A chunk is counted: one reference for the slab filling
// it and one for each event with bytes in it. When Forwarder.Release has let go
// of the last event and the slab has moved on, the chunk goes back to the pool
// for later events (allocating them fresh was 4-7% of a replay's CPU); a chunk
// whose events are never released is collected as usual. Big values get their
// own allocation and are never reused.
//
// A slab is not safe for concurrent use: Forwarder.Build takes one from a pool
// for the length of one call.
type slab struct {
	pool *slabPool
	c    *chunk
	// buf is c's bytes: handed out up to len, free after.
	buf []byte
	// held is the chunks the event being built has bytes in, each with a
	// reference taken for it.
	held eventChunks
	// random holds bytes from crypto/rand for event ids, read 32 ids at a
	// time (one read per id was 1% of a replay's CPU); next is the first unused.
	random [32 * 16]byte
	next   int
}

// chunk is the memory behind a slab's strings.
type chunk struct {
	buf  []byte
	refs atomic.Int32
	// pinned chunks are never reused: an event had bytes in more chunks than
	// it keeps count of.
	pinned atomic.Bool
}

// eventChunks are the chunks an event has bytes in, with a reference each.
type eventChunks [3]*chunk

const (
	// slabChunk holds the strings of a few dozen typical events, escaped
	// bodies of up to 32 KiB included. Before chunks were reused, 32 KiB was
	// the best size (a large object is slower to allocate); reused, 128 KiB
	// chunks left 2-3% less CPU to a replay than 32 KiB ones.
	slabChunk = 128 << 10
	// slabMax is the largest value put in a chunk, so that a chunk holds at
	// least four and wastes at most a quarter of itself when a value does not fit.
	slabMax = slabChunk / 4
	// maxFreeChunks bounds the chunks a pool keeps for reuse (2 MiB).
	maxFreeChunks = 16
)

// free returns an empty slice to append a value of about n bytes to, then to
// pass to bytes or string. Appending more than n is fine (past the chunk's
// end, the value moves to its own allocation).
func (s *slab) free(n int) []byte {
	if n > slabMax {
		return unzeroed.Bytes(n)
	}
	if cap(s.buf)-len(s.buf) < n {
		old := s.c
		s.c = s.pool.chunk()
		s.buf = s.c.buf[:0]
		if old != nil {
			s.pool.unref(old)
		}
	}
	return s.buf[len(s.buf):]
}

// bytes hands out b, made by appending to what free returned: its bytes in the
// chunk are marked used. The result has no spare capacity, so appending to it
// cannot write into the chunk.
func (s *slab) bytes(b []byte) []byte {
	rest := s.buf[len(s.buf):cap(s.buf)]
	if len(b) > 0 && len(b) <= len(rest) && unsafe.SliceData(b) == unsafe.SliceData(rest) {
		s.buf = s.buf[:len(s.buf)+len(b)]
		s.hold(s.c)
	}
	return b[:len(b):len(b)]
}

// hold counts c as holding bytes of the event being built.
func (s *slab) hold(c *chunk) {
	for i, h := range s.held {
		switch h {
		case c:
			return
		case nil:
			c.refs.Add(1)
			s.held[i] = c
			return
		}
	}
	// The slab's own reference keeps c in use until this store is seen.
	c.pinned.Store(true)
}

// string is bytes as a string, without a copy: nothing writes handed-out bytes
// before their event is released.
func (s *slab) string(b []byte) string {
	b = s.bytes(b)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// take hands the chunks of the event just built to it.
func (s *slab) take() eventChunks {
	h := s.held
	s.held = eventChunks{}
	return h
}

// slabPool keeps one slab per Build call in progress, and the chunks released
// for reuse. Not a sync.Pool: that drops its items at every collection (and at
// random under -race), and each slab dropped strands the free tail of its
// chunk, which events kept by a sink then hold on to.
type slabPool struct {
	mu    sync.Mutex
	slabs []*slab
	free  []*chunk
	// poison, set by tests, overwrites a chunk as it is released, so that a
	// string read after its event's release shows it.
	poison bool
}

func (p *slabPool) get() *slab {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.slabs); n > 0 {
		s := p.slabs[n-1]
		p.slabs = p.slabs[:n-1]
		return s
	}
	return &slab{pool: p}
}

func (p *slabPool) put(s *slab) {
	p.mu.Lock()
	p.slabs = append(p.slabs, s)
	p.mu.Unlock()
}

// chunk returns a chunk with one reference, for the slab that fills it.
func (p *slabPool) chunk() *chunk {
	p.mu.Lock()
	var c *chunk
	if n := len(p.free); n > 0 {
		c = p.free[n-1]
		p.free = p.free[:n-1]
	}
	p.mu.Unlock()
	if c == nil {
		c = &chunk{buf: unzeroed.Bytes(slabChunk)} // its bytes are handed out only once written
	}
	c.refs.Store(1)
	return c
}

// unref drops one reference to c, and keeps c for reuse when it was the last.
func (p *slabPool) unref(c *chunk) {
	if c.refs.Add(-1) != 0 || c.pinned.Load() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.poison {
		b := c.buf[:cap(c.buf)]
		for i := range b {
			b[i] = poisonByte
		}
	}
	if len(p.free) < maxFreeChunks {
		p.free = append(p.free, c)
	}
}

// poisonByte fills released chunks in tests: a '\x01' in an event's JSON
// would be escaped, so it never shows in a sound one.
const poisonByte = 0x01

// release drops an event's references to its chunks.
func (p *slabPool) release(h *eventChunks) {
	for i, c := range h {
		if c == nil {
			break
		}
		h[i] = nil
		p.unref(c)
	}
}

// random16 returns 16 bytes from crypto/rand, none of them handed out before.
func (s *slab) random16() [16]byte {
	if s.next == 0 || s.next == len(s.random) {
		_, _ = rand.Read(s.random[:]) // crypto/rand.Read never fails (Go 1.24+)
		s.next = 0
	}
	r := [16]byte(s.random[s.next:])
	s.next += 16
	return r
}
