// Package metrics exposes otas-sniff's counters in the Prometheus format and
// serves them over HTTP with liveness and readiness probes. The counters live in
// the pipeline's stages; the collectors here read snapshots of them through
// callbacks at scrape time, so the stages need no Prometheus code.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every otas-sniff metric name.
const Namespace = "otas_sniff"

// CaptureStats is a snapshot of the packet source's counters.
type CaptureStats struct {
	Packets        uint64 // packets read
	KernelDrops    uint64 // dropped by the kernel before capture
	InterfaceDrops uint64 // dropped by the network interface
	QueueDrops     uint64 // dropped because processing fell behind
}

// StreamStats is a snapshot of TCP reassembly's counters.
type StreamStats struct {
	Streams uint64 // TCP connections opened
	Open    int64  // connections open now
	Gaps    uint64 // holes in streams given up as lost
}

// ParserStats is a snapshot of the HTTP parser's counters.
type ParserStats struct {
	Exchanges          uint64 // request/response pairs emitted
	ParseErrors        uint64 // streams that were not valid HTTP
	UnmatchedRequests  uint64 // requests without a response
	UnmatchedResponses uint64 // responses without a request
}

// UploadStats is a snapshot of the OTAS uploader's counters.
type UploadStats struct {
	Uploaded   uint64 // events accepted by OTAS
	Failed     uint64 // events OTAS rejected or that failed for good
	Spooled    uint64 // events written to the disk spool to retry later
	Dropped    uint64 // events lost because the queue and spool were full
	QueueDepth int64  // events waiting to be uploaded now
}

// Sources are the callbacks that read each stage's counters; each is called
// once per scrape, from the scraping goroutine, and must be safe for that. A nil
// source leaves its metrics out (a replay has no uploader).
type Sources struct {
	Capture func() CaptureStats
	Streams func() StreamStats
	Parser  func() ParserStats
	Upload  func() UploadStats
}

// Metrics is otas-sniff's own registry (not the process-global default one,
// so that tests and several instances do not share counters).
type Metrics struct {
	registry *prometheus.Registry
	latency  *prometheus.HistogramVec
}

// New registers the snapshot collectors for src, the exchange latency
// histogram, and the Go runtime and process collectors.
func New(src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace,
		Name:      "exchange_latency_seconds",
		Help:      "Time from a request's first byte to its response's last byte, by response status class (none: no response).",
		// 1ms to a minute, about ×2.5 apart.
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"status_class"})
	// Every class exists from the first scrape, so rate() and alerts see zeros
	// rather than missing series.
	for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other", "none"} {
		latency.WithLabelValues(c)
	}
	reg.MustRegister(
		latency,
		newSnapshotCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Metrics{registry: reg, latency: latency}
}

// Registry is what Serve exposes.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveExchange records one exchange's latency under its status class;
// statusCode 0 means no response was captured.
func (m *Metrics) ObserveExchange(statusCode int, latency time.Duration) {
	m.latency.WithLabelValues(StatusClass(statusCode)).Observe(latency.Seconds())
}

// StatusClass is the status_class label of a status code: "2xx" and so on,
// "none" for 0 (no response), "other" for codes outside 100-599.
func StatusClass(code int) string {
	switch {
	case code == 0:
		return "none"
	case code < 100 || code > 599:
		return "other"
	}
	return string(rune('0'+code/100)) + "xx"
}

// metricDesc describes one snapshot metric and how to read it.
type metricDesc[S any] struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(S) float64
}

func counter[S any](name, help string, value func(S) float64, labels prometheus.Labels) metricDesc[S] {
	return metricDesc[S]{
		desc:  prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, nil, labels),
		kind:  prometheus.CounterValue,
		value: value,
	}
}

func gauge[S any](name, help string, value func(S) float64) metricDesc[S] {
	return metricDesc[S]{
		desc:  prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, nil, nil),
		kind:  prometheus.GaugeValue,
		value: value,
	}
}

// group is the metrics read from one source.
type group[S any] struct {
	source  func() S
	metrics []metricDesc[S]
}

func (g group[S]) describe(ch chan<- *prometheus.Desc) {
	if g.source == nil {
		return
	}
	for _, m := range g.metrics {
		ch <- m.desc
	}
}

func (g group[S]) collect(ch chan<- prometheus.Metric) {
	if g.source == nil {
		return
	}
	// One snapshot for the whole group, so related values agree.
	snap := g.source()
	for _, m := range g.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(snap))
	}
}

// snapshotCollector turns the Sources' snapshots into metrics at scrape time.
type snapshotCollector struct {
	capture group[CaptureStats]
	streams group[StreamStats]
	parser  group[ParserStats]
	upload  group[UploadStats]
}

func newSnapshotCollector(src Sources) *snapshotCollector {
	drops := "Packets dropped before otas-sniff saw them, by where they were dropped."
	return &snapshotCollector{
		capture: group[CaptureStats]{source: src.Capture, metrics: []metricDesc[CaptureStats]{
			counter("packets_total", "Packets read from the capture.", func(s CaptureStats) float64 { return float64(s.Packets) }, nil),
			counter("packets_dropped_total", drops, func(s CaptureStats) float64 { return float64(s.KernelDrops) }, prometheus.Labels{"where": "kernel"}),
			counter("packets_dropped_total", drops, func(s CaptureStats) float64 { return float64(s.InterfaceDrops) }, prometheus.Labels{"where": "interface"}),
			counter("packets_dropped_total", drops, func(s CaptureStats) float64 { return float64(s.QueueDrops) }, prometheus.Labels{"where": "queue"}),
		}},
		streams: group[StreamStats]{source: src.Streams, metrics: []metricDesc[StreamStats]{
			counter("tcp_streams_total", "TCP connections seen.", func(s StreamStats) float64 { return float64(s.Streams) }, nil),
			gauge("open_streams", "TCP connections open now.", func(s StreamStats) float64 { return float64(s.Open) }),
			counter("capture_gaps_total", "Holes in TCP streams given up as lost.", func(s StreamStats) float64 { return float64(s.Gaps) }, nil),
		}},
		parser: group[ParserStats]{source: src.Parser, metrics: []metricDesc[ParserStats]{
			counter("exchanges_total", "HTTP request/response exchanges emitted.", func(s ParserStats) float64 { return float64(s.Exchanges) }, nil),
			counter("parse_errors_total", "Streams that could not be parsed as HTTP.", func(s ParserStats) float64 { return float64(s.ParseErrors) }, nil),
			counter("unmatched_requests_total", "Requests for which no response was captured.", func(s ParserStats) float64 { return float64(s.UnmatchedRequests) }, nil),
			counter("unmatched_responses_total", "Responses for which no request was captured.", func(s ParserStats) float64 { return float64(s.UnmatchedResponses) }, nil),
		}},
		upload: group[UploadStats]{source: src.Upload, metrics: []metricDesc[UploadStats]{
			counter("events_uploaded_total", "Events accepted by OTAS.", func(s UploadStats) float64 { return float64(s.Uploaded) }, nil),
			counter("events_failed_total", "Events whose upload failed for good.", func(s UploadStats) float64 { return float64(s.Failed) }, nil),
			counter("events_spooled_total", "Events written to the disk spool for a later upload.", func(s UploadStats) float64 { return float64(s.Spooled) }, nil),
			counter("events_dropped_total", "Events lost because the upload queue and spool were full.", func(s UploadStats) float64 { return float64(s.Dropped) }, nil),
			gauge("upload_queue_depth", "Events waiting to be uploaded.", func(s UploadStats) float64 { return float64(s.QueueDepth) }),
		}},
	}
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	c.capture.describe(ch)
	c.streams.describe(ch)
	c.parser.describe(ch)
	c.upload.describe(ch)
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	c.capture.collect(ch)
	c.streams.collect(ch)
	c.parser.collect(ch)
	c.upload.collect(ch)
}
