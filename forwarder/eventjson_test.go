package forwarder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/httpparse"
)

// encodingJSON is what the hand-written encoder must reproduce.
func encodingJSON(t *testing.T, v any, html bool) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	require.NoError(t, enc.Encode(v))
	return string(bytes.TrimSuffix(b.Bytes(), []byte{'\n'}))
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	awkward := "a\"b\\c\b\f\n\r\t\x00\x1f\x7f <&> é \u2028\u2029 \xff\xfe end"
	ts := time.Date(2026, 1, 2, 3, 4, 5, 600700800, time.UTC)
	events := []*Event{
		{CustomProperties: map[string]any{}},
		{},
		{
			ProjectID: "p", Path: "/a<b>", Method: "POST", StatusCode: 201, LatencyMS: 12.345678,
			RequestSizeBytes: 10, ResponseSizeBytes: 1 << 40, RequestHeaders: `{"A":"b"}`,
			RequestBody: awkward, QueryParams: "{}", PostData: awkward, ResponseHeaders: awkward,
			ResponseBody: `{"x":[1,2,"\u00e9"]}`, RequestContentType: "application/json", ResponseContentType: awkward,
			CustomProperties: map[string]any{}, Error: "no response",
			Metadata: Metadata{
				EventID: "id", RequestTime: ts, ResponseTime: ts.Add(time.Second), RequestEndTime: ts,
				ResponseStartTime: ts.In(time.FixedZone("x", 3600)), Client: "1.2.3.4:5", Server: "[::1]:80",
				Host: awkward, HTTPVersion: "HTTP/1.1", Source: "f.pcap", ConnectionIndex: 7,
				AgentSessionTokenPresent: true, RequestBodyTruncated: true, ResponseBodyTruncated: true,
				RequestBodyNotKept: "multipart/form-data", ResponseBodyNotKept: awkward,
				InterimStatuses: []int{100, 103}, Upgraded: true, Anomalies: []string{"a", awkward}, PathTemplate: "/a/{id}",
			},
		},
		// The encoding/json fallbacks.
		{CustomProperties: map[string]any{"k": 1}, Metadata: Metadata{Extra: map[string]any{"pod": "<x>"}}},
		{Metadata: Metadata{RequestTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, lat := range []float64{0, 1e-7, 3e-6, 1e21, 1e22, -5.5, 123456789.125, 0.1} {
		events = append(events, &Event{LatencyMS: lat})
	}
	for i, ev := range events {
		for _, html := range []bool{false, true} {
			got, err := ev.AppendJSON([]byte("prefix"), html)
			if ev.Metadata.RequestTime.Year() > 9999 {
				assert.Error(t, err)
				assert.Equal(t, "prefix", string(got))
				continue
			}
			require.NoError(t, err)
			want := encodingJSON(t, ev, html)
			assert.Equal(t, "prefix"+want, string(got), "event %d html %v", i, html)
		}
	}
	_, err := (&Event{LatencyMS: math.NaN()}).AppendJSON(nil, false)
	assert.Error(t, err)
}

func TestHeadersAndValuesJSONMatchEncodingJSON(t *testing.T) {
	h := httpparse.Header{{Name: "b", Value: "1"}, {Name: "A", Value: "<2>"}, {Name: "b", Value: "3"}, {Name: "\xff", Value: "\u2028"}, {Name: "a", Value: "&"}}
	m := map[string]string{}
	for _, f := range h {
		if prev, ok := m[f.Name]; ok {
			m[f.Name] = prev + ", " + f.Value
			continue
		}
		m[f.Name] = f.Value
	}
	want, _ := json.Marshal(m)
	assert.Equal(t, string(want), headersJSON(h))
	assert.Equal(t, "{}", headersJSON(nil))

	big := httpparse.Header{}
	for i := range 100 {
		big = append(big, httpparse.Field{Name: string(rune('a' + i%26)), Value: string(rune('A' + i%7))})
	}
	m = map[string]string{}
	for _, f := range big {
		if prev, ok := m[f.Name]; ok {
			m[f.Name] = prev + ", " + f.Value
			continue
		}
		m[f.Name] = f.Value
	}
	want, _ = json.Marshal(m)
	assert.Equal(t, string(want), headersJSON(big))

	for _, q := range []string{"", "a=1&b=2&a=3", "x=%3C%26%3E&&=&y", "z=\xff&%E2%80%A8=1"} {
		v := parseQuery(q)
		want, _ := json.Marshal(map[string][]string(v))
		assert.Equal(t, string(want), valuesJSON(v), q)
	}
	assert.Equal(t, `{"k":null}`, valuesJSON(url.Values{"k": nil}))
}

func TestAppendStringJSONMatchesEncodingJSON(t *testing.T) {
	// Random strings over an alphabet of every escaping case, at every length up
	// to 64 and some longer, so the room reserved for six-byte escapes and runes
	// across chunk ends is exercised.
	alphabet := []string{"a", "\"", "\\", "\n", "\x01", "\x7f", "<", "&", "é", "\u2028", "\u2029", "\xff", "\xe2\x80", "𝄞"}
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := []int{200, 300, 400, 1100} // pieces, not bytes: across many 64-byte chunks
	for n := range 64 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for range 20 {
			var sb strings.Builder
			for range n {
				sb.WriteString(alphabet[rng.IntN(len(alphabet))])
			}
			s := sb.String()
			for _, html := range []bool{false, true} {
				prefix := []byte("p")
				if n%2 == 0 {
					prefix = make([]byte, 1, 1+n) // little spare room: forces growth
					prefix[0] = 'p'
				}
				got := appendStringJSON(prefix, s, html)
				assert.Equal(t, "p"+encodingJSON(t, s, html), string(got), "%q html %v", s, html)
			}
		}
	}
}

// BenchmarkAppendStringJSON escapes a dense JSON body, the common case: a quote
// every few bytes.
func BenchmarkAppendStringJSON(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"items":[`)
	for i := range 60 {
		fmt.Fprintf(&sb, `{"id":%d,"name":"item-%d","price":%d.25,"tags":["a","b"]},`, 100000+i*7919, i, i*13)
	}
	sb.WriteString(`{}]}`)
	body := sb.String()
	buf := make([]byte, 0, 4*len(body))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		buf = appendStringJSON(buf[:0], body, true)
	}
}

// The bodies escaped by Build are what AppendJSON writes, and a body changed
// after Build (a Prepare or Enrich hook) is encoded afresh, never the stale copy.
func TestBuildEscapesBodiesOnce(t *testing.T) {
	req := &httpparse.Message{Method: "POST", Target: "/x", Header: httpparse.Header{{Name: "Content-Type", Value: "application/json"}},
		Body: []byte(`{"a":"<b>\"q\"</b>","n":1}`)}
	resp := &httpparse.Message{StatusCode: 200, Header: httpparse.Header{{Name: "Content-Type", Value: "text/plain"}}, Body: []byte("line\n\u2028é")}
	ev := New(Options{}).Build(&httpparse.Exchange{Request: req, Response: resp})
	require.NotNil(t, ev.requestBodyJSON.json)
	require.NotNil(t, ev.responseBodyJSON.json)
	for _, html := range []bool{false, true} {
		got, err := ev.AppendJSON(nil, html)
		require.NoError(t, err)
		assert.Equal(t, encodingJSON(t, ev, html), string(got), "html %v", html)
	}
	ev.RequestBody = `{"changed":true}`
	got, err := ev.AppendJSON(nil, false)
	require.NoError(t, err)
	assert.Contains(t, string(got), `"request_body":"{\"changed\":true}"`)
	assert.Equal(t, encodingJSON(t, ev, false), string(got))
}

// Each kind of byte that leaves the table's path, at every offset of strings
// of every length across the four-byte groups and a 64-byte chunk's end.
func TestAppendStringJSONSpecialAtEachOffset(t *testing.T) {
	for _, special := range []string{`"`, "\\", "\n", "\x01", "<", "&", "é", "\u2028", "\xff", "\xe2\x80", "𝄞"} {
		for n := range 72 {
			for at := 0; at <= n; at++ {
				s := strings.Repeat("a", at) + special + strings.Repeat("b", n-at)
				for _, html := range []bool{false, true} {
					got := appendStringJSON(make([]byte, 1, 2), s, html)
					require.Equal(t, "\x00"+encodingJSON(t, s, html), string(got), "%q html %v", s, html)
				}
			}
		}
	}
}

// FuzzAppendStringJSON: appendStringJSON writes what encoding/json writes,
// whatever the bytes, after whatever is in the buffer already.
func FuzzAppendStringJSON(f *testing.F) {
	for _, s := range []string{"", `{"a":"<b>\"q\"</b>","n":1}`, "a\"b\\c\b\f\n\r\t\x00\x1f\x7f <&> é \u2028\u2029 \xff\xfe end", strings.Repeat(`{"id":1,"name":"x"},`, 10)} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, s string, room uint8) {
		for _, html := range []bool{false, true} {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(s); err != nil {
				t.Fatal(err)
			}
			prefix := make([]byte, 2, 2+int(room))
			prefix[0], prefix[1] = 'p', 'q'
			got := appendStringJSON(prefix, s, html)
			if w := "pq" + strings.TrimSuffix(want.String(), "\n"); string(got) != w {
				t.Fatalf("appendStringJSON(%q, html %v) = %q, want %q", s, html, got, w)
			}
		}
	})
}
