package httpparse

import (
	"unsafe"
)

// A message is kept in two allocations, made once its head is parsed and its
// framing known (direction.keep): a msgBox holding the Message, its header
// fields and what travels with it, and one byte buffer holding the head's text
// followed by room for the body. An Exchange handed on owns them; the buffer
// (and a body's own buffer) goes back to the factory's bufferPool when the
// exchange is released, the box to the collector.

// msgBox holds a message with its header fields (F: an array of them) and P,
// what the parser keeps with it: the pendingExchange of a request, the
// Exchange of a final response.
type msgBox[P, F any] struct {
	p      P
	msg    Message
	fields F
}

// newBox allocates a P and a Message with room for n header fields in one
// object. Arrays are exact up to 8 fields, then a little larger than needed
// (the allocator rounds sizes up in similar steps anyway); past 32 fields the
// Header gets its own allocation.
func newBox[P any](n int) (*P, *Message, Header) {
	switch {
	case n == 0:
		// Empty but not nil, as a head without fields always had.
		b := new(msgBox[P, struct{}])
		return &b.p, &b.msg, Header{}
	case n == 1:
		b := new(msgBox[P, [1]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 2:
		b := new(msgBox[P, [2]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 3:
		b := new(msgBox[P, [3]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 4:
		b := new(msgBox[P, [4]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 5:
		b := new(msgBox[P, [5]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 6:
		b := new(msgBox[P, [6]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 7:
		b := new(msgBox[P, [7]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n == 8:
		b := new(msgBox[P, [8]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 10:
		b := new(msgBox[P, [10]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 12:
		b := new(msgBox[P, [12]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 14:
		b := new(msgBox[P, [14]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 16:
		b := new(msgBox[P, [16]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 20:
		b := new(msgBox[P, [20]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 24:
		b := new(msgBox[P, [24]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	case n <= 32:
		b := new(msgBox[P, [32]Field])
		return &b.p, &b.msg, b.fields[:n:n]
	}
	b := new(msgBox[P, struct{}])
	return &b.p, &b.msg, make(Header, n)
}

// keepText copies a head block into a buffer from pool with room for bodyRoom
// body bytes after it, and returns the block's text, the buffer and that room
// (nil when 0).
//
// The text is made with unsafe.String so that head and body share one
// allocation. That is sound because the text's bytes are never written again
// until the exchange is released: the body only appends past them, into room,
// whose capacity ends where the buffer does, and nothing else holds the
// buffer. The buffer is not cleared: the body is appended to room, and read up
// to its length only.
func keepText(pool *bufferPool, block []byte, bodyRoom int) (text string, buf, room []byte) {
	buf = append(pool.get(len(block)+bodyRoom), block...)
	if bodyRoom > 0 {
		room = buf[len(block):]
	}
	return unsafe.String(unsafe.SliceData(buf), len(buf)), buf, room
}
