package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeStages stands in for the pipeline: counters the test moves and the
// metrics read through Sources.
type fakeStages struct {
	packets atomic.Uint64
	open    atomic.Int64
	calls   atomic.Int64
}

func (f *fakeStages) sources() Sources {
	return Sources{
		Capture: func() CaptureStats {
			f.calls.Add(1)
			return CaptureStats{Packets: f.packets.Load(), KernelDrops: 3, InterfaceDrops: 2, QueueDrops: 1}
		},
		Streams: func() StreamStats { return StreamStats{Streams: 40, Open: f.open.Load(), Gaps: 5} },
		Parser: func() ParserStats {
			return ParserStats{Exchanges: 120, ParseErrors: 4, UnmatchedRequests: 6, UnmatchedResponses: 7}
		},
		Upload: func() UploadStats {
			return UploadStats{Uploaded: 100, Failed: 8, Spooled: 9, Dropped: 10, QueueDepth: 11}
		},
	}
}

func startServer(t *testing.T, m *Metrics, ready func() (bool, string)) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Serve(ctx, "127.0.0.1:0", m.Registry(), ready)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		assert.NoError(t, srv.Shutdown(sctx))
	})
	return srv
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

// scrape fetches /metrics and parses the exposition text.
func scrape(t *testing.T, srv *Server) map[string]*dto.MetricFamily {
	t.Helper()
	status, body, header := get(t, "http://"+srv.Addr()+"/metrics")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err, body)
	return families
}

// value returns the value of the metric in family name whose labels include
// labels (name=value pairs).
func value(t *testing.T, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	fam, ok := families[name]
	require.True(t, ok, "metric %s missing", name)
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	require.Failf(t, "no series", "%s%v", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestMetricsExposition(t *testing.T) {
	stages := &fakeStages{}
	stages.packets.Store(1000)
	stages.open.Store(12)
	m := New(stages.sources())
	srv := startServer(t, m, nil)

	families := scrape(t, srv)
	tests := []struct {
		name   string
		labels []string
		kind   dto.MetricType
		want   float64
	}{
		{"otas_sniff_packets_total", nil, dto.MetricType_COUNTER, 1000},
		{"otas_sniff_packets_dropped_total", []string{"where", "kernel"}, dto.MetricType_COUNTER, 3},
		{"otas_sniff_packets_dropped_total", []string{"where", "interface"}, dto.MetricType_COUNTER, 2},
		{"otas_sniff_packets_dropped_total", []string{"where", "queue"}, dto.MetricType_COUNTER, 1},
		{"otas_sniff_tcp_streams_total", nil, dto.MetricType_COUNTER, 40},
		{"otas_sniff_open_streams", nil, dto.MetricType_GAUGE, 12},
		{"otas_sniff_capture_gaps_total", nil, dto.MetricType_COUNTER, 5},
		{"otas_sniff_exchanges_total", nil, dto.MetricType_COUNTER, 120},
		{"otas_sniff_parse_errors_total", nil, dto.MetricType_COUNTER, 4},
		{"otas_sniff_unmatched_requests_total", nil, dto.MetricType_COUNTER, 6},
		{"otas_sniff_unmatched_responses_total", nil, dto.MetricType_COUNTER, 7},
		{"otas_sniff_events_uploaded_total", nil, dto.MetricType_COUNTER, 100},
		{"otas_sniff_events_failed_total", nil, dto.MetricType_COUNTER, 8},
		{"otas_sniff_events_spooled_total", nil, dto.MetricType_COUNTER, 9},
		{"otas_sniff_events_dropped_total", nil, dto.MetricType_COUNTER, 10},
		{"otas_sniff_upload_queue_depth", nil, dto.MetricType_GAUGE, 11},
		{"otas_sniff_exchange_latency_seconds", []string{"status_class", "2xx"}, dto.MetricType_HISTOGRAM, 0},
		{"otas_sniff_exchange_latency_seconds", []string{"status_class", "none"}, dto.MetricType_HISTOGRAM, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name+strings.Join(tt.labels, "="), func(t *testing.T) {
			assert.Equal(t, tt.want, value(t, families, tt.name, tt.labels...))
			assert.Equal(t, tt.kind, families[tt.name].GetType())
			assert.NotEmpty(t, families[tt.name].GetHelp())
		})
	}
	assert.Contains(t, families, "go_goroutines", "runtime metrics are registered too")
	assert.Equal(t, int64(1), stages.calls.Load(), "one snapshot per source per scrape")

	// Values are read at scrape time.
	stages.packets.Store(2500)
	stages.open.Store(3)
	families = scrape(t, srv)
	assert.Equal(t, 2500.0, value(t, families, "otas_sniff_packets_total"))
	assert.Equal(t, 3.0, value(t, families, "otas_sniff_open_streams"))
}

func TestMetricsNilSourcesLeftOut(t *testing.T) {
	m := New(Sources{Parser: func() ParserStats { return ParserStats{Exchanges: 2} }})
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	assert.True(t, names["otas_sniff_exchanges_total"])
	assert.False(t, names["otas_sniff_packets_total"])
	assert.False(t, names["otas_sniff_events_uploaded_total"])
	assert.True(t, names["otas_sniff_exchange_latency_seconds"])
}

func TestObserveExchange(t *testing.T) {
	m := New(Sources{})
	m.ObserveExchange(200, 3*time.Millisecond)
	m.ObserveExchange(204, 40*time.Millisecond)
	m.ObserveExchange(503, 2*time.Second)
	m.ObserveExchange(0, 0)
	srv := startServer(t, m, nil)
	families := scrape(t, srv)

	fam := families["otas_sniff_exchange_latency_seconds"]
	require.NotNil(t, fam)
	tests := []struct {
		class string
		count uint64
		sum   float64
		// le5ms is the cumulative count at the 5ms bucket.
		le5ms uint64
	}{
		{"2xx", 2, 0.043, 1},
		{"5xx", 1, 2, 0},
		{"none", 1, 0, 1},
		{"4xx", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.class, func(t *testing.T) {
			var h *dto.Histogram
			for _, mm := range fam.GetMetric() {
				if hasLabels(mm, []string{"status_class", tt.class}) {
					h = mm.GetHistogram()
				}
			}
			require.NotNil(t, h)
			assert.Equal(t, tt.count, h.GetSampleCount())
			assert.InDelta(t, tt.sum, h.GetSampleSum(), 1e-9)
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == 0.005 {
					assert.Equal(t, tt.le5ms, b.GetCumulativeCount())
				}
			}
		})
	}
}

func TestStatusClass(t *testing.T) {
	tests := map[int]string{0: "none", 100: "1xx", 101: "1xx", 200: "2xx", 299: "2xx", 302: "3xx", 404: "4xx", 500: "5xx", 599: "5xx", 600: "other", 42: "other", -1: "other"}
	for code, want := range tests {
		assert.Equal(t, want, StatusClass(code), "code %d", code)
	}
}

func TestProbes(t *testing.T) {
	var ready atomic.Bool
	srv := startServer(t, New(Sources{}), func() (bool, string) {
		if ready.Load() {
			return true, ""
		}
		return false, "capture not started"
	})
	base := "http://" + srv.Addr()
	tests := []struct {
		name     string
		ready    bool
		path     string
		wantCode int
		wantBody string
	}{
		{"healthz while not ready", false, "/healthz", 200, "ok\n"},
		{"readyz not ready", false, "/readyz", 503, "capture not started\n"},
		{"readyz ready", true, "/readyz", 200, "ready\n"},
		{"healthz while ready", true, "/healthz", 200, "ok\n"},
		{"unknown path", true, "/nope", 404, "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			code, body, _ := get(t, base+tt.path)
			assert.Equal(t, tt.wantCode, code)
			assert.Equal(t, tt.wantBody, body)
		})
	}
}

func TestServeAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	addr := taken.Addr().String()

	srv, err := Serve(context.Background(), addr, New(Sources{}).Registry(), nil)
	require.Error(t, err)
	assert.Nil(t, srv)
	assert.Contains(t, err.Error(), "metrics server: listen on "+addr)
	assert.Contains(t, err.Error(), "address already in use")
}

func TestServeBadAddress(t *testing.T) {
	_, err := Serve(context.Background(), "127.0.0.1:notaport", New(Sources{}).Registry(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:notaport")
}

func TestServerStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Serve(ctx, "127.0.0.1:0", New(Sources{}).Registry(), nil)
	require.NoError(t, err)
	code, _, _ := get(t, "http://"+srv.Addr()+"/healthz")
	require.Equal(t, 200, code)
	cancel()
	select {
	case <-srv.done:
	case <-time.After(5 * time.Second):
		t.Fatal("server still running after its context ended")
	}
	_, err = net.DialTimeout("tcp", srv.Addr(), time.Second)
	assert.Error(t, err, "the port is released")
	assert.NoError(t, srv.Shutdown(context.Background()), "a second shutdown is harmless")
}

func TestMetricsInstancesAreIndependent(t *testing.T) {
	a, b := New(Sources{}), New(Sources{})
	a.ObserveExchange(200, time.Millisecond)
	fa, err := a.Registry().Gather()
	require.NoError(t, err)
	fb, err := b.Registry().Gather()
	require.NoError(t, err)
	count := func(fams []*dto.MetricFamily) uint64 {
		for _, f := range fams {
			if f.GetName() == "otas_sniff_exchange_latency_seconds" {
				for _, m := range f.GetMetric() {
					if hasLabels(m, []string{"status_class", "2xx"}) {
						return m.GetHistogram().GetSampleCount()
					}
				}
			}
		}
		return 0
	}
	assert.Equal(t, uint64(1), count(fa))
	assert.Equal(t, uint64(0), count(fb))
}
