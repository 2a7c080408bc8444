package httpparse

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

// stale is a byte no test message holds: poisonHeap fills freed memory with it.
const stale = 0xA5

// poisonHeap allocates buffers of the sizes a message's buffers take, fills
// them with stale and lets them go, so that buffers allocated next without
// clearing (internal/unzeroed) are likely to be made of them.
func poisonHeap() {
	var keep [][]byte
	for _, size := range []int{48, 64, 100, 200, 300, 600, 1200, 2500, 4200, 5000, 9000, 20000, 40000, 70000} {
		for range 64 {
			keep = append(keep, bytes.Repeat([]byte{stale}, size))
		}
	}
	runtime.KeepAlive(keep)
	keep = nil
	runtime.GC()
}

// A message's head and body buffers are not cleared when allocated: every
// byte handed on must be one the parser wrote. Bodies cut by a close, holed
// by a gap, chunked, compressed, grown past the first reserve, and heads
// without bodies, each parsed on a heap full of stale bytes, are exactly the
// bytes sent.
func TestUnclearedBuffersNeverShow(t *testing.T) {
	big := strings.Repeat(`{"k":"v"},`, 900)
	tests := []struct {
		name  string
		steps []step
		want  string // the body of the exchange's last message with one
	}{
		{"cut by close", []step{
			cli(0, "POST /cut HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"+big[:1000]),
			fin(reassembly.Initiator, ms),
		}, big[:1000]},
		{"hole", []step{
			cli(0, "POST /hole HTTP/1.1\r\nContent-Length: 3000\r\n\r\n"+big[:1000]),
			gapOf(reassembly.Initiator, ms, 1000),
			cli(2*ms, big[:1000]),
			srv(3*ms, "HTTP/1.1 204 No Content\r\n\r\n"),
		}, big[:1000]},
		{"chunked", []step{
			cli(0, "GET /c HTTP/1.1\r\n\r\n"),
			srv(ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked([]byte(big), 700)),
		}, big},
		{"grown past the reserve", []step{
			cli(0, "GET /g HTTP/1.1\r\n\r\n"),
			srv(ms, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(big), big)),
		}, big},
		{"close-delimited", []step{
			cli(0, "GET /d HTTP/1.1\r\n\r\n"),
			srv(ms, "HTTP/1.1 200 OK\r\n\r\n"+big[:3000]),
			fin(reassembly.Responder, 2*ms),
		}, big[:3000]},
		{"heads only", []step{
			cli(0, "HEAD /h HTTP/1.1\r\nX-A: 1\r\n\r\n"),
			srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n"),
		}, ""},
		{"gzip", responseWith("Content-Encoding: gzip\r\n", compress(t, "gzip", []byte(big))), big},
		{"short", responseWith("", []byte(big[:50])), big[:50]},
	}
	for _, tt := range tests {
		for round := range 20 {
			poisonHeap()
			r := replay(Options{}, tt.steps, reassembly.EndOfCapture, map[int]bool{37: true, 1500 + round: true})
			require.Len(t, r.exchanges, 1, tt.name)
			ex := r.exchanges[0]
			var body []byte
			for _, m := range []*Message{ex.Request, ex.Response} {
				if m == nil {
					continue
				}
				text := fmt.Sprint(m.Method, m.Target, m.Proto, m.Reason, m.Header, m.Trailer)
				require.Equal(t, -1, strings.IndexByte(text, stale), "%s: stale byte in the head %q", tt.name, text)
				if m.Body != nil || m == ex.Request {
					body = m.Body
				}
			}
			require.Equal(t, tt.want, string(body), tt.name)
		}
	}
}
