package forwarder

import "math/bits"

// quickTables holds the 32-byte rows quickScanAVX2 compares each block of a
// body with: bytes repeated 32 times, and the nibble tables of the sensitive
// names' last two bytes (each 16-byte table twice, once for each 128-bit
// lane VPSHUFB looks up in). Built by newQuickTables, read-only after.
type quickTables [quickRows][32]byte

// The rows of quickTables; quickscan_amd64.s reads them by these numbers.
const (
	qColon     = iota // ':'
	qQuote            // '"'
	qCase             // 0x20: or-ed in, makes a letter lower case; also the space
	qLowE             // 'e'
	qLowB             // 'b'
	qBackslash        // '\\'
	qJ                // 'J'
	qY                // 'y'
	qLeadI            // 0xC4, U+0130's lead byte
	qNextI            // 0xB0
	qLeadK            // 0xE2, U+212A's lead byte
	qNextK            // 0x84
	qZero             // '0'
	qNine             // 9: a byte minus '0' at most 9 is a digit
	qDash             // '-'
	qNibble           // 0x0F
	qLastLo           // classes of the names' last bytes, by low nibble
	qLastHi           // ... by high nibble
	qPrevLo           // classes of the bytes before them (the quote for a one-byte name)
	qPrevHi
	quickRows
)

// newQuickTables returns the tables for names (lower-case ASCII, no quote or
// backslash), or nil when this machine has no vector kernel.
func newQuickTables(names []string) *quickTables {
	if !hasAVX2 {
		return nil
	}
	t := new(quickTables)
	for row, c := range map[int]byte{
		qColon: ':', qQuote: '"', qCase: 0x20, qLowE: 'e', qLowB: 'b', qBackslash: '\\', qJ: 'J', qY: 'y',
		qLeadI: 0xC4, qNextI: 0xB0, qLeadK: 0xE2, qNextK: 0x84, qZero: '0', qNine: 9, qDash: '-', qNibble: 0x0F,
	} {
		for k := range t[row] {
			t[row][k] = c
		}
	}
	// A byte x is in a set when lo[x&15] & hi[x>>4] != 0, the bit standing for
	// x's high nibble mod 8: exact for sets of ASCII bytes.
	add := func(lo, hi int, c byte) {
		bit := byte(1) << (c >> 4 & 7)
		for lane := 0; lane < 32; lane += 16 {
			t[lo][lane+int(c&15)] |= bit
			t[hi][lane+int(c>>4)] |= bit
		}
	}
	for _, name := range names {
		prev := byte('"')
		if len(name) > 1 {
			prev = name[len(name)-2]
		}
		for _, c := range foldASCII(name[len(name)-1]) {
			add(qLastLo, qLastHi, c)
		}
		for _, c := range foldASCII(prev) {
			add(qPrevLo, qPrevHi, c)
		}
	}
	return t
}

// foldASCII is c and, for a letter, its other case.
func foldASCII(c byte) []byte {
	if 'a' <= c && c <= 'z' {
		return []byte{c, c - ('a' - 'A')}
	}
	return []byte{c}
}

// mayChangeJSONVector is mayChangeJSON for bodies of 64 bytes or more on a
// machine with the vector kernel: quickScanAVX512 reads 64 bytes a step where
// the machine has it, then quickScanAVX2 32, and each stops at the blocks with
// a candidate (a colon after a quote and two bytes that may end a sensitive
// name, or after whitespace; an e after a b), which are checked here as the
// word loop checks them. The first three bytes, which the kernels' steps
// cannot look behind, and the last few are checked one at a time.
func (r *Redactor) mayChangeJSONVector(body []byte) bool {
	return r.mayChangeJSONVectorWith(body, r.wide)
}

// mayChangeJSONVectorWith is mayChangeJSONVector with the 64-byte kernel
// (wide) or without, so tests can check both.
func (r *Redactor) mayChangeJSONVectorWith(body []byte, wide bool) bool {
	n := len(body)
	if n > 0 && (body[n-1] == 0xC4 || body[n-1] == 0xE2) {
		return true // may start U+0130 or U+212A in a longer body
	}
	// The card bytes of the 64 before the next block, by bit (the byte just
	// before it highest).
	var carry uint64
	for j := range min(wordStart, n) {
		if r.byteHit(body, j) {
			return true
		}
		carry |= uint64(cardByte[body[j]]) << (64 - wordStart + j)
	}
	i := min(wordStart, n)
	for wide {
		at, colons, bes, hit, cards := quickScanAVX512(body, i, r.quick, carry)
		if hit {
			return true
		}
		if colons|bes == 0 {
			i, carry = at, cards // fewer than 64 bytes left: the 32-byte kernel goes on
			break
		}
		if r.candidateHit(body, at, colons, bes) {
			return true
		}
		i, carry = at+64, cards
	}
	carry32 := uint32(carry >> 32)
	for {
		at, colons, bes, hit, cards := quickScanAVX2(body, i, r.quick, carry32)
		if hit {
			return true
		}
		if colons|bes == 0 {
			i = at // fewer than 32 bytes left
			break
		}
		if r.candidateHit(body, at, uint64(colons), uint64(bes)) {
			return true
		}
		i, carry32 = at+32, cards
	}
	return r.tailHit(body, i)
}

// candidateHit checks the candidates a kernel found in the block at at: the
// colons that may follow a sensitive key and the e's after a b, by bit.
func (r *Redactor) candidateHit(body []byte, at int, colons, bes uint64) bool {
	for ; colons != 0; colons &= colons - 1 {
		if r.keyBefore(body, at+bits.TrailingZeros64(colons)) {
			return true
		}
	}
	for ; bes != 0; bes &= bes - 1 {
		if bearerAt(body, at+bits.TrailingZeros64(bes)-1) {
			return true
		}
	}
	return false
}

// byteHit reports whether body[j] is where mayChangeJSON finds something:
// a backslash, the J of "eyJ", the second byte of U+0130 or U+212A, a colon
// after a sensitive key, or the e of "bearer".
func (r *Redactor) byteHit(body []byte, j int) bool {
	switch c := body[j]; {
	case c == '\\':
		return true
	case j >= 2 && c == 'J' && body[j-2] == 'e' && body[j-1] == 'y':
		return true
	case j >= 1 && (c == 0xB0 && body[j-1] == 0xC4 || c == 0x84 && body[j-1] == 0xE2):
		return true
	}
	return r.quickHit(body, j)
}
