package httpparse

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/otas/otas-sniff/reassembly"
)

// waitingRequest is a typical API request: it is parsed completely and then
// waits for its response, which has not come yet.
const waitingRequest = "GET /api/v1/orders/12345?expand=items HTTP/1.1\r\nHost: api.example.com\r\n" +
	"User-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n"

// waitingConnHeap opens n connections through one factory, feeds each a whole
// request and no response, and returns the live heap per connection after a
// GC: what the parser costs for each connection waiting for its response.
func waitingConnHeap(tb testing.TB, n int, request string) float64 {
	tb.Helper()
	f := NewStreamFactory(Options{}, func(*Exchange) { tb.Error("nothing must be emitted before a response") })
	streams := make([]reassembly.Stream, n)
	// One buffer for every chunk, overwritten after each call, as the reassembler
	// reuses its own: copies the parser keeps are counted, the input is not.
	buf := make([]byte, len(request))
	ts := time.Unix(1_700_000_000, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range streams {
		c := reassembly.Conn{
			Initiator: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000),
			Responder: testServer,
			SYNSeen:   true,
			Source:    "bench",
		}
		s := f.NewStream(c)
		copy(buf, request)
		s.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: buf, Seen: ts, Completed: ts})
		streams[i] = s
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(streams)
	// A request counts once whole; one whose body has not come is still open.
	want := uint64(n)
	if !strings.HasSuffix(request, "\r\n\r\n") || strings.Contains(request, "Content-Length") {
		want = 0
	}
	if got := f.Stats(); got.Requests != want || got.Exchanges != 0 || got.ParseErrors != 0 {
		tb.Fatalf("stats %+v: want %d requests parsed and none handed on", got, want)
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkWaitingConnMemory reports the live heap per connection that holds
// one parsed request waiting for its response (heap-B/conn), for 50,000
// connections at once. Run with -benchtime=1x: it measures memory, not time.
func BenchmarkWaitingConnMemory(b *testing.B) {
	var perConn float64
	for range b.N {
		perConn = waitingConnHeap(b, 50_000, waitingRequest)
	}
	b.ReportMetric(perConn, "heap-B/conn")
}

// TestWaitingConnMemory bounds the heap a connection holds while its request
// waits for the response. About 640 bytes of it are the request itself: one
// allocation for the pending exchange, the Message and its header fields, one
// for the head's text; the rest is the stream with its two directions. A
// waiting connection cost about 1,700 bytes before directions kept their
// mid-message state out of line.
func TestWaitingConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	got := waitingConnHeap(t, 20_000, waitingRequest)
	t.Logf("%.0f heap bytes per waiting connection", got)
	assert.LessOrEqual(t, got, 1000.0, "heap bytes per connection waiting for its response")
}

// TestDeclaredBodyNotReserved: a request that declares a 100 KB body and sends
// none of it holds a few KiB, not the 100 KiB its Content-Length asks for, so
// that many such connections cannot make the parser hold what was never sent.
func TestDeclaredBodyNotReserved(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 connections")
	}
	req := "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
	got := waitingConnHeap(t, 5_000, req)
	t.Logf("%.0f heap bytes per connection waiting for its declared body", got)
	assert.LessOrEqual(t, got, 7168.0, "heap bytes per connection (the reserve, the head, the stream and its mid-message state)")
}
