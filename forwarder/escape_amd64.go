//go:build !purego

package forwarder

import (
	"unicode/utf8"

	"golang.org/x/sys/cpu"
)

// hasAVX2 is whether this machine runs the AVX2 kernels: appendStringJSON
// escapes 32 bytes a step with escapeAVX2, which also needs BMI1 (TZCNT,
// BLSR) and POPCNT, and mayChangeJSON reads 32 a step with quickScanAVX2.
// Read-only.
var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasBMI1 && cpu.X86.HasPOPCNT

// escapeAVX2 writes src[i:] into dst from j, 32 bytes a step, while 64 bytes
// of src and of room are left (38 at a byte escaped one by one), and returns
// where it stopped in src and dst: there, or at a byte of 0x80 or more (UTF-8,
// left to escapeBytes). Bytes of dst after the returned j may have been
// written.
//
// With wide (hasWideEscape), a step whose only escapes are two-byte ones is
// spread by VPEXPANDB.
//
//go:noescape
func escapeAVX2(dst []byte, j int, src string, i int, html, wide bool) (ni, nj int)

// hasWideEscape is whether escapeAVX2 can spread a step by VPEXPANDB
// (AVX-512 VBMI2) at the places PEXT (BMI2) finds. Read-only.
var hasWideEscape = hasAVX512 && cpu.X86.HasBMI2

// avx2Escape[c] is what escapeAVX2 writes for a byte it escapes: the bytes
// (two or six) from the lowest, and how many less one in the top byte; zero
// for 0x80 and more. <, > and & are only looked up with html. Read-only.
var avx2Escape = func() (t [256]uint64) {
	short := map[byte]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f'}
	for c := range byte(utf8.RuneSelf) {
		e := []byte{'\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF]}
		if x, ok := short[c]; ok {
			e = []byte{'\\', x}
		}
		for k, x := range e {
			t[c] |= uint64(x) << (8 * k)
		}
		t[c] |= uint64(len(e)-1) << 56
	}
	return t
}()

// avx2Expand[m] spreads 8 bytes over 16 with VPSHUFB, a backslash (index 8)
// before each byte at a bit set in m; the bytes after the 8+popcount(m) used
// are zero. Read-only.
var avx2Expand = func() (t [256][16]byte) {
	for m := range 256 {
		k := 0
		for b := range 8 {
			if m>>b&1 != 0 {
				t[m][k] = 8
				k++
			}
			t[m][k] = byte(b)
			k++
		}
		for ; k < 16; k++ {
			t[m][k] = 0x80
		}
	}
	return t
}()
