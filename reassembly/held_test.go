package reassembly

import (
	"testing"

	gpr "github.com/gopacket/gopacket/reassembly"
	"github.com/stretchr/testify/assert"
)

func TestHeldRanges(t *testing.T) {
	// Near the top of the sequence space, so every case also wraps.
	const base = gpr.Sequence(0xffff_fff0)
	at := func(off int) gpr.Sequence { return base.Add(off) }
	rng := func(from, to int) seqRange { return seqRange{at(from), at(to)} }
	held := []seqRange{rng(10, 20), rng(30, 40)}
	tests := []struct {
		name       string
		from, to   int
		fin        bool
		wantOver   bool
		wantPieces []piece
		wantHeld   []seqRange // held after inserting [from, to)
	}{
		{name: "before, apart", from: 0, to: 5, wantHeld: []seqRange{rng(0, 5), rng(10, 20), rng(30, 40)}},
		{name: "before, touching", from: 0, to: 10, wantHeld: []seqRange{rng(0, 20), rng(30, 40)}},
		{name: "between, touching both", from: 20, to: 30, wantHeld: []seqRange{rng(10, 40)}},
		{name: "after", from: 45, to: 50, wantHeld: []seqRange{rng(10, 20), rng(30, 40), rng(45, 50)}},
		{
			name: "the start of a held range", from: 5, to: 15, wantOver: true,
			wantPieces: []piece{{off: 0, n: 5}}, wantHeld: []seqRange{rng(5, 20), rng(30, 40)},
		},
		{
			name: "the end of a held range", from: 15, to: 25, wantOver: true,
			wantPieces: []piece{{off: 5, n: 5}}, wantHeld: []seqRange{rng(10, 25), rng(30, 40)},
		},
		{
			name: "inside a held range", from: 12, to: 18, wantOver: true,
			wantPieces: nil, wantHeld: held,
		},
		{
			name: "inside a held range, with FIN", from: 12, to: 18, fin: true, wantOver: true,
			wantPieces: []piece{{off: 6, fin: true}}, wantHeld: held,
		},
		{
			name: "across both", from: 0, to: 50, fin: true, wantOver: true,
			wantPieces: []piece{{off: 0, n: 10}, {off: 20, n: 10}, {off: 40, n: 10, fin: true}},
			wantHeld:   []seqRange{rng(0, 50)},
		},
		{
			name: "exactly a held range", from: 30, to: 40, wantOver: true,
			wantPieces: nil, wantHeld: held,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := at(tt.from), at(tt.to)
			assert.Equal(t, tt.wantOver, overlaps(held, start, end))
			if tt.wantOver {
				assert.Equal(t, tt.wantPieces, cut(nil, held, start, end, tt.fin))
			}
			assert.Equal(t, tt.wantHeld, insertRange(append([]seqRange(nil), held...), seqRange{start, end}))
		})
	}
}

func TestDropBelow(t *testing.T) {
	const base = gpr.Sequence(0xffff_fff0)
	at := func(off int) gpr.Sequence { return base.Add(off) }
	tests := []struct {
		name    string
		nextSeq int
		want    []seqRange
	}{
		{"before everything", 0, []seqRange{{at(10), at(20)}, {at(30), at(40)}}},
		{"at the end of the first", 20, []seqRange{{at(30), at(40)}}},
		{"inside the second", 35, []seqRange{{at(35), at(40)}}},
		{"past everything", 40, []seqRange{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held := []seqRange{{at(10), at(20)}, {at(30), at(40)}}
			assert.Equal(t, tt.want, dropBelow(held, at(tt.nextSeq)))
		})
	}
}

func TestFits(t *testing.T) {
	// The held bytes straddle the wrap of 2^32.
	const base = gpr.Sequence(0xffff_fff0)
	at := func(off int) gpr.Sequence { return base.Add(off) }
	held := []seqRange{{at(0), at(100)}, {at(200), at(300)}}
	tests := []struct {
		name     string
		from, to int
		want     bool
	}{
		{"between", 120, 150, true},
		{"just within the span above", maxHeldSpan - 10, maxHeldSpan, true},
		{"just within the span below", 300 - maxHeldSpan, 310 - maxHeldSpan, true},
		{"past the span above", maxHeldSpan, maxHeldSpan + 10, false},
		{"past the span below", 299 - maxHeldSpan, 310 - maxHeldSpan, false},
		{"half the sequence space away", 1 << 31, 1<<31 + 10, false},
		{"three quarters away", 3 << 30, 3<<30 + 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, fits(held, at(tt.from), at(tt.to)))
		})
	}
	assert.True(t, fits(nil, at(1<<31), at(1<<31+10)), "anything fits when nothing is held")
	// Far from the held bytes and across the wrap of 2^32: Difference puts
	// the start after the held bytes and the end before them.
	far := []seqRange{{0x6a6a_69f8, 0x6a6a_69fb}}
	assert.False(t, fits(far, 0xffff_fffb, 0x14f))
}
