package unzeroed

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBytes(t *testing.T) {
	for _, n := range []int{-1, 0} {
		assert.Nil(t, Bytes(n), n)
	}
	// Sizes around the allocator's small, 32 KiB and large-object classes.
	for _, n := range []int{1, 7, 8, 100, 4096, 32 << 10, 32<<10 + 1, 1 << 20} {
		b := Bytes(n)
		require.Equal(t, 0, len(b), n)
		require.Equal(t, n, cap(b), n)
		b = b[:n]
		for i := range b {
			b[i] = byte(i)
		}
		p := &b[0]
		b = append(b[:n-1], 'x')
		assert.Same(t, p, &b[0], "appending within the capacity stays in the buffer (%d)", n)
		runtime.GC() // the buffer is reachable through b alone, and survives
		for i := range n - 1 {
			if b[i] != byte(i) {
				t.Fatalf("byte %d of %d changed after a collection", i, n)
			}
		}
	}
}

// BenchmarkBytes allocates buffers of a body's and a slab chunk's size, with
// make (cleared) and Bytes, with the collector set as replay sets it.
func BenchmarkBytes(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	var keep [64][]byte // both escape, as buffers handed on do
	for _, n := range []int{4 << 10, 32 << 10} {
		b.Run(fmt.Sprintf("make-%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			i := 0
			for b.Loop() {
				keep[i%len(keep)] = append(make([]byte, 0, n), 1)
				i++
			}
		})
		b.Run(fmt.Sprintf("unzeroed-%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			i := 0
			for b.Loop() {
				keep[i%len(keep)] = append(Bytes(n), 1)
				i++
			}
		})
	}
}
