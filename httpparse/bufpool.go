package httpparse

import (
	"math/bits"
	"sync"

	"github.com/otas/otas-sniff/internal/unzeroed"
)

// bufferPool keeps the byte buffers of released exchanges (Exchange.Release)
// for the heads and bodies of later messages: allocating each afresh was ~12%
// of a one-core replay's CPU. Buffers come in size classes from 64 B to
// 512 KiB, so a buffer given back serves any later request of
// its class. Safe for concurrent use: a worker takes buffers, the goroutine
// that writes the events gives them back.
//
// Like every message buffer, a pooled one is not cleared (see keepText): its
// bytes past what a message wrote are another message's, and are never read.
type bufferPool struct {
	mu   sync.Mutex
	free [bufferClasses][][]byte
	// poison, set by tests, overwrites a buffer as it is given back, so that
	// a view read after its exchange's release shows it.
	poison bool
}

const (
	// bufferClasses are 64 B to 512 KiB, four per doubling (a quarter apart,
	// so a buffer wastes less than a fifth of itself, about as the
	// allocator's own size classes do).
	bufferClasses = 53
	// classBudget bounds the bytes a pool keeps per class (at least two
	// buffers): a burst of big bodies must not stay held after it passed.
	classBudget = 256 << 10
	// poisonByte fills buffers given back in tests.
	poisonByte = 0x01
)

// classSize is the size of class c: 64, 80, 96, 112, 128, 160, ... 512 KiB.
func classSize(c int) int {
	return (64 << (c / 4)) / 4 * (4 + c%4)
}

// classFor returns the smallest class holding n bytes, or -1 past the last.
func classFor(n int) int {
	if n <= 64 {
		return 0
	}
	k := bits.Len(uint(n-1)) - 1 // 1<<k <= n-1 < 2<<k
	quarter := 1 << k / 4
	c := (k-6)*4 + (n-1<<k+quarter-1)/quarter
	if c >= bufferClasses {
		return -1
	}
	return c
}

// get returns an empty buffer with room for at least n bytes.
func (p *bufferPool) get(n int) []byte {
	c := classFor(n)
	if c < 0 {
		return unzeroed.Bytes(n)
	}
	p.mu.Lock()
	if k := len(p.free[c]); k > 0 {
		b := p.free[c][k-1]
		p.free[c][k-1] = nil
		p.free[c] = p.free[c][:k-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return unzeroed.Bytes(classSize(c))
}

// put keeps b for later messages; nothing may read or write it any more.
func (p *bufferPool) put(b []byte) {
	c := classFor(cap(b) + 1)
	if c < 0 {
		c = bufferClasses
	}
	c-- // the largest class b holds
	if c < 0 {
		return
	}
	b = b[:0]
	if p.poison {
		full := b[:cap(b)]
		for i := range full {
			full[i] = poisonByte
		}
	}
	p.mu.Lock()
	if len(p.free[c]) < max(2, classBudget/classSize(c)) {
		p.free[c] = append(p.free[c], b)
	}
	p.mu.Unlock()
}

// release gives back the buffers of m, if it holds any.
func (p *bufferPool) release(m *Message) {
	if m == nil {
		return
	}
	for i, b := range m.bufs {
		if b != nil {
			m.bufs[i] = nil
			p.put(b)
		}
	}
}

// Release gives the byte buffers of the exchange's messages back to the parser
// for later messages. Call it only when nothing will read the exchange, or any
// string or slice taken from it, again: Forwarder.Release does, once every sink
// has copied the event. Optional (an exchange never released is collected as
// usual); a second call does nothing.
func (ex *Exchange) Release() {
	p := ex.pool
	if p == nil {
		return
	}
	ex.pool = nil
	p.release(ex.Request)
	p.release(ex.Response)
	for _, m := range ex.Interim {
		p.release(m)
	}
}
