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
	"unicode/utf8"

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

// escapePaths runs f with appendStringJSON's pure Go steps, with escapeAVX2,
// and with escapeAVX2 spreading by VPEXPANDB, each skipped with a message
// when the CPU has not what it needs.
func escapePaths(t *testing.T, f func(t *testing.T, appendString func(b []byte, s string, html bool) []byte)) {
	for _, tc := range []struct {
		name       string
		avx2, wide bool
	}{{"go", false, false}, {"avx2", true, false}, {"avx512", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.avx2 && !hasAVX2 {
				t.Skip("no AVX2 (or purego): escapeAVX2 not tested")
			}
			if tc.wide && !hasWideEscape {
				t.Skip("no AVX-512 VBMI2 and BMI2 (or purego): escapeAVX2's VPEXPANDB steps not tested")
			}
			f(t, func(b []byte, s string, html bool) []byte { return appendStringJSONWith(b, s, html, tc.avx2, tc.wide) })
		})
	}
}

func TestAppendStringJSONMatchesEncodingJSON(t *testing.T) {
	escapePaths(t, testAppendStringJSONMatchesEncodingJSON)
}

func testAppendStringJSONMatchesEncodingJSON(t *testing.T, appendStringJSON func([]byte, string, bool) []byte) {
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

// BenchmarkAppendStringJSON escapes the bodies Build sees: dense JSON (a quote
// every few bytes, the common case) without and with HTML escaping, English
// text (few escapes), a long run with nothing to escape, text with a
// non-ASCII letter every few words, and a header value.
func BenchmarkAppendStringJSON(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"items":[`)
	for i := range 60 {
		fmt.Fprintf(&sb, `{"id":%d,"name":"item-%d","price":%d.25,"tags":["a","b"]},`, 100000+i*7919, i, i*13)
	}
	sb.WriteString(`{}]}`)
	dense := sb.String()
	text := strings.Repeat("The quick brown fox jumps over the lazy dog, then naps in the sun.\n"+
		"It said \"hello\" to nobody in particular; the dog (still lazy) did not answer.\n", 25)
	plain := strings.Repeat("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", 64)
	accents := strings.Repeat("Größe «très» — 5 € pour un café crème, s'il vous plaît. Zürich, Genève.\n", 40)
	for _, bc := range []struct {
		name string
		s    string
		html bool
		// narrow: escapeAVX2 without VPEXPANDB, the baseline of "json" on
		// a CPU with AVX-512 VBMI2.
		narrow bool
	}{
		{"json", dense, false, false},
		{"json-avx2", dense, false, true},
		{"jsonhtml", dense, true, false},
		{"text", text, false, false},
		{"plain", plain, false, false},
		{"utf8", accents, false, false},
		{"short", "application/json; charset=utf-8", true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// The output starts somewhere else in its page each time: at the
			// input's offset, every load would wait on a store (4K aliasing).
			buf := make([]byte, 4*len(bc.s)+4096)
			b.SetBytes(int64(len(bc.s)))
			off := 0
			for b.Loop() {
				off = (off + 1031) % 4096
				appendStringJSONWith(buf[off:off], bc.s, bc.html, hasAVX2, hasWideEscape && !bc.narrow)
			}
		})
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

// Each kind of byte escaped apart, at every offset of strings of every
// length across a 16-byte group, the words copied after a group with nothing
// to escape, the four-byte steps of the last bytes, a 64-byte chunk's end, and
// escapeAVX2's first two 32-byte steps and the bytes it leaves.
func TestAppendStringJSONSpecialAtEachOffset(t *testing.T) {
	escapePaths(t, testAppendStringJSONSpecialAtEachOffset)
}

func testAppendStringJSONSpecialAtEachOffset(t *testing.T, appendStringJSON func([]byte, string, bool) []byte) {
	for _, special := range []string{`"`, "\\", "\n", "\t", "\x01", "\x1f", "\x7f", "<", ">", "&", "é", "€", "\u2028", "\u2029",
		"\xff", "\xe2\x80", "\xed\xa0\x80", "𝄞", "\xf4\x90\x80\x80"} {
		for n := range 104 {
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

// Two bytes escaped apart at every pair of offsets of strings up to 40 bytes
// and of 100: one may end a group's run of bytes written from the table (or
// a 32-byte step's) and the other be in the next, or in the last bytes.
func TestAppendStringJSONPairsAtEachOffset(t *testing.T) {
	escapePaths(t, testAppendStringJSONPairsAtEachOffset)
}

func testAppendStringJSONPairsAtEachOffset(t *testing.T, appendStringJSON func([]byte, string, bool) []byte) {
	specials := []string{`"`, "\x01", "é"}
	lengths := []int{100}
	for n := range 41 {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for a := 0; a < n; a++ {
			for b := a + 1; b < n; b++ {
				for _, x := range specials {
					for _, y := range specials {
						s := strings.Repeat("a", a) + x + strings.Repeat("b", b-a-1) + y + strings.Repeat("c", n-b-1)
						for _, html := range []bool{false, true} {
							if got, want := string(appendStringJSON(nil, s, html)), encodingJSON(t, s, html); got != want {
								t.Fatalf("%q html %v: got %q, want %q", s, html, got, want)
							}
						}
					}
				}
			}
		}
	}
}

// Strings of only two-byte escapes and bytes written as they are, so that
// escapeAVX2 spreads every pattern of escapes over each 8 bytes of a step,
// and random ones of them at every length up to 300.
func TestAppendStringJSONDenseEscapes(t *testing.T) {
	escapePaths(t, testAppendStringJSONDenseEscapes)
}

func testAppendStringJSONDenseEscapes(t *testing.T, appendStringJSON func([]byte, string, bool) []byte) {
	short := []byte("\"\\\n\r\t\b\f")
	plain := []byte("a/ ~\x7f<>&")
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(s string) {
		for _, html := range []bool{false, true} {
			if got, want := string(appendStringJSON([]byte("p"), s, html)), "p"+encodingJSON(t, s, html); got != want {
				t.Fatalf("%q html %v: got %q, want %q", s, html, got, want)
			}
		}
	}
	for m := range 256 {
		for group := range 4 {
			b := []byte(strings.Repeat("x", 100))
			for k := range 8 {
				if m>>k&1 != 0 {
					b[8*group+k] = short[rng.IntN(len(short))]
				}
			}
			check(string(b))
		}
	}
	for n := range 300 {
		for range 4 {
			b := make([]byte, n)
			for k := range b {
				if rng.IntN(2) == 0 {
					b[k] = short[rng.IntN(len(short))]
				} else {
					b[k] = plain[rng.IntN(len(plain))]
				}
			}
			check(string(b))
		}
	}
}

// Every amount of room left after what the buffer holds, so that room runs
// out at every point of every path.
func TestAppendStringJSONRoom(t *testing.T) {
	escapePaths(t, testAppendStringJSONRoom)
}

func testAppendStringJSONRoom(t *testing.T, appendStringJSON func([]byte, string, bool) []byte) {
	var sb strings.Builder
	for i := range 6 {
		fmt.Fprintf(&sb, `{"id":%d,"name":"it\u00e9m <%d>","ok":true},`, i, i)
	}
	for _, s := range []string{
		sb.String(),
		strings.Repeat("plain text without anything to escape, ", 5),
		strings.Repeat("Größe «très» — 5 €\u2028\x01\xff ", 6),
		strings.Repeat("\"\\\n\x00", 40),
	} {
		for room := range 100 {
			for _, html := range []bool{false, true} {
				prefix := make([]byte, 3, 3+room)
				copy(prefix, "pre")
				if got, want := string(appendStringJSON(prefix, s, html)), "pre"+encodingJSON(t, s, html); got != want {
					t.Fatalf("%q room %d html %v: got %q, want %q", s, room, html, got, want)
				}
			}
		}
	}
}

// utf8Len takes exactly the sequences utf8.DecodeRuneInString decodes other
// than U+2028 and U+2029, whatever follows them or where they are cut off.
func TestUTF8Len(t *testing.T) {
	tails := []byte{0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xa8, 0xa9, 0xbf, 0xc0, 0xff}
	for c0 := 0x80; c0 < 0x100; c0++ {
		for c1 := range 256 {
			for _, c2 := range tails {
				for _, c3 := range []byte{0x41, 0x80, 0xbf, 0xc0} {
					full := string([]byte{byte(c0), byte(c1), c2, c3})
					for n := 1; n <= len(full); n++ {
						want := 0
						r, size := utf8.DecodeRuneInString(full[:n])
						if (r != utf8.RuneError || size > 1) && r != '\u2028' && r != '\u2029' {
							want = size
						}
						if got := utf8Len(full[:n]); got != want {
							t.Fatalf("utf8Len(%q) = %d, want %d", full[:n], got, want)
						}
					}
				}
			}
		}
	}
}

// FuzzAppendStringJSON: appendStringJSON writes what encoding/json writes,
// whatever the bytes, after whatever is in the buffer already, with its pure
// Go steps and with escapeAVX2.
func FuzzAppendStringJSON(f *testing.F) {
	if !hasAVX2 {
		f.Log("no AVX2 (or purego): escapeAVX2 not fuzzed")
	}
	for _, s := range []string{"", `{"a":"<b>\"q\"</b>","n":1}`, "a\"b\\c\b\f\n\r\t\x00\x1f\x7f <&> é \u2028\u2029 \xff\xfe end", strings.Repeat(`{"id":1,"name":"x"},`, 10),
		strings.Repeat("plain words, ", 8) + "Größe «très» 5 € 𝄞 \xed\xa0\x80\xf4\x90\x80\x80",
		strings.Repeat("a\"b\\c\b\f\n\r\t\x00\x1f\x7f <&> é \u2028\u2029 \xff\xfe end", 3)} {
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
			for _, k := range [][2]bool{{false, false}, {hasAVX2, false}, {hasAVX2, hasWideEscape}} {
				prefix := make([]byte, 2, 2+int(room))
				prefix[0], prefix[1] = 'p', 'q'
				got := appendStringJSONWith(prefix, s, html, k[0], k[1])
				if w := "pq" + strings.TrimSuffix(want.String(), "\n"); string(got) != w {
					t.Fatalf("appendStringJSON(%q, html %v, avx2 %v, wide %v) = %q, want %q", s, html, k[0], k[1], got, w)
				}
			}
		}
	})
}

// timeFormat writes what time.Time.MarshalJSON does, for times in and out of
// the second it has cached, in UTC and elsewhere, with and without
// fractions, and fails as it does on years out of its range.
func TestTimeFormat(t *testing.T) {
	base := time.Date(2026, 11, 27, 12, 34, 56, 0, time.UTC)
	east := time.FixedZone("east", 5*3600+1800)
	var times []time.Time
	for _, d := range []time.Duration{0, 1, 10, 999, 1000, 123456789, 999999999, time.Second, time.Second + 40*time.Microsecond, -1, 24 * time.Hour, 400 * 24 * time.Hour} {
		times = append(times, base.Add(d), base.Add(d).In(east), base.Add(d).Local())
	}
	times = append(times, time.Time{}, time.Unix(0, 1).UTC(), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC))
	var f timeFormat
	for _, prev := range times {
		for _, tm := range times {
			f.appendJSON(nil, prev) // caches prev's second, if it can
			want, wantErr := tm.MarshalJSON()
			got, err := f.appendJSON([]byte("x"), tm)
			if wantErr != nil {
				require.Error(t, err, "%v", tm)
				require.Equal(t, "x", string(got), "nothing written on an error")
				continue
			}
			require.NoError(t, err, "%v", tm)
			require.Equal(t, "x"+string(want), string(got), "%v after %v", tm, prev)
		}
	}
}
