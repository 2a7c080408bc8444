package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/corpus"
)

// zeekRow is one transaction of a Zeek http.log baseline.
type zeekRow struct{ method, path, status string }

func (r zeekRow) String() string { return r.method + " " + r.path + " " + r.status }

// zeekDifferences are traces where our event model differs from Zeek's on purpose.
// Rows listed here are not counted against us; every other row must match.
var zeekDifferences = map[string]string{
	"http/261/":                                  "Zeek logs the bytes after a malformed framing header as a smuggled second request; we drop the malformed message (RFC 9112 §6.3: an invalid Content-Length or chunk size is unrecoverable) and resynchronise on the next message start",
	"http/http_09.pcap":                          "HTTP/0.9 (no version, no headers) is not HTTP/1.x: counted as not HTTP, never an event",
	"http/no-version.pcap":                       "HTTP/0.9 request line without a version",
	"http/curl_http_09.pcap":                     "the response is a headerless HTTP/0.9 body",
	"http/http-09-content-length-confusion.pcap": "the second message is HTTP/0.9",
	"http/methods.pcap":                          "the trace probes malformed request lines ('OPTIONS HTTP/1.1' with no target, 'GET / HTTP/1.' with a broken version, 'GET/ HTTP/1.1'); Zeek logs each as a transaction, we skip them as garbage and count the server's 400 as an unmatched response",
	"http/http-desync-request-response-5.pcap":   "Zeek logs surplus responses with method '-'; we count unmatched responses instead of emitting them",
	"http/http-bad-request-with-version.pcap":    "Zeek logs a response with no parsable request; we count it as an unmatched response",
	"tunnels/":                     "tunnelled traffic (Teredo, VXLAN) is not decapsulated",
	"http/no-uri.pcap":             "a request line without a target is invalid (RFC 9112 §3); we skip it as garbage",
	"mixed-vlan-mpls.pcap":         "MPLS-labelled frames are not decoded, and the second exchange is HTTP/0.9",
	"nflog-http.pcap":              "the NFLOG link type is not supported",
	"websocket/wstunnel-http.pcap": "HTTP inside a WebSocket tunnel is not parsed after the 101",
	"http/http-inner-transfer-encoding-ossfuzz.pcap": "the request line is garbage that Zeek accepts leniently",
	"http/http-non-printable-characters.pcap":        "Zeek escapes non-printable bytes in its log; paths are compared unescaped",
	"www-odd-url.pcap":                               "Zeek escapes non-UTF-8 bytes in its log",
}

func zeekDifference(trace string) (string, bool) {
	for k, why := range zeekDifferences {
		if strings.Contains(trace, k) {
			return why, true
		}
	}
	return "", false
}

var maskedTS = regexp.MustCompile(`"ts":X+\.X+`)

var corpusRow = regexp.MustCompile("^\\| `(testing/btest/Traces/[^`]+)` \\|.*?baseline: `([^`]*http\\.log[^`]*)`")

// TestZeekHTTPLog replays Zeek's HTTP traces and compares (method, path, status)
// with Zeek's expected http.log, reporting the agreement rate.
func TestZeekHTTPLog(t *testing.T) {
	dir := corpus.Dir(t, "zeek")
	readme, err := os.ReadFile(filepath.Join(dir, "..", "README.md"))
	require.NoError(t, err)
	var total, matched, excused, extra int
	var report []string
	sc := bufio.NewScanner(strings.NewReader(string(readme)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := corpusRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		trace, baseline := m[1], m[2]
		if strings.HasSuffix(trace, ".gz") {
			continue
		}
		want, err := readZeekLog(filepath.Join(dir, "testing", "btest", "Baseline", baseline))
		if err != nil {
			t.Logf("%s: baseline unreadable: %v", trace, err)
			continue
		}
		evs, r := replay(t, []string{filepath.Join(dir, trace)})
		var got []string
		for _, ev := range evs {
			status := "-"
			if ev.StatusCode != 0 {
				status = fmt.Sprint(ev.StatusCode)
			}
			got = append(got, ev.Method+" "+ev.Path+" "+status)
		}
		ok := 0
		for _, w := range want {
			if i := indexMatch(got, w); i >= 0 {
				got = append(got[:i], got[i+1:]...)
				ok++
			}
		}
		total += len(want)
		matched += ok
		extra += len(got)
		why, differs := zeekDifference(trace)
		if differs {
			excused += len(want) - ok
		}
		line := fmt.Sprintf("%-70s %d/%d rows, %d extra events, exit %d", trace, ok, len(want), len(got), r.code)
		if ok < len(want) && differs {
			line += " (differs on purpose: " + why + ")"
		}
		report = append(report, line)
		if !differs {
			assert.Equal(t, len(want), ok, "%s: every Zeek row should match; missing from %v, ours left over %v\n%s", trace, want, got, r.stderr)
		}
	}
	require.NoError(t, sc.Err())
	require.Positive(t, total, "no traces with an http.log baseline found in the corpus README")
	sort.Strings(report)
	for _, l := range report {
		t.Log(l)
	}
	rate := float64(matched) / float64(total)
	t.Logf("Zeek http.log agreement: %d of %d rows (%.1f%%); %d rows differ on purpose; %d events Zeek does not log", matched, total, 100*rate, excused, extra)
	assert.Equal(t, total, matched+excused, "every row either matches or is a documented difference")
}

// readZeekLog reads method, path and status from an http.log baseline: Zeek's
// TSV with a #fields line, a zeek-cut file whose first line names the columns,
// or JSON lines.
func readZeekLog(path string) ([]zeekRow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rows []zeekRow
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if strings.HasSuffix(path, ".json") {
		for _, l := range lines {
			var m map[string]any
			// Zeek's baselines mask the timestamp as a bare XXXXXXXXXX.XXXXXX.
			l = maskedTS.ReplaceAllString(l, `"ts":0`)
			if json.Unmarshal([]byte(l), &m) != nil {
				continue
			}
			row := zeekRow{method: str(m["method"]), path: str(m["uri"]), status: str(m["status_code"])}
			rows = append(rows, row.normalise())
		}
		return rows, nil
	}
	var cols []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "#fields"):
			cols = strings.Split(l, "\t")[1:]
			continue
		case strings.HasPrefix(l, "#"):
			continue
		case cols == nil:
			// zeek-cut output: the first line names the columns.
			cols = strings.Fields(l)
			continue
		}
		f := strings.Split(l, "\t")
		if len(f) == 1 {
			f = strings.Fields(l)
		}
		// A zeek-cut baseline without a column leaves that field unchecked ("*").
		get := func(name string) string {
			for j, c := range cols {
				if c == name {
					if j < len(f) {
						return f[j]
					}
					return "-"
				}
			}
			return "*"
		}
		rows = append(rows, zeekRow{method: get("method"), path: get("uri"), status: get("status_code")}.normalise())
	}
	return rows, nil
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case float64:
		return fmt.Sprint(int(x))
	default:
		return fmt.Sprint(x)
	}
}

// normalise keeps the path of the URI, as events do, and treats status 0 (Zeek's
// HTTP/0.9 reply) as no status.
func (r zeekRow) normalise() zeekRow {
	r.path, _, _ = strings.Cut(r.path, "?")
	if r.path == "(empty)" {
		r.path = ""
	}
	if r.status == "0" {
		r.status = "-"
	}
	return r
}

// indexMatch finds the first event "METHOD PATH STATUS" that matches row, where
// a "*" field of the row matches anything.
func indexMatch(events []string, row zeekRow) int {
	for i, e := range events {
		// The path may hold spaces: the method ends at the first, the status
		// starts after the last.
		m, rest, _ := strings.Cut(e, " ")
		j := strings.LastIndexByte(rest, ' ')
		if j < 0 {
			continue
		}
		f := []string{m, rest[:j], rest[j+1:]}
		if (row.method == "*" || row.method == f[0]) && (row.path == "*" || row.path == f[1]) && (row.status == "*" || row.status == f[2]) {
			return i
		}
	}
	return -1
}
