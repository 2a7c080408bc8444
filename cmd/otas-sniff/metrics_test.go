package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/netns"
)

// TestLiveMetrics scrapes the running binary's /metrics, /healthz and /readyz
// with a real HTTP client, and checks that a busy metrics address fails at start.
func TestLiveMetrics(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	const addr = "127.0.0.1:19090"
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000", "--metrics-addr", addr, "--stats-interval", "0")
	scraper := &http.Client{Transport: &http.Transport{DialContext: p.Server.DialContext}, Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := scraper.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get("/healthz")
	assert.Equal(t, http.StatusOK, code, body)
	code, body = get("/readyz")
	assert.Equal(t, http.StatusOK, code, "capture is open and there is no otas output to wait for: %s", body)

	c := newClient(p.Client)
	const n = 12
	for i := 0; i < n; i++ {
		status := 200
		if i%4 == 0 {
			status = 503
		}
		r := c.do(context.Background(), "GET", fmt.Sprintf("http://%s:8000/m/%d?status=%d", p.ServerV4, i, status), 0)
		require.NoError(t, r.err)
	}
	var metrics string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, metrics = get("/metrics")
		if metricValue(metrics, "otas_sniff_exchanges_total") >= n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.EqualValues(t, n, metricValue(metrics, "otas_sniff_exchanges_total"), metrics)
	assert.GreaterOrEqual(t, metricValue(metrics, "otas_sniff_packets_total"), float64(2*n), "a request and a response packet at least per exchange")
	assert.EqualValues(t, 9, metricValue(metrics, `otas_sniff_exchange_latency_seconds_count{status_class="2xx"}`))
	assert.EqualValues(t, 3, metricValue(metrics, `otas_sniff_exchange_latency_seconds_count{status_class="5xx"}`))
	assert.Contains(t, metrics, `otas_sniff_packets_dropped_total{where="kernel"}`)
	assert.Contains(t, metrics, "go_goroutines")

	// A second sniffer on the same address fails at start, naming it.
	out, err := p.Server.Command(context.Background(), sniffBin, "-i", p.ServerDev, "-p", "8000", "--metrics-addr", addr, "-o", "jsonl:/dev/null").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), addr)
	assert.Contains(t, string(out), "address already in use")

	s.stop(t)
	assert.Len(t, s.events(t), n)
}

// metricValue reads one sample from Prometheus text exposition; -1 when absent.
func metricValue(text, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}
