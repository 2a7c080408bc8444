// Package sizedread reads a whole stream into a buffer sized from a hint: one
// allocation when the size is known up front (a Content-Length, a gzip
// trailer), where io.ReadAll starts at 512 bytes and grows.
package sizedread

import (
	"io"

	"github.com/otas/otas-sniff/internal/unzeroed"
)

// maxHint caps the room taken on trust from a hint: a size read off the wire
// is not trusted with memory.
const maxHint = 64 << 20

// ReadAll reads r to EOF into a buffer with room for size bytes (plus one, so
// the final read sees EOF without growing); size < 0 means unknown.
func ReadAll(r io.Reader, size int64) ([]byte, error) {
	if size < 0 || size > maxHint {
		size = 512
	}
	return ReadAllInto(unzeroed.Bytes(int(size)+1), r) // read into, and read up to its length only
}

// ReadAllInto appends r, read to EOF, to b, reading into its spare capacity
// first and growing it only when that is full.
func ReadAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}
