package forwarder

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/otas/otas-sniff/httpparse"
)

// benchJSONBody is a dense JSON document of about size bytes.
func benchJSONBody(size int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"items":[`)
	for i := 0; sb.Len() < size-2; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":%d,"name":"item-%d","price":%d.%02d,"tags":["a","b"]}`, 100000+i*7919, i, i*13%1000, i%100)
	}
	sb.WriteString("]}")
	return []byte(sb.String())
}

// BenchmarkBuild builds the event of a typical API exchange, with its path
// template as the binary makes it: an id in the path, a query string, JSON
// bodies of 1.5 and 3 KB, five or six headers each way.
func BenchmarkBuild(b *testing.B) {
	reqHeader := httpparse.Header{
		{Name: "Host", Value: "api.bench.test"},
		{Name: "User-Agent", Value: "bench/1.0"},
		{Name: "Content-Type", Value: "application/json"},
		{Name: "Authorization", Value: "Bearer bench-token-42"},
		{Name: SessionTokenHeader, Value: "eyJhbGciOiJIUzI1NiJ9.eyJhZ2VudF9pZCI6ImJlbmNoIn0.YmVuY2gtc2lnbmF0dXJl"},
		{Name: "Content-Length", Value: "1500"},
	}
	respHeader := httpparse.Header{
		{Name: "Date", Value: "Thu, 01 Jan 2026 00:00:00 GMT"},
		{Name: "Content-Type", Value: "application/json"},
		{Name: "Content-Length", Value: "3000"},
		{Name: "Server", Value: "uvicorn"},
		{Name: "X-Request-Id", Value: "0123456789abcdef0123456789abcdef"},
	}
	const target = "/api/v1/users/4711/orders?page=3&limit=20&sort=created_at&q=open+orders"
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	req := &httpparse.Message{Method: "POST", Proto: "HTTP/1.1", Body: benchJSONBody(1500), BodySize: 1500,
		Start: start, End: start.Add(time.Millisecond), Header: make(httpparse.Header, len(reqHeader))}
	resp := &httpparse.Message{StatusCode: 200, Proto: "HTTP/1.1", Body: benchJSONBody(3000), BodySize: 3000,
		Start: start.Add(5 * time.Millisecond), End: start.Add(7 * time.Millisecond), Header: make(httpparse.Header, len(respHeader))}
	ex := &httpparse.Exchange{Request: req, Response: resp, Source: "bench.pcap",
		Client: netip.MustParseAddrPort("10.1.2.3:51234"), Server: netip.MustParseAddrPort("10.1.2.4:8080")}
	f := New(Options{PathTemplates: true})
	b.ReportAllocs()
	for b.Loop() {
		// Build redacts in place: start every exchange from the captured values.
		req.Target = target
		copy(req.Header, reqHeader)
		copy(resp.Header, respHeader)
		if ev := f.Build(ex); ev.StatusCode != 200 {
			b.Fatal(ev.StatusCode)
		}
	}
}
