package reassembly

import (
	"slices"

	"github.com/gopacket/gopacket/layers"
	gpr "github.com/gopacket/gopacket/reassembly"
)

// The overlap policy is that the bytes seen first win. gopacket keeps that for
// bytes it has delivered, but a segment overlapping bytes it holds out of
// order overwrites them (its checkOverlap cuts or drops the held page, or
// copies the new bytes into it). So the wrapper tracks the sequence ranges
// gopacket holds out of order and cuts every new segment to the parts that
// are not held before gopacket sees it.

// seqRange is the run of sequence numbers [start, end).
type seqRange struct{ start, end gpr.Sequence }

// heldRanges lists per direction (dirIndex) the ranges gopacket holds out of
// order, sorted and merged where they touch. A range is dropped once nextSeq
// passes it: gopacket has then delivered or skipped its bytes, and trims
// anything before nextSeq itself. Each range is at least one page gopacket
// holds, so the list is as bounded as gopacket's buffer.
type heldRanges [2][]seqRange

// piece is the part of a segment's payload fed on its own: n bytes from off,
// carrying the segment's FIN when it is the last piece.
type piece struct {
	off, n int
	fin    bool
}

func dirIndex(dir gpr.TCPFlowDirection) int {
	if dir == gpr.TCPDirClientToServer {
		return 0
	}
	return 1
}

// keepFirstSeen applies the overlap policy to a data segment of direction d
// that gopacket is about to take, nextSeq being where that direction's
// delivered bytes end. It returns false when gopacket must not see the
// segment: it overlaps held bytes (the Assembler then feeds the pieces left
// in Assembler.pieces once gopacket has returned), or lies too far from them
// to be held with them (see fits).
func (s *stream) keepFirstSeen(d int, tcp *layers.TCP, nextSeq gpr.Sequence) bool {
	a := s.a
	start := gpr.Sequence(tcp.Seq)
	end := start.Add(len(tcp.Payload))
	var held []seqRange
	if s.held != nil {
		held = dropBelow(s.held[d], nextSeq)
		s.held[d] = held
	}
	ahead := nextSeq.Difference(start) > 0 // so gopacket will hold it
	if ahead && !fits(held, start, end) {
		// gopacket orders held pages by sequence differences, which mean
		// something only within a quarter of the sequence space: bytes this
		// far from those held could be put out of place. No TCP window is
		// that wide, so a receiver would drop them too.
		a.c.farSegments.Add(1)
		return false
	}
	// The pieces never overlap what is held, so one that does (none should)
	// is taken whole rather than cut again without end.
	if !a.refeeding && overlaps(held, start, end) {
		a.pieces = cut(a.pieces[:0], held, start, end, tcp.FIN)
		kept := 0
		for _, p := range a.pieces {
			kept += p.n
		}
		a.c.overlapBytes.Add(uint64(len(tcp.Payload) - kept))
		a.c.overlapPackets.Add(1)
		return false
	}
	if ahead {
		if s.held == nil {
			s.held = new(heldRanges)
		}
		held = insertRange(s.held[d], seqRange{start, end})
		// Bounded anyway (see heldRanges); this guards memory should gopacket
		// ever drop held pages without passing them with nextSeq.
		if limit := a.asm.MaxBufferedPagesPerConnection; limit > 0 && len(held) > limit {
			held = slices.Delete(held, 0, 1)
		}
		s.held[d] = held
	}
	return true
}

// maxHeldSpan bounds the sequence numbers the bytes held out of order for one
// direction may span: well inside a quarter of the sequence space.
const maxHeldSpan = 1 << 28

// fits reports whether [start, end) can be held with the held ranges without
// them spanning more than maxHeldSpan. A Difference within ±maxHeldSpan is
// the true distance (further ones may not be), so both ends are checked
// against that first.
func fits(held []seqRange, start, end gpr.Sequence) bool {
	if len(held) == 0 {
		return true
	}
	lo, hi := held[0].start, held[len(held)-1].end
	ds, de := lo.Difference(start), lo.Difference(end)
	if ds < -maxHeldSpan || ds > maxHeldSpan || de < -maxHeldSpan || de > maxHeldSpan {
		return false
	}
	return max(lo.Difference(hi), de)-min(0, ds) <= maxHeldSpan
}

// dropBelow removes the ranges gopacket has passed: delivered or given up.
// A range counts as passed only when both its ends are at or before nextSeq:
// sequence order is only meaningful within a quarter of the sequence space,
// and a range far from nextSeq that spans the wrap of 2^32 would otherwise
// look passed by its end while gopacket still holds it.
func dropBelow(held []seqRange, nextSeq gpr.Sequence) []seqRange {
	i := 0
	for i < len(held) && nextSeq.Difference(held[i].end) <= 0 && nextSeq.Difference(held[i].start) < 0 {
		i++
	}
	held = slices.Delete(held, 0, i)
	if len(held) > 0 && nextSeq.Difference(held[0].start) < 0 {
		held[0].start = nextSeq
	}
	return held
}

func overlaps(held []seqRange, start, end gpr.Sequence) bool {
	for _, r := range held {
		if end.Difference(r.start) >= 0 {
			return false // this and every later range start at or after end
		}
		if start.Difference(r.end) > 0 {
			return true
		}
	}
	return false
}

// cut appends to dst the parts of [start, end) outside the held ranges, as
// pieces of the payload that starts at start, and gives the last one the FIN
// (an empty piece at end when end itself is held).
func cut(dst []piece, held []seqRange, start, end gpr.Sequence, fin bool) []piece {
	cur := start // the first byte not yet given to a piece or found held
	for _, r := range held {
		if end.Difference(r.start) >= 0 {
			break
		}
		if cur.Difference(r.end) <= 0 {
			continue
		}
		if n := cur.Difference(r.start); n > 0 {
			dst = append(dst, piece{off: start.Difference(cur), n: n})
		}
		cur = r.end
	}
	tail := false // a piece ends at end
	if n := cur.Difference(end); n > 0 {
		dst = append(dst, piece{off: start.Difference(cur), n: n})
		tail = true
	}
	if fin {
		if tail {
			dst[len(dst)-1].fin = true
		} else {
			dst = append(dst, piece{off: start.Difference(end), fin: true})
		}
	}
	return dst
}

// insertRange adds r to the sorted list, merged with the ranges it overlaps
// or touches.
func insertRange(held []seqRange, r seqRange) []seqRange {
	i := 0
	for i < len(held) && held[i].end.Difference(r.start) > 0 { // held[i] ends before r
		i++
	}
	j := i
	for j < len(held) && r.end.Difference(held[j].start) <= 0 { // held[j] starts by r's end
		if held[j].start.Difference(r.start) > 0 {
			r.start = held[j].start
		}
		if r.end.Difference(held[j].end) > 0 {
			r.end = held[j].end
		}
		j++
	}
	return slices.Replace(held, i, j, r)
}
