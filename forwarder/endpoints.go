package forwarder

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultTopEndpoints is how many endpoints the summary shows.
const DefaultTopEndpoints = 20

// MaxTrackedEndpoints bounds the endpoints EndpointStats keeps apart; exchanges
// of any further endpoint are counted together as OtherEndpoints, so a path the
// templating misses (a new kind of id) cannot grow memory without limit.
const MaxTrackedEndpoints = 2000

// OtherEndpoints is the path of the row that gathers endpoints beyond
// MaxTrackedEndpoints.
const OtherEndpoints = "(other endpoints)"

// EndpointStats counts exchanges per method and path template and keeps their
// latency distribution. Observe is safe for concurrent use. It is also a Sink:
// Write observes the event, and Close prints the summary table when one was asked
// for.
type EndpointStats struct {
	mu           sync.Mutex
	byEndpoint   map[endpointKey]*endpointStat
	other        endpointStat
	maxEndpoints int
	summary      io.Writer
	top          int
	rendered     bool
}

type endpointKey struct {
	method, path string
}

type endpointStat struct {
	count, clientErrors, serverErrors, noResponse int
	latency                                       latencyDigest
}

// EndpointSummary is one endpoint's row of the summary.
type EndpointSummary struct {
	Method string
	// Path is the path template, or OtherEndpoints.
	Path  string
	Count int
	// ClientErrorShare, ServerErrorShare and NoResponseShare are the fractions
	// (0 to 1) of exchanges answered 4xx, answered 5xx, and not answered.
	ClientErrorShare float64
	ServerErrorShare float64
	NoResponseShare  float64
	// P50, P95 and P99 are latency percentiles over answered exchanges; zero
	// when none was answered.
	P50, P95, P99 time.Duration
}

// NewEndpointStats returns empty statistics. When summary is not nil, Close
// renders the top endpoints to it (top ≤ 0 means DefaultTopEndpoints).
func NewEndpointStats(summary io.Writer, top int) *EndpointStats {
	if top <= 0 {
		top = DefaultTopEndpoints
	}
	return &EndpointStats{
		byEndpoint:   map[endpointKey]*endpointStat{},
		maxEndpoints: MaxTrackedEndpoints,
		summary:      summary,
		top:          top,
	}
}

// Observe counts one event under its method and path template (the event's
// Metadata.PathTemplate, else PathTemplate of its path).
func (s *EndpointStats) Observe(ev *Event) {
	tmpl := ev.Metadata.PathTemplate
	if tmpl == "" {
		tmpl = PathTemplate(ev.Path)
	}
	key := endpointKey{method: ev.Method, path: tmpl}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byEndpoint[key]
	if st == nil {
		if len(s.byEndpoint) >= s.maxEndpoints {
			st = &s.other
		} else {
			st = &endpointStat{}
			// Event strings share buffers (message heads, event slabs): a key
			// kept for the whole run must not keep those alive.
			key = endpointKey{method: strings.Clone(key.method), path: strings.Clone(key.path)}
			s.byEndpoint[key] = st
		}
	}
	st.count++
	switch {
	case ev.StatusCode == 0:
		st.noResponse++
		return
	case ev.StatusCode >= 500:
		st.serverErrors++
	case ev.StatusCode >= 400:
		st.clientErrors++
	}
	st.latency.add(ev.LatencyMS)
}

// Write observes ev; it never fails.
func (s *EndpointStats) Write(_ context.Context, ev *Event) error {
	s.Observe(ev)
	return nil
}

// CopiesEvents marks EndpointStats an EventCopier: its keys are cloned.
func (s *EndpointStats) CopiesEvents() {}

// UsesEncodedBodies marks EndpointStats an EncodedBodiesSink: it reads no body.
func (s *EndpointStats) UsesEncodedBodies() {}

// Close renders the summary to the writer given to NewEndpointStats, once.
func (s *EndpointStats) Close(context.Context) error {
	s.mu.Lock()
	if s.summary == nil || s.rendered {
		s.mu.Unlock()
		return nil
	}
	s.rendered = true
	s.mu.Unlock()
	// A run that saw nothing (or failed to start) says so in its summary line;
	// an empty table would only repeat it.
	if len(s.Summaries()) == 0 {
		return nil
	}
	if err := s.Render(s.summary, s.top); err != nil {
		return fmt.Errorf("endpoint summary: %w", err)
	}
	return nil
}

// Summaries returns every endpoint's row, most exchanges first (ties by method,
// then path), with the OtherEndpoints row, if any, last.
func (s *EndpointStats) Summaries() []EndpointSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]EndpointSummary, 0, len(s.byEndpoint)+1)
	for key, st := range s.byEndpoint {
		out = append(out, st.summary(key.method, key.path))
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		return a.Path < b.Path
	})
	if s.other.count > 0 {
		out = append(out, s.other.summary("*", OtherEndpoints))
	}
	return out
}

func (st *endpointStat) summary(method, path string) EndpointSummary {
	n := float64(st.count)
	return EndpointSummary{
		Method:           method,
		Path:             path,
		Count:            st.count,
		ClientErrorShare: float64(st.clientErrors) / n,
		ServerErrorShare: float64(st.serverErrors) / n,
		NoResponseShare:  float64(st.noResponse) / n,
		P50:              msDuration(st.latency.quantile(0.50)),
		P95:              msDuration(st.latency.quantile(0.95)),
		P99:              msDuration(st.latency.quantile(0.99)),
	}
}

func msDuration(ms float64) time.Duration {
	return time.Duration(math.Round(ms * float64(time.Millisecond)))
}

// Render writes the top endpoints by count as an aligned table (top ≤ 0 shows
// all), followed by a line for those left out.
func (s *EndpointStats) Render(w io.Writer, top int) error {
	rows := s.Summaries()
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "no exchanges")
		return err
	}
	shown := rows
	if top > 0 && len(rows) > top {
		shown = rows[:top]
	}
	table := [][]string{{"METHOD", "ENDPOINT", "COUNT", "4XX", "5XX", "NO RESP", "P50", "P95", "P99"}}
	for _, r := range shown {
		table = append(table, []string{
			r.Method, r.Path, fmt.Sprint(r.Count),
			formatShare(r.ClientErrorShare), formatShare(r.ServerErrorShare), formatShare(r.NoResponseShare),
			formatLatency(r.P50), formatLatency(r.P95), formatLatency(r.P99),
		})
	}
	// Method and endpoint read left-aligned, the numbers right-aligned.
	if err := writeAligned(w, table, 2); err != nil {
		return err
	}
	if rest := rows[len(shown):]; len(rest) > 0 {
		n := 0
		for _, r := range rest {
			n += r.Count
		}
		_, err := fmt.Fprintf(w, "... %d more %s with %d %s\n", len(rest), plural(len(rest), "endpoint", "endpoints"), n, plural(n, "exchange", "exchanges"))
		return err
	}
	return nil
}

// writeAligned writes rows as columns two spaces apart, the first leftColumns
// left-aligned and the rest right-aligned. (text/tabwriter pads right-aligned
// cells on the left of the first column too, hence this.)
func writeAligned(w io.Writer, rows [][]string, leftColumns int) error {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		line := make([]string, len(row))
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i < leftColumns {
				line[i] = cell + pad
			} else {
				line[i] = pad + cell
			}
		}
		b.WriteString(strings.TrimRight(strings.Join(line, "  "), " "))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func formatShare(f float64) string {
	if f == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*f)
}

// formatLatency prints three significant digits or so: 850µs, 12.4ms, 340ms,
// 2.51s.
func formatLatency(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// latencyDigest holds latencies in milliseconds. The first exactLatencies are
// kept as they are, so small endpoints get exact percentiles. Past that they
// move into a histogram of logarithmic buckets, each latencyGrowth times wider
// than the last. A histogram rather than a random reservoir because it is
// deterministic and its error is bounded for every quantile (±2% relative),
// including p99, which a reservoir estimates from a handful of samples; and its
// memory is fixed (latencyBuckets counters) however many exchanges come.
type latencyDigest struct {
	exact    []float64
	buckets  []uint32
	n        int
	min, max float64
}

const (
	exactLatencies = 512
	latencyGrowth  = 1.04
	// latencyFloorMS is the lower edge of bucket 1; bucket 0 holds everything
	// below it (1µs).
	latencyFloorMS = 0.001
)

// latencyBuckets covers 1µs to past an hour: 1 + ⌈ln(3600e3 ms / 1µs) / ln 1.04⌉
// = 1 + 561, plus one spare; anything longer lands in the last bucket.
const latencyBuckets = 563

func (d *latencyDigest) add(ms float64) {
	if ms < 0 || math.IsNaN(ms) {
		ms = 0
	}
	if d.n == 0 || ms < d.min {
		d.min = ms
	}
	if d.n == 0 || ms > d.max {
		d.max = ms
	}
	d.n++
	if d.buckets == nil {
		if len(d.exact) < exactLatencies {
			d.exact = append(d.exact, ms)
			return
		}
		d.buckets = make([]uint32, latencyBuckets)
		for _, v := range d.exact {
			d.buckets[bucketOf(v)]++
		}
		d.exact = nil
	}
	d.buckets[bucketOf(ms)]++
}

func bucketOf(ms float64) int {
	if ms < latencyFloorMS {
		return 0
	}
	i := 1 + int(math.Log(ms/latencyFloorMS)/math.Log(latencyGrowth))
	return min(i, latencyBuckets-1)
}

// quantile returns the nearest-rank q-quantile (0 < q ≤ 1), or 0 when empty.
func (d *latencyDigest) quantile(q float64) float64 {
	if d.n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(d.n)))
	rank = max(1, min(rank, d.n))
	if d.buckets == nil {
		sorted := slices.Clone(d.exact)
		slices.Sort(sorted)
		return sorted[rank-1]
	}
	seen := 0
	for i, c := range d.buckets {
		seen += int(c)
		if seen < rank {
			continue
		}
		if i == 0 {
			return d.min
		}
		// The bucket's geometric middle, kept within what was observed.
		lower := latencyFloorMS * math.Pow(latencyGrowth, float64(i-1))
		mid := lower * math.Sqrt(latencyGrowth)
		return math.Max(d.min, math.Min(d.max, mid))
	}
	return d.max
}
