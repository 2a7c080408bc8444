package httpparse

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

// Test harness: a connection is described as a sequence of steps (bytes of one
// side at a capture time, gaps, FINs) and replayed into a stream, whole and cut
// into pieces, since the parser must give the same result however TCP segmented
// the bytes.

type stepKind uint8

const (
	stepData stepKind = iota
	stepGap
	stepEnd
)

type step struct {
	kind stepKind
	side reassembly.Side
	data string
	n    int
	at   time.Duration
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func cli(at time.Duration, data string) step {
	return step{kind: stepData, side: reassembly.Initiator, data: data, at: at}
}

func srv(at time.Duration, data string) step {
	return step{kind: stepData, side: reassembly.Responder, data: data, at: at}
}

func gapOf(side reassembly.Side, at time.Duration, n int) step {
	return step{kind: stepGap, side: side, n: n, at: at}
}

func fin(side reassembly.Side, at time.Duration) step {
	return step{kind: stepEnd, side: side, at: at}
}

var (
	testClient = netip.MustParseAddrPort("10.0.0.1:40000")
	testServer = netip.MustParseAddrPort("10.0.0.2:80")
)

func testConn() reassembly.Conn {
	return reassembly.Conn{Initiator: testClient, Responder: testServer, SYNSeen: true, Source: "test.pcap"}
}

type result struct {
	exchanges []*Exchange
	stats     Stats
}

// replay feeds steps, each data step cut at the given global byte offsets.
func replay(opts Options, steps []step, reason reassembly.CloseReason, cuts map[int]bool) result {
	var got []*Exchange
	f := NewStreamFactory(opts, func(ex *Exchange) { got = append(got, ex) })
	drive(f, steps, reason, cuts)
	return result{exchanges: got, stats: f.Stats()}
}

// drive feeds steps to one stream of f, cut at cuts, and closes it.
func drive(f *StreamFactory, steps []step, reason reassembly.CloseReason, cuts map[int]bool) {
	s := f.NewStream(testConn())
	pos := 0
	for _, st := range steps {
		ts := t0.Add(st.at)
		switch st.kind {
		case stepGap:
			s.Gap(st.side, st.n, ts)
		case stepEnd:
			s.End(st.side, ts)
		case stepData:
			b := []byte(st.data)
			from := 0
			for i := 1; i < len(b); i++ {
				if cuts[pos+i] {
					feedChunk(s, st.side, b[from:i], ts)
					from = i
				}
			}
			feedChunk(s, st.side, b[from:], ts)
			pos += len(b)
		}
	}
	s.Close(reason, t0.Add(time.Hour))
}

// feedChunk hands the parser a copy of b and overwrites it after the call, as a
// reassembler reusing its buffer would, so retained references show up.
func feedChunk(s reassembly.Stream, side reassembly.Side, b []byte, ts time.Time) {
	buf := append([]byte(nil), b...)
	s.Data(reassembly.Chunk{Side: side, Bytes: buf, Seen: ts, Completed: ts})
	for i := range buf {
		buf[i] = '#'
	}
}

func totalBytes(steps []step) int {
	n := 0
	for _, st := range steps {
		n += len(st.data)
	}
	return n
}

type parseCase struct {
	name   string
	opts   Options
	steps  []step
	reason reassembly.CloseReason
	check  func(t *testing.T, r result)
}

// runCase checks the unsplit result, then asserts that every single cut and a
// set of random cuttings give exactly the same exchanges and counters.
func runCase(t *testing.T, c parseCase) {
	t.Helper()
	whole := replay(c.opts, c.steps, c.reason, nil)
	c.check(t, whole)
	total := totalBytes(c.steps)
	for k := 1; k < total; k++ {
		got := replay(c.opts, c.steps, c.reason, map[int]bool{k: true})
		require.Equal(t, whole, got, "split at offset %d", k)
	}
	rng := rand.New(rand.NewPCG(uint64(total), 7))
	for range 30 {
		cuts := map[int]bool{}
		for k := 1; k < total; k++ {
			if rng.IntN(8) == 0 {
				cuts[k] = true
			}
		}
		got := replay(c.opts, c.steps, c.reason, cuts)
		require.Equal(t, whole, got, "random cuts %v", cuts)
	}
	every := map[int]bool{}
	for k := 1; k < total; k++ {
		every[k] = true
	}
	require.Equal(t, whole, replay(c.opts, c.steps, c.reason, every), "one byte per chunk")
}
