//go:build !purego

package forwarder

import "golang.org/x/sys/cpu"

// hasAVX512 is whether mayChangeJSON reads 64 bytes a step with
// quickScanAVX512 (AVX-512 F and BW, with the OS keeping their registers).
// VBMI2 is asked for only as the mark of the CPUs (Intel from Ice Lake, AMD
// from Zen 4) on which 512-bit integer work does not lower the core's clock,
// as it does on Skylake-SP for everything else running there. Read-only.
var hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VBMI2

// quickScanAVX2 reads body 32 bytes at a time from i (at least 3) while 32
// are left, and returns at the first block where it finds something: hit for
// a backslash, "eyJ", U+0130 or U+212A (their first two bytes), or 13 card
// bytes in a row (carry holds the card bytes of the 32 before i, as a mask);
// else the colons and the e's after a b to look at, by bit. at is that
// block's start, or where it stopped; cards the card bytes of the last block
// read.
//
//go:noescape
func quickScanAVX2(body []byte, i int, t *quickTables, carry uint32) (at int, colons, bes uint32, hit bool, cards uint32)

// quickScanAVX512 is quickScanAVX2 64 bytes a step, with 64-bit masks and
// carry, for machines with AVX-512BW (hasAVX512).
//
//go:noescape
func quickScanAVX512(body []byte, i int, t *quickTables, carry uint64) (at int, colons, bes uint64, hit bool, cards uint64)
