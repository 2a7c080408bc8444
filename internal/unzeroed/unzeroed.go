// Package unzeroed allocates byte buffers without clearing them first.
//
// make clears every byte it allocates; a buffer that is only ever appended to
// and read up to its length never shows the bytes it was given, so clearing
// them is wasted work (memclr was 5-8% of a replay's CPU). strings.Builder's
// Grow is the public way to such memory; Bytes reaches it through unsafe.
//
// A caller must never read (or hand on) a byte past the length it wrote: the
// capacity holds whatever the heap held before, which may be another
// message's body.
package unzeroed

import (
	"strings"
	"unsafe"
)

// Bytes returns a slice of length 0 and capacity n (nil for n <= 0) whose
// bytes are not cleared.
func Bytes(n int) []byte {
	if n <= 0 {
		return nil
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteByte(0) // a string with a byte in it has a data pointer to take
	return unsafe.Slice(unsafe.StringData(b.String()), n)[:0]
}
