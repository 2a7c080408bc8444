package forwarder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func endpointEvent(method, path string, status int, latencyMS float64) *Event {
	return &Event{Method: method, Path: path, StatusCode: status, LatencyMS: latencyMS}
}

func TestEndpointStatsSummaries(t *testing.T) {
	s := NewEndpointStats(nil, 0)
	// GET /api/users/{id}: 10 exchanges, latencies 1..10 ms, two 404s, one 503.
	for i := 1; i <= 10; i++ {
		status := 200
		switch i {
		case 3, 7:
			status = 404
		case 9:
			status = 503
		}
		s.Observe(endpointEvent("GET", fmt.Sprintf("/api/users/%d", i), status, float64(i)))
	}
	// POST /api/orders: 4 exchanges, one never answered.
	s.Observe(endpointEvent("POST", "/api/orders", 201, 40))
	s.Observe(endpointEvent("POST", "/api/orders", 201, 20))
	s.Observe(endpointEvent("POST", "/api/orders", 201, 30))
	s.Observe(endpointEvent("POST", "/api/orders", 0, 0))
	// A template set by Enrich wins over templating the path.
	pre := endpointEvent("GET", "/raw/abc", 200, 1)
	pre.Metadata.PathTemplate = "/raw/{name}"
	s.Observe(pre)

	got := s.Summaries()
	require.Len(t, got, 3)
	tests := []struct {
		want EndpointSummary
	}{
		{EndpointSummary{Method: "GET", Path: "/api/users/{id}", Count: 10, ClientErrorShare: 0.2, ServerErrorShare: 0.1,
			P50: 5 * time.Millisecond, P95: 10 * time.Millisecond, P99: 10 * time.Millisecond}},
		{EndpointSummary{Method: "POST", Path: "/api/orders", Count: 4, NoResponseShare: 0.25,
			P50: 30 * time.Millisecond, P95: 40 * time.Millisecond, P99: 40 * time.Millisecond}},
		{EndpointSummary{Method: "GET", Path: "/raw/{name}", Count: 1,
			P50: time.Millisecond, P95: time.Millisecond, P99: time.Millisecond}},
	}
	for i, tt := range tests {
		t.Run(tt.want.Method+" "+tt.want.Path, func(t *testing.T) {
			assert.Equal(t, tt.want, got[i])
		})
	}
}

func TestLatencyDigestExactPercentiles(t *testing.T) {
	tests := []struct {
		name          string
		samples       []float64
		p50, p95, p99 float64
	}{
		{"empty", nil, 0, 0, 0},
		{"one", []float64{7}, 7, 7, 7},
		{"two", []float64{9, 1}, 1, 9, 9},
		{"1 to 100", seq(1, 100), 50, 95, 99},
		{"1 to 512 still exact", seq(1, 512), 256, 487, 507},
		{"negative clamps to zero", []float64{-3}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d latencyDigest
			for _, v := range tt.samples {
				d.add(v)
			}
			assert.Nil(t, d.buckets, "no histogram below the exact limit")
			assert.Equal(t, tt.p50, d.quantile(0.50))
			assert.Equal(t, tt.p95, d.quantile(0.95))
			assert.Equal(t, tt.p99, d.quantile(0.99))
		})
	}
}

func seq(from, to int) []float64 {
	var out []float64
	for i := from; i <= to; i++ {
		out = append(out, float64(i))
	}
	return out
}

func TestLatencyDigestHistogramBoundsError(t *testing.T) {
	tests := []struct {
		name string
		// value returns the i-th of n samples, in ms.
		value func(i, n int) float64
		n     int
	}{
		{"uniform 1µs..100ms", func(i, n int) float64 { return 100 * float64(i+1) / float64(n) }, 100_000},
		{"long tail", func(i, n int) float64 {
			if i%100 == 0 {
				return 5000 + float64(i%7)
			}
			return 3 + float64(i%11)/10
		}, 50_000},
		{"reversed", func(i, n int) float64 { return float64(n-i) / 10 }, 20_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d latencyDigest
			all := make([]float64, 0, tt.n)
			for i := range tt.n {
				v := tt.value(i, tt.n)
				d.add(v)
				all = append(all, v)
			}
			require.NotNil(t, d.buckets)
			assert.Nil(t, d.exact, "the exact samples are freed once folded into the histogram")
			assert.Len(t, d.buckets, latencyBuckets)
			var exact latencyDigest
			exact.exact = all // quantile over every sample, computed exactly
			exact.n = len(all)
			for _, q := range []float64{0.5, 0.95, 0.99} {
				want, got := exact.quantile(q), d.quantile(q)
				assert.InEpsilon(t, want, got, 0.021, "q%.2f: want %v got %v", q, want, got)
			}
		})
	}
}

func TestLatencyBucketsCoverAnHour(t *testing.T) {
	assert.Equal(t, 0, bucketOf(0))
	assert.Equal(t, 1, bucketOf(latencyFloorMS))
	assert.LessOrEqual(t, bucketOf(3600e3), latencyBuckets-1)
	assert.Greater(t, bucketOf(3600e3), bucketOf(3000e3), "an hour is not clamped")
	assert.Equal(t, latencyBuckets-1, bucketOf(1e12), "longer lands in the last bucket")
	// Each bucket is at most 4% wide, so its middle is within 2% of any member.
	for _, ms := range []float64{0.0123, 1, 17.5, 999, 123456} {
		i := bucketOf(ms)
		lower := latencyFloorMS * math.Pow(latencyGrowth, float64(i-1))
		assert.LessOrEqual(t, lower, ms*(1+1e-9))
		assert.Greater(t, lower*latencyGrowth, ms*(1-1e-9))
	}
}

func TestEndpointStatsBoundsEndpoints(t *testing.T) {
	s := NewEndpointStats(nil, 0)
	s.maxEndpoints = 3
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e", "/a", "/e"} {
		s.Observe(endpointEvent("GET", p, 200, 1))
	}
	got := s.Summaries()
	require.Len(t, got, 4)
	assert.Equal(t, EndpointSummary{Method: "GET", Path: "/a", Count: 2, P50: time.Millisecond, P95: time.Millisecond, P99: time.Millisecond}, got[0])
	assert.Equal(t, "*", got[3].Method)
	assert.Equal(t, OtherEndpoints, got[3].Path)
	assert.Equal(t, 3, got[3].Count, "/d and /e twice")
}

func TestEndpointStatsConcurrentObserve(t *testing.T) {
	s := NewEndpointStats(nil, 0)
	const workers, each = 8, 1000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				status := 200
				if i%10 == 0 {
					status = 500
				}
				require.NoError(t, s.Write(context.Background(), endpointEvent("GET", fmt.Sprintf("/w/%d/items/%d", w, i), status, float64(i%50))))
			}
		})
	}
	wg.Wait()
	got := s.Summaries()
	require.Len(t, got, 1)
	assert.Equal(t, "/w/{id}/items/{id}", got[0].Path)
	assert.Equal(t, workers*each, got[0].Count)
	assert.InDelta(t, 0.1, got[0].ServerErrorShare, 1e-9)
}

func TestEndpointStatsRender(t *testing.T) {
	s := NewEndpointStats(nil, 0)
	for i := 1; i <= 40; i++ {
		status := 200
		if i%8 == 0 {
			status = 500
		}
		s.Observe(endpointEvent("GET", fmt.Sprintf("/api/v1/users/%d", i), status, float64(i)*1.5))
	}
	for i := 1; i <= 12; i++ {
		status := 201
		if i%4 == 0 {
			status = 422
		}
		s.Observe(endpointEvent("POST", "/api/v1/orders", status, 250+float64(i)*100))
	}
	s.Observe(endpointEvent("DELETE", "/api/v1/orders/9f1c0e4a-77b2-4c1e-9a0b-2d9e1f3c5a77", 204, 0.4))
	s.Observe(endpointEvent("GET", "/healthz", 0, 0))

	tests := []struct {
		name string
		top  int
		want string
	}{
		{"all", 0, "" +
			"METHOD  ENDPOINT             COUNT    4XX    5XX  NO RESP     P50     P95     P99\n" +
			"GET     /api/v1/users/{id}      40      -  12.5%        -  30.0ms  57.0ms  60.0ms\n" +
			"POST    /api/v1/orders          12  25.0%      -        -   850ms   1.45s   1.45s\n" +
			"DELETE  /api/v1/orders/{id}      1      -      -        -   400µs   400µs   400µs\n" +
			"GET     /healthz                 1      -      -   100.0%       -       -       -\n"},
		{"top 2", 2, "" +
			"METHOD  ENDPOINT            COUNT    4XX    5XX  NO RESP     P50     P95     P99\n" +
			"GET     /api/v1/users/{id}     40      -  12.5%        -  30.0ms  57.0ms  60.0ms\n" +
			"POST    /api/v1/orders         12  25.0%      -        -   850ms   1.45s   1.45s\n" +
			"... 2 more endpoints with 2 exchanges\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, s.Render(&buf, tt.top))
			assert.Equal(t, tt.want, buf.String())
		})
	}
}

func TestEndpointStatsRenderEmpty(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, NewEndpointStats(nil, 0).Render(&buf, 5))
	assert.Equal(t, "no exchanges\n", buf.String())
}

func TestEndpointStatsSinkRendersOnClose(t *testing.T) {
	var buf bytes.Buffer
	s := NewEndpointStats(&buf, 1)
	var sink Sink = s
	require.NoError(t, sink.Write(context.Background(), endpointEvent("GET", "/a/1", 200, 2)))
	require.NoError(t, sink.Write(context.Background(), endpointEvent("GET", "/b", 200, 2)))
	require.NoError(t, sink.Write(context.Background(), endpointEvent("GET", "/a/2", 200, 2)))
	require.NoError(t, sink.Close(context.Background()))
	require.NoError(t, sink.Close(context.Background()))
	out := buf.String()
	assert.Equal(t, 1, strings.Count(out, "METHOD"), "rendered once")
	assert.Contains(t, out, "/a/{id}")
	assert.NotContains(t, out, "GET     /b")
	assert.Contains(t, out, "... 1 more endpoint with 1 exchange\n")

	var none bytes.Buffer
	quiet := NewEndpointStats(nil, 0)
	require.NoError(t, quiet.Write(context.Background(), endpointEvent("GET", "/a", 200, 1)))
	require.NoError(t, quiet.Close(context.Background()))
	assert.Empty(t, none.String())
}

func TestFormatLatency(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "-"},
		{850 * time.Microsecond, "850µs"},
		{12345 * time.Microsecond, "12.3ms"},
		{340 * time.Millisecond, "340ms"},
		{2514 * time.Millisecond, "2.51s"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, formatLatency(tt.d))
		})
	}
}

// The table keeps copies of its keys: event strings share the buffers of the
// messages and of the event slabs, which a key kept for the whole run must not
// hold.
func TestEndpointKeysAreCopies(t *testing.T) {
	s := NewEndpointStats(io.Discard, 10)
	ev := &Event{Method: "GET", Path: "/api/users/42", Metadata: Metadata{PathTemplate: "/api/users/{id}"}, StatusCode: 200}
	s.Observe(ev)
	s.Observe(ev)
	require.Len(t, s.byEndpoint, 1)
	for key, st := range s.byEndpoint {
		assert.Equal(t, endpointKey{method: "GET", path: "/api/users/{id}"}, key)
		assert.NotSame(t, unsafe.StringData(ev.Metadata.PathTemplate), unsafe.StringData(key.path))
		assert.NotSame(t, unsafe.StringData(ev.Method), unsafe.StringData(key.method))
		assert.Equal(t, 2, st.count)
	}
}
