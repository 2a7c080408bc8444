package httpparse

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/otas/otas-sniff/reassembly"
)

// BenchmarkParseKeepAliveJSON parses one keep-alive connection carrying JSON
// requests and responses, delivered in MTU-sized chunks; MB/s counts both
// directions, allocs/exchange the heap allocations per exchange handed on.
func BenchmarkParseKeepAliveJSON(b *testing.B) {
	const exchanges = 200
	body := `{"user":{"id":12345,"name":"Ada Lovelace","email":"ada@example.com","roles":["admin","dev"]},"items":[` +
		strings.Repeat(`{"sku":"A-1","qty":2,"price":9.99},`, 20) + `{"sku":"END","qty":0,"price":0}]}`
	req := fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\n"+
		"Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nDate: Fri, 27 Nov 2026 03:00:00 GMT\r\nContent-Type: application/json\r\n"+
		"Cache-Control: no-store\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	chunks := func(s string) [][]byte {
		var out [][]byte
		for len(s) > 0 {
			n := min(1448, len(s))
			out = append(out, []byte(s[:n]))
			s = s[n:]
		}
		return out
	}
	reqChunks, respChunks := chunks(req), chunks(resp)
	b.SetBytes(int64(exchanges * (len(req) + len(resp))))
	b.ReportAllocs()
	emitted := 0
	f := NewStreamFactory(Options{}, func(*Exchange) { emitted++ })
	ts := time.Unix(1_700_000_000, 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		s := f.NewStream(testConn())
		for range exchanges {
			for _, c := range reqChunks {
				s.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: c, Seen: ts, Completed: ts})
			}
			for _, c := range respChunks {
				s.Data(reassembly.Chunk{Side: reassembly.Responder, Bytes: c, Seen: ts, Completed: ts})
			}
		}
		s.Close(reassembly.Closed, ts)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*exchanges), "allocs/exchange")
	if emitted != b.N*exchanges {
		b.Fatalf("emitted %d exchanges, want %d", emitted, b.N*exchanges)
	}
}
