package forwarder

import (
	"sync"
	"unsafe"

	"github.com/otas/otas-sniff/internal/unzeroed"
)

// A slab hands out the small strings of events (header and query JSON,
// addresses, ids, escaped bodies) from shared chunks, so that building an event
// costs about one allocation, the Event itself, instead of a dozen. Bytes
// handed out are never written again: only the free tail of a chunk is, which
// is what makes the strings safe to view without copying. A chunk stays alive
// while any string in it does; events live until their batch is written, so
// chunks are kept small and big values get their own allocation.
//
// A slab is not safe for concurrent use: Forwarder.Build takes one from a pool
// for the length of one call.
type slab struct {
	// buf is the current chunk: handed out up to len, free after.
	buf []byte
}

const (
	// slabChunk holds the strings of a few typical events, escaped bodies of
	// up to 8 KiB included: 16 KiB chunks left half the bodies of API traffic
	// to their own allocations, and past 32 KiB a chunk is a large object,
	// slower to allocate (64 KiB cost twice the CPU).
	slabChunk = 32 << 10
	// slabMax is the largest value put in a chunk, so that a chunk holds at
	// least four and wastes at most a quarter of itself when a value does not fit.
	slabMax = slabChunk / 4
)

// free returns an empty slice to append a value of about n bytes to, then to
// pass to bytes or string. Appending more than n is fine (past the chunk's
// end, the value moves to its own allocation).
func (s *slab) free(n int) []byte {
	if n > slabMax {
		return unzeroed.Bytes(n)
	}
	if cap(s.buf)-len(s.buf) < n {
		s.buf = unzeroed.Bytes(slabChunk) // its bytes are handed out only once written
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
	}
	return b[:len(b):len(b)]
}

// string is bytes as a string, without a copy: nothing writes handed-out bytes.
func (s *slab) string(b []byte) string {
	b = s.bytes(b)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// slabPool keeps one slab per Build call in progress. Not a sync.Pool: that
// drops its items at every collection (and at random under -race), and each
// slab dropped strands the free tail of its chunk, which events kept by a sink
// then hold on to.
type slabPool struct {
	mu    sync.Mutex
	slabs []*slab
}

func (p *slabPool) get() *slab {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.slabs); n > 0 {
		s := p.slabs[n-1]
		p.slabs = p.slabs[:n-1]
		return s
	}
	return new(slab)
}

func (p *slabPool) put(s *slab) {
	p.mu.Lock()
	p.slabs = append(p.slabs, s)
	p.mu.Unlock()
}
