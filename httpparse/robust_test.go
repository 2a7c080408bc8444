package httpparse

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

// feedRandomly replays client and server bytes in random interleaved chunks
// with random gaps, FINs and a random close; it must never panic and every
// emitted exchange must carry a request.
func feedRandomly(t testing.TB, rng *rand.Rand, client, server []byte, opts Options) {
	f := NewStreamFactory(opts, func(ex *Exchange) {
		if ex.Request == nil {
			t.Fatalf("exchange without request: %+v", ex)
		}
	})
	s := f.NewStream(testConn())
	ts := t0
	bufs := [2][]byte{client, server}
	for len(bufs[0])+len(bufs[1]) > 0 {
		side := rng.IntN(2)
		if len(bufs[side]) == 0 {
			side = 1 - side
		}
		n := min(len(bufs[side]), 1+rng.IntN(64))
		ts = ts.Add(time.Duration(rng.IntN(3)) * time.Millisecond)
		switch rng.IntN(20) {
		case 0:
			s.Gap(reassembly.Side(side), n, ts)
		case 1:
			s.Gap(reassembly.Side(side), -1, ts)
		default:
			s.Data(reassembly.Chunk{Side: reassembly.Side(side), Bytes: bufs[side][:n], Seen: ts, Completed: ts})
		}
		bufs[side] = bufs[side][n:]
		if rng.IntN(200) == 0 {
			s.End(reassembly.Side(side), ts)
		}
	}
	s.Close(reassembly.CloseReason(rng.IntN(5)), ts)
}

func mutate(rng *rand.Rand, b []byte) []byte {
	b = bytes.Clone(b)
	for range rng.IntN(8) {
		if len(b) == 0 {
			break
		}
		i := rng.IntN(len(b))
		switch rng.IntN(4) {
		case 0:
			b[i] = byte(rng.IntN(256))
		case 1:
			b = append(b[:i], b[i+1:]...)
		case 2:
			b = append(b[:i], append([]byte("\r\n"), b[i:]...)...)
		case 3:
			b = append(b[:i], append([]byte("HTTP/1.1 "), b[i:]...)...)
		}
	}
	return b
}

var robustClient = []byte("GET /a HTTP/1.1\r\nHost: h\r\n\r\n" +
	"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n" +
	"PUT /c HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello" +
	"HEAD /d HTTP/1.1\r\n\r\nGET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")

var robustServer = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n" +
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n" +
	"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" +
	"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00")

func TestNeverPanics(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		client, server := mutate(rng, robustClient), mutate(rng, robustServer)
		if i%10 == 0 {
			client = make([]byte, rng.IntN(2000))
			for j := range client {
				client[j] = byte(rng.IntN(256))
			}
		}
		opts := Options{MaxBodyBytes: 1 + rng.IntN(64), MaxHeaderBytes: 16 + rng.IntN(256), MaxHeaders: 1 + rng.IntN(8)}
		require.NotPanics(t, func() { feedRandomly(t, rng, client, server, opts) })
	}
}

func TestUnmutatedRobustStream(t *testing.T) {
	var got []string
	f := NewStreamFactory(Options{}, func(ex *Exchange) { got = append(got, summary(ex)) })
	s := f.NewStream(testConn())
	s.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: robustClient, Seen: t0, Completed: t0})
	s.Data(reassembly.Chunk{Side: reassembly.Responder, Bytes: robustServer, Seen: t0, Completed: t0})
	s.Close(reassembly.Closed, t0)
	assert.Equal(t, []string{"GET /a -> 200", "POST /b -> 200", "PUT /c ~100 -> 201", "HEAD /d -> 200", "GET /ws -> 101 upgraded"}, got)
}

func FuzzStream(f *testing.F) {
	f.Add(robustClient, robustServer, uint64(1))
	f.Add([]byte("\x16\x03\x01\x00"), []byte{}, uint64(2))
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64) {
		feedRandomly(t, rand.New(rand.NewPCG(seed, seed)), client, server, Options{MaxBodyBytes: 32, MaxHeaderBytes: 128, MaxHeaders: 4})
	})
}

func TestStatsReadConcurrently(t *testing.T) {
	f := NewStreamFactory(Options{}, func(*Exchange) {})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			s := f.NewStream(testConn())
			s.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: robustClient, Seen: t0, Completed: t0})
			s.Data(reassembly.Chunk{Side: reassembly.Responder, Bytes: robustServer, Seen: t0, Completed: t0})
			s.Close(reassembly.Closed, t0)
		}
	}()
	for {
		select {
		case <-done:
			st := f.Stats()
			assert.EqualValues(t, 200, st.Streams)
			assert.EqualValues(t, 1000, st.Exchanges)
			assert.EqualValues(t, 200, st.Upgrades)
			return
		default:
			_ = f.Stats()
		}
	}
}
