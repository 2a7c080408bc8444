package httpparse

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

// FuzzSplitInvariance: the parser must give exactly the same exchanges and
// counters however TCP cut the two byte streams, for any bytes, not only for
// well-formed messages (FuzzStream only checks that nothing panics). The
// client's bytes are fed before the server's, as in a capture where requests
// come first; each side is cut at random points chosen by seed, and also one
// byte at a time.
func FuzzSplitInvariance(f *testing.F) {
	f.Add(robustClient, robustServer, uint64(1))
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), uint64(2))
	f.Add([]byte("garbage\x00\xffGET /x HTTP/1.1\r\n\r\n"), []byte("junk HTTP/1.1 204 No Content\r\n\r\n"), uint64(3))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), []byte("HTTP/1.1 400 Bad\r\n\r\n"), uint64(4))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), []byte{}, uint64(5))
	f.Add([]byte("\x16\x03\x01\x00\x10\x01\x00\x00\x0c\x03\x03"), []byte("\x16\x03\x03\x00\x02\x02\x00"), uint64(6))
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64) {
		if len(client)+len(server) > 4096 {
			return // one byte per chunk below is quadratic in the worst case
		}
		opts := Options{MaxBodyBytes: 16, MaxHeaderBytes: 256, MaxHeaders: 8}
		steps := []step{cli(0, string(client)), srv(0, string(server))}
		whole := replay(opts, steps, reassembly.Closed, nil)
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		total := len(client) + len(server)
		cuts := map[int]bool{}
		for k := 1; k < total; k++ {
			if rng.IntN(4) == 0 {
				cuts[k] = true
			}
		}
		require.Equal(t, whole, replay(opts, steps, reassembly.Closed, cuts), "random cuts %v", cuts)
		every := map[int]bool{}
		for k := 1; k < total; k++ {
			every[k] = true
		}
		require.Equal(t, whole, replay(opts, steps, reassembly.Closed, every), "one byte per chunk")
		// Each exchange released as soon as it is seen, its buffers poisoned
		// and handed to the next messages: what every exchange said when it
		// was handed on is the same.
		var want []string
		for _, ex := range whole.exchanges {
			want = append(want, snapshot(ex))
		}
		require.Equal(t, want, replayReleasing(opts, steps, cuts), "released at once, random cuts %v", cuts)
	})
}

// replayReleasing is replay with every exchange snapshotted and released as
// it is handed on, into a pool that poisons what it gets back.
func replayReleasing(opts Options, steps []step, cuts map[int]bool) []string {
	var got []string
	f := NewStreamFactory(opts, func(ex *Exchange) {
		got = append(got, snapshot(ex))
		ex.Release()
	})
	f.bufs.poison = true
	drive(f, steps, reassembly.Closed, cuts)
	return got
}

// TestSplitSkippedBytesOversizedHead is the input FuzzSplitInvariance found
// (testdata/fuzz/FuzzSplitInvariance/seed-6669a54bfc09cf57): a head larger
// than MaxHeaderBytes that never ends counted none of its bytes as SkippedBytes
// when it arrived in one piece, and 257-258 when cut. Now it counts all of
// them, however it is cut.
func TestSplitSkippedBytesOversizedHead(t *testing.T) {
	opts := Options{MaxBodyBytes: 16, MaxHeaderBytes: 256, MaxHeaders: 8}
	head := "GET /h HTTP/1.1\r\nX-A: " + strings.Repeat("a", 300) + "\r\n"
	steps := []step{cli(0, head)}
	whole := replay(opts, steps, reassembly.Closed, nil)
	assert.Empty(t, whole.exchanges)
	assert.EqualValues(t, 1, whole.stats.OversizedHeaders)
	assert.EqualValues(t, len(head), whole.stats.SkippedBytes, "every byte of the head, up to the close")
	assert.EqualValues(t, 1, whole.stats.NotHTTP)
	every := map[int]bool{}
	for k := 1; k < len(head); k++ {
		every[k] = true
	}
	require.Equal(t, whole, replay(opts, steps, reassembly.Closed, every), "one byte per chunk")
	for k := 1; k < len(head); k++ {
		require.Equal(t, whole, replay(opts, steps, reassembly.Closed, map[int]bool{k: true}), "cut at %d", k)
	}
}

// TestSplitLimits checks the limits that bound what the parser buffers: where
// a header block, trailer section or chunk-size line is cut, which bytes are
// scanned again and what is counted must not depend on where TCP cut the
// bytes (TestSplitSkippedBytesOversizedHead has a head that never ends).
// Inputs over a few KiB are too long for runCase's every-offset cuts, so each
// case is replayed whole, one byte per chunk, in MSS-sized chunks, cut around
// the limit and with random cuts.
func TestSplitLimits(t *testing.T) {
	const limit = 256
	opts := Options{MaxBodyBytes: 16, MaxHeaderBytes: limit, MaxHeaders: 8}
	// A request line inside the first MaxHeaderBytes of a block too large: the
	// bytes are dropped unread, not rescanned.
	hidden := "GET /h HTTP/1.1\r\nX-A: " + strings.Repeat("a", 200) + "\r\nGET /x HTTP/1.1\r\nX-B: " + strings.Repeat("b", 50) + "\r\n\r\n"
	trailers := "X-T: " + strings.Repeat("t", 290) + "\r\n\r\n"
	chunkLine := "1;ext=" + strings.Repeat("e", 5000) + "\r\nx\r\n0\r\n\r\n"
	garbage := strings.Repeat("garbage ", 2500) // longer than the resync window
	ok0 := "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	cases := []parseCase{
		{
			name: "request line hidden in an oversized head",
			steps: []step{
				cli(0, hidden),
				srv(ms, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n"),
				cli(2*ms, "GET /next HTTP/1.1\r\n\r\n"),
				srv(3*ms, "HTTP/1.1 204 No Content\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /next -> 204"}, summaries(r))
				assert.EqualValues(t, 1, r.stats.OversizedHeaders)
				assert.EqualValues(t, len(hidden), r.stats.SkippedBytes)
				assert.EqualValues(t, 1, r.stats.UnmatchedResponses)
				assert.Equal(t, t0.Add(2*ms), r.exchanges[0].Request.Start)
			},
		},
		{
			name: "trailer section over the limit that does end",
			steps: []step{
				cli(0, "POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"+trailers),
				srv(ms, ok0),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /t -> 200 !invalid request: trailer section too large"}, summaries(r))
				assert.Contains(t, r.exchanges[0].Request.Anomalies, anomalyInvalidFraming)
				assert.EqualValues(t, 1, r.stats.OversizedHeaders)
				assert.EqualValues(t, len(trailers), r.stats.SkippedBytes)
			},
		},
		{
			name: "chunk-size line over 4 KiB",
			steps: []step{
				cli(0, "GET /c HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+chunkLine),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /c !invalid response: chunk-size line too long"}, summaries(r))
				assert.EqualValues(t, 1, r.stats.ParseErrors)
				assert.EqualValues(t, len(chunkLine), r.stats.SkippedBytes)
			},
		},
		{
			name: "garbage longer than the scan window, then the close",
			steps: []step{
				cli(0, "GET /a HTTP/1.1\r\n\r\n"),
				srv(ms, ok0),
				cli(2*ms, garbage),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200"}, summaries(r))
				assert.EqualValues(t, len(garbage), r.stats.SkippedBytes)
			},
		},
		{
			name: "garbage being scanned when the connection switches protocol",
			steps: []step{
				cli(0, "GET /a HTTP/1.1\r\n\r\n"+garbage),
				srv(ms, "HTTP/1.1 101 Switching Protocols\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 101 upgraded"}, summaries(r))
				assert.EqualValues(t, len(garbage), r.stats.SkippedBytes)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			whole := replay(opts, c.steps, reassembly.Closed, nil)
			c.check(t, whole)
			total := totalBytes(c.steps)
			cuttings := map[string]map[int]bool{"one byte per chunk": {}, "MSS-sized chunks": {}}
			for k := 1; k < total; k++ {
				cuttings["one byte per chunk"][k] = true
				if k%1448 == 0 {
					cuttings["MSS-sized chunks"][k] = true
				}
			}
			for _, k := range []int{limit - 1, limit, limit + 1} {
				cuttings["cut at "+itoa(k)] = map[int]bool{k: true}
			}
			rng := rand.New(rand.NewPCG(uint64(total), 11))
			for i := range 10 {
				cuts := map[int]bool{}
				for k := 1; k < total; k++ {
					if rng.IntN(64) == 0 {
						cuts[k] = true
					}
				}
				cuttings["random "+itoa(i+1)] = cuts
			}
			for name, cuts := range cuttings {
				require.Equal(t, whole, replay(opts, c.steps, reassembly.Closed, cuts), name)
			}
		})
	}
}
