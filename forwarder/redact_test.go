package forwarder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/httpparse"
)

const (
	testJWT  = "eyJhbGciOiJIUzI1NiJ9.eyJhZ2VudF9pZCI6ImEifQ.c2lnbmF0dXJlX2J5dGVz"
	testCard = "4111111111111111" // passes Luhn
	badCard  = "4111111111111112" // fails Luhn
)

func TestRedactHeaders(t *testing.T) {
	r := NewRedactor(RedactorOptions{Headers: []string{"X-Internal-Token", " x-extra "}})
	req := &httpparse.Message{Method: "GET", Target: "/", Header: httpparse.Header{
		{Name: "authorization", Value: "Basic dXNlcjpwYXNz"},
		{Name: "COOKIE", Value: "s=1"},
		{Name: "X-Api-Key", Value: "k"},
		{Name: "Proxy-Authorization", Value: "p"},
		{Name: "x-internal-token", Value: "t"},
		{Name: "X-Extra", Value: "e"},
		{Name: "X-OTAS-AGENT-SESSION-TOKEN", Value: testJWT},
		{Name: "X-Forwarded-Auth", Value: "Bearer abcdef123456"},
		{Name: "X-Trace", Value: "id " + testJWT},
		{Name: "Accept", Value: "application/json"},
	}}
	resp := &httpparse.Message{StatusCode: 200, Header: httpparse.Header{{Name: "Set-Cookie", Value: "s=2"}}}
	r.Redact(&httpparse.Exchange{Request: req, Response: resp})
	want := []string{Redacted, Redacted, Redacted, Redacted, Redacted, Redacted, Redacted,
		"Bearer " + Redacted, "id " + Redacted, "application/json"}
	for i, f := range req.Header {
		assert.Equal(t, want[i], f.Value, f.Name)
	}
	assert.Equal(t, Redacted, resp.Header[0].Value)
}

func TestRedactQueryAndForm(t *testing.T) {
	r := NewRedactor(RedactorOptions{Params: []string{"session"}})
	tests := []struct{ in, want string }{
		{"/login?user=ada&password=hunter2&next=%2F", "/login?user=ada&password=" + Redacted + "&next=%2F"},
		{"/x?Access_Token=abc#frag", "/x?Access_Token=" + Redacted + "#frag"},
		{"/x?api%5Fkey=1&session=2&q=ok", "/x?api%5Fkey=" + Redacted + "&session=" + Redacted + "&q=ok"},
		{"/x?id_token=" + testJWT, "/x?id_token=%5BREDACTED%5D"},
		{"/plain", "/plain"},
		{"/x?flag&token=", "/x?flag&token="},
		{"http://h/p?secret=s", "http://h/p?secret=" + Redacted},
	}
	for _, tt := range tests {
		req := &httpparse.Message{Target: tt.in}
		r.Redact(&httpparse.Exchange{Request: req})
		assert.Equal(t, tt.want, req.Target, tt.in)
	}

	req := &httpparse.Message{Method: "POST", Target: "/", Header: httpparse.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded; charset=utf-8"}},
		Body: []byte("user=ada&passwd=p%40ss&client_secret=cs&card=" + testCard)}
	ev := New(Options{Redactor: r}).Event(&httpparse.Exchange{Request: req})
	assert.JSONEq(t, `{"user":["ada"],"passwd":["[REDACTED]"],"client_secret":["[REDACTED]"],"card":["[REDACTED]"]}`, ev.PostData)
	assert.NotContains(t, ev.RequestBody, "p%40ss")
}

func TestRedactJSON(t *testing.T) {
	r := NewRedactor(RedactorOptions{Params: []string{"ssn"}})
	tests := []struct {
		name, in, want string
	}{
		{"top level", `{"user":"ada","password":"hunter2"}`, `{"user":"ada","password":"[REDACTED]"}`},
		{"keeps formatting", "{\n  \"a\" : 1,\n  \"Token\" :\t\"x\" ,\"b\":[1, 2]\n}", "{\n  \"a\" : 1,\n  \"Token\" :\t\"[REDACTED]\" ,\"b\":[1, 2]\n}"},
		{"nested any depth", `[{"x":{"y":[{"secret":{"deep":[1,2,{"token":"t"}]}}]}}]`, `[{"x":{"y":[{"secret":"[REDACTED]"}]}}]`},
		{"non-string values", `{"api_key":12345,"apikey":null,"refresh_token":true,"ssn":[1,2]}`, `{"api_key":"[REDACTED]","apikey":"[REDACTED]","refresh_token":"[REDACTED]","ssn":"[REDACTED]"}`},
		{"escaped key", `{"pass\u0077ord":"x","n":"\"q\""}`, `{"pass\u0077ord":"[REDACTED]","n":"\"q\""}`},
		{"jwt in a string", `{"note":"got ` + testJWT + ` ok"}`, `{"note":"got [REDACTED] ok"}`},
		{"jwt in an escaped string", `{"note":"a\nb ` + testJWT + `\t\u00e9"}`, `{"note":"a\nb [REDACTED]\té"}`},
		{"bearer", `{"h":"Bearer abc.def-ghi"}`, `{"h":"Bearer [REDACTED]"}`},
		{"card string", `{"card":"4111 1111 1111 1111","other":"` + badCard + `"}`, `{"card":"[REDACTED]","other":"` + badCard + `"}`},
		{"card number", `{"n":` + testCard + `,"ts":1700000000000,"f":4111111111111111.5}`, `{"n":"[REDACTED]","ts":1700000000000,"f":4111111111111111.5}`},
		{"keys untouched", `{"` + testJWT + `":1}`, `{"` + testJWT + `":1}`},
		{"scalars", `"password"`, `"password"`},
		{"empty", `{}`, `{}`},
		{"html kept", `{"h":"<b>&amp;</b> ` + testJWT + `"}`, `{"h":"<b>&amp;</b> [REDACTED]"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.True(t, json.Valid([]byte(tt.in)), "input is valid")
			got := string(r.RedactBody("application/json", []byte(tt.in)))
			assert.Equal(t, tt.want, got)
			assert.True(t, json.Valid([]byte(got)), "still valid: %s", got)
		})
	}
}

func TestRedactNotJSON(t *testing.T) {
	r := NewRedactor(RedactorOptions{})
	tests := []struct{ name, ct, in, want string }{
		{"cut in a sensitive value", "application/json", `{"a":1,"password":"hunt`, `{"a":1,"password":"[REDACTED]"`},
		{"cut after", "application/json", `{"password":"x","b":"` + testJWT, `{"password":"[REDACTED]","b":"[REDACTED]`},
		{"html", "text/html", `<p>Bearer abcdefgh1234 and ` + testCard + `</p>`, `<p>Bearer [REDACTED] and [REDACTED]</p>`},
		{"text card with dashes", "text/plain", "card 4111-1111-1111-1111 / " + badCard, "card [REDACTED] / " + badCard},
		{"looks like json", "", `{"token":"x"}`, `{"token":"[REDACTED]"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, string(r.RedactBody(tt.ct, []byte(tt.in))))
		})
	}
}

func TestRedactUserPatterns(t *testing.T) {
	r := NewRedactor(RedactorOptions{Patterns: []*regexp.Regexp{
		regexp.MustCompile(`ACME-[0-9]{6}`),
		regexp.MustCompile(`ssn=(\d{3}-\d{2}-\d{4})`),
		regexp.MustCompile(`"x"`), // would break JSON if applied to raw text
	}})
	assert.Equal(t, `id [REDACTED], ssn=[REDACTED]`, string(r.RedactBody("text/plain", []byte(`id ACME-123456, ssn=123-45-6789`))))
	in := `{"a":"ACME-000001","x":"x","q":"\"x\""}`
	got := r.RedactBody("application/json", []byte(in))
	assert.True(t, json.Valid(got), string(got))
	assert.Equal(t, `{"a":"[REDACTED]","x":"x","q":"[REDACTED]"}`, string(got))
}

func TestRedactBeforeCut(t *testing.T) {
	// A secret straddling the body cut is redacted before the cut removes half of it.
	body := strings.Repeat("a", 90) + " " + testJWT
	req := &httpparse.Message{Method: "POST", Target: "/", Header: httpparse.Header{{Name: "Content-Type", Value: "text/plain"}}, Body: []byte(body)}
	ev := New(Options{BodyLimit: 100}).Event(&httpparse.Exchange{Request: req})
	assert.NotContains(t, ev.RequestBody, "eyJhbGciOiJIUzI1NiJ9")
}

func TestLuhn(t *testing.T) {
	for in, want := range map[string]bool{
		"4111111111111111": true, "5500 0000 0000 0004": true, "340000000000009": true,
		"4111111111111112": false, "1234": false, "00000000000000000000": false,
	} {
		assert.Equal(t, want, luhn([]byte(in)), in)
	}
}

// FuzzRedactJSON: valid JSON in, valid JSON out, whatever the content.
func FuzzRedactJSON(f *testing.F) {
	for _, s := range []string{`{"password":"x"}`, `[1,{"token":{"a":[]}}]`, `{"a":"` + testJWT + `"}`, `"\u0000"`, `{"n":` + testCard + `}`, `{"k":"\ud800"}`} {
		f.Add(s)
	}
	r := NewRedactor(RedactorOptions{Patterns: []*regexp.Regexp{regexp.MustCompile(`[",\\]`)}})
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return
		}
		out := r.RedactBody("application/json", []byte(in))
		if !json.Valid(out) {
			t.Fatalf("invalid output %q from %q", out, in)
		}
	})
}

// BenchmarkRedactJSON redacts a body with sensitive keys and a dense API body
// with none, as RedactBody does (the quick check first) and with the full scan
// alone: the baseline the quick check has to beat.
func BenchmarkRedactJSON(b *testing.B) {
	r := NewRedactor(RedactorOptions{})
	var dense strings.Builder
	dense.WriteString(`{"items":[`)
	for i := range 60 {
		fmt.Fprintf(&dense, `{"id":%d,"name":"item-%d","price":%d.25,"tags":["a","b"]},`, 100000+i*7919, i, i*13)
	}
	dense.WriteString(`{}]}`)
	bodies := map[string][]byte{
		"secrets": []byte(`{"users":[` + strings.Repeat(`{"id":12,"name":"Ada Lovelace","email":"ada@example.com","password":"x","tags":["a","b"]},`, 200) + `{}]}`),
		"dense":   []byte(dense.String()),
	}
	for _, name := range []string{"secrets", "dense"} {
		body := bodies[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r.RedactBody("application/json", body)
			}
		})
		b.Run(name+"-full-scan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r.redactJSON(body)
			}
		})
	}
}

// randomJSON writes a random JSON value mixing sensitive keys, strings and
// numbers that the patterns match or nearly match, escapes and whitespace.
func randomJSON(rng *rand.Rand, b *strings.Builder, depth int) {
	keys := []string{`"id"`, `"name"`, `"password"`, `"Token"`, `"pass\u0077ord"`, `"items"`, `"api_key"`, `"n"`, `"card"`, `"toKen"`, `"İd"`, `"TOKEN"`, `"passwd "`}
	strs := []string{`"item-10"`, `"a"`, `"` + testJWT + `"`, `"Bearer abc.def"`, `"BEARER  x"`, `"` + testCard + `"`, `"` + badCard + `"`,
		`"4111 1111 1111 1111"`, `"5500-0000-0000-0004"`, `"q\"x\\y"`, `"\u00e9\n"`, `"<&>"`, `"é"`, `"1700000000000"`, `""`, `"x\u0041y"`, `"İ"`}
	scalars := []string{"0", "-1.5e3", testCard, "1700000000000", "4111111111111111.5", "12", "true", "false", "null", "340000000000009"}
	ws := func() {
		if rng.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "\r\n"}[rng.IntN(4)])
		}
	}
	ws()
	k := rng.IntN(10)
	if depth > 4 {
		k = 4 + rng.IntN(6)
	}
	switch {
	case k < 2:
		b.WriteByte('{')
		for j := range rng.IntN(4) {
			if j > 0 {
				b.WriteByte(',')
			}
			ws()
			b.WriteString(keys[rng.IntN(len(keys))])
			ws()
			b.WriteByte(':')
			randomJSON(rng, b, depth+1)
		}
		ws()
		b.WriteByte('}')
	case k < 4:
		b.WriteByte('[')
		for j := range rng.IntN(4) {
			if j > 0 {
				b.WriteByte(',')
			}
			randomJSON(rng, b, depth+1)
		}
		ws()
		b.WriteByte(']')
	case k < 7:
		b.WriteString(strs[rng.IntN(len(strs))])
	default:
		b.WriteString(scalars[rng.IntN(len(scalars))])
	}
	ws()
}

// The quick checks are sound: a body mayChangeJSON rules out redacts to itself,
// and a value mayMatch rules out matches no pattern. Random JSON (valid, cut
// and corrupted) is built to hit both sides of each check; the generator's
// pieces must also make the check say yes sometimes, or the test proves nothing.
func TestQuickChecksAreSound(t *testing.T) {
	r := NewRedactor(RedactorOptions{Params: []string{"x_y"}})
	rng := rand.New(rand.NewPCG(7, 9))
	ruledOut, kept := 0, 0
	for range 5000 {
		var sb strings.Builder
		randomJSON(rng, &sb, 0)
		in := []byte(sb.String())
		variants := [][]byte{in, in[:rng.IntN(len(in)+1)]}
		if len(in) > 0 {
			corrupt := "{}[]:,\"\\x 0"
			bad := bytes.Clone(in)
			bad[rng.IntN(len(bad))] = corrupt[rng.IntN(len(corrupt))]
			variants = append(variants, bad)
		}
		for _, v := range variants {
			if r.mayChangeJSON(v) {
				kept++
				continue
			}
			ruledOut++
			require.Equal(t, string(v), string(r.redactJSON(v)), "ruled out but redaction changes it")
		}
	}
	assert.Greater(t, ruledOut, 1000)
	assert.Greater(t, kept, 1000)

	for _, v := range []string{"Bearer abcdefgh", "bEaReR\tx1", "x eyJa.b.c", testCard, "4111 1111-1111 1111", "item-10", "2026-01-01 12:00:00", "+1 555-123-4567", "abc"} {
		if !r.mayMatch([]byte(v)) {
			assert.Nil(t, r.redactText([]byte(v)), v)
		}
	}
	for _, v := range []string{"Bearer abcdefgh", "x eyJa.b.c", testCard, "4111 1111-1111 1111"} {
		assert.True(t, r.mayMatch([]byte(v)), v)
	}
	// Card-length digit runs at each end of a body, exactly 13 long (found by
	// FuzzQuickChecks: a run starting at the first byte was counted one short).
	for _, v := range []string{"2000000000800", "[2000000000800]", "[1,2000000000800", "2000000000800 ", "x:4000000000006"} {
		assert.True(t, r.mayChangeJSON([]byte(v)), v)
	}
	assert.False(t, r.mayChangeJSON([]byte("200000000080")), "12 digits are no card")
	user := NewRedactor(RedactorOptions{Patterns: []*regexp.Regexp{regexp.MustCompile(`item`)}})
	assert.True(t, user.mayChangeJSON([]byte(`{"a":"item"}`)), "user patterns always take the full scan")
}

// FuzzQuickChecks: whatever the bytes, a body mayChangeJSON rules out redacts to
// itself, and text mayMatch rules out has no pattern match.
func FuzzQuickChecks(f *testing.F) {
	for _, s := range []string{`{"password":"x"}`, `[1,{"Token":{"a":[]}}]`, `{"items":[{"id":107919,"Q":"item-1","_Id":13.25,"tags":["a","b"]}]}`, "x:4111 1111-1111 1111\xc4\xb0", `{"a":"` + testJWT + `"}`, `{"n":` + testCard + `}`, `{"a":1,"password":"hunt`, `{"k" : [ "Bearer abcdefgh" ] }`, `{"Key":1}`} {
		f.Add(s)
	}
	r := NewRedactor(RedactorOptions{Params: []string{"x_y"}})
	// Names of one byte and names that start with no letter.
	odd := NewRedactor(RedactorOptions{Params: []string{"q", "_id", "2fa", "~"}})
	paths := [2]map[string]func([]byte) bool{mayChangeJSONPaths(f, r), mayChangeJSONPaths(f, odd)}
	f.Fuzz(func(t *testing.T, in string) {
		for k, r := range []*Redactor{r, odd} {
			want := mayChangeJSONRef(r, []byte(in))
			if !want {
				if out := r.redactJSON([]byte(in)); !bytes.Equal(out, []byte(in)) {
					t.Fatalf("mayChangeJSON's definition rules out %q, which redacts to %q", in, out)
				}
			}
			for name, path := range paths[k] {
				if got := path([]byte(in)); got != want {
					t.Fatalf("mayChangeJSON (%s) of %q = %v, its definition says %v", name, in, got, want)
				}
			}
		}
		if !r.mayMatch([]byte(in)) && r.redactText([]byte(in)) != nil {
			t.Fatalf("mayMatch ruled out %q, which a pattern matches", in)
		}
	})
}

// mayChangeJSONRef is mayChangeJSON's definition, one byte at a time, with
// none of its shortcuts: mayChangeJSON must give the same answer on any body.
func mayChangeJSONRef(r *Redactor, body []byte) bool {
	if !r.quickOK {
		return true
	}
	run := 0
	for i, c := range body {
		if '0' <= c && c <= '9' || c == ' ' || c == '-' {
			run++
		} else {
			run = 0
		}
		last := i+1 == len(body)
		switch {
		case run >= 13,
			c == '\\',
			c == ':' && keyBeforeRef(r, body[:i]),
			c == 'y' && i >= 1 && body[i-1] == 'e' && !last && body[i+1] == 'J',
			c|0x20 == 'b' && len(body)-i >= 8 && bytes.EqualFold(body[i:i+6], []byte("bearer")),
			c == 0xC4 && (last || body[i+1] == 0xB0),
			c == 0xE2 && (last || body[i+1] == 0x84):
			return true
		}
	}
	return false
}

// keyBeforeRef reports whether b ends with a quoted sensitive name and JSON
// whitespace.
func keyBeforeRef(r *Redactor, b []byte) bool {
	b = bytes.TrimRight(b, " \t\r\n")
	for name := range r.params {
		quoted := `"` + name + `"`
		if len(b) >= len(quoted) && bytes.EqualFold(b[len(b)-len(quoted):], []byte(quoted)) {
			return true
		}
	}
	return false
}

// TestMayChangeJSON puts each pattern the quick check looks for, and near
// misses, at every offset in bodies of every length around the 8-byte words
// it reads (and the 10 bytes the word loop needs), straddling words, at the
// start and the end, in bodies shorter than a word.
func TestMayChangeJSON(t *testing.T) {
	r := NewRedactor(RedactorOptions{Params: []string{"x_y", "q", "_id", "Zeta"}})
	tests := []struct {
		piece string
		want  bool
	}{
		{`"password":`, true},
		{`"PassWord" :`, true},
		{"\"password\"\t\r\n :", true},
		{`"client_SECRET":`, true},
		{`"x_y":`, true},
		{`"Q":`, true},   // a one-byte name: its pair is the opening quote
		{`"_ID":`, true}, // a name that is no letter
		{`"zeta":`, true},
		{`"password"`, false}, // a name, but no key: redactJSON edits values of keys only
		{`"password",`, false},
		{`"password" x:`, false},
		{`password":`, false},
		{`"xpassword":`, false},
		{`"q_":`, false},
		{`"q":`, true},
		{`:`, false},
		{`"":`, false},
		{`\`, true},
		{`eyJ`, true},
		{`bearer x`, true},
		{`BeArEr12`, true},
		{"\u0130", true},
		{"\u212a", true},
		{"4111111111111", true},
		{"4111 1111-1111", true},
		{"411-11-1111111", true},
		{"             ", true}, // 13 spaces count as a run: the check is cheap, not exact
		{`"passwor":`, false},
		{`"passwordx":`, false},
		{`"password:`, false},
		{`"xy":`, false},
		{`"price":`, false},
		{`"tags":`, false},
		{`"a":`, false},
		{`ey J`, false},
		{`eyj`, false},
		{`beare x `, false},
		{"411111111111", false},
		{"4111 1111 11", false},
		{"411111x111111", false},
		{"\xc4\xb1", false},
		{"\xe2\x85", false},
	}
	// Words: around the 8-byte words and the first three bytes. Vector: around
	// the 32-byte blocks too, in bodies up to three blocks long; with AVX-512,
	// around the 64-byte blocks and where the 32-byte kernel takes over.
	for name, path := range mayChangeJSONPaths(t, r) {
		pres, posts, fills := 18, 18, []string{"x", ",", `"`}
		switch name {
		case "vector":
			pres, posts = 80, 40
		case "vector-avx512":
			// Past two 64-byte blocks, with one fill: the other two, which
			// the other paths take, doubled the test's time under -race.
			pres, posts, fills = 140, 70, []string{"x"}
		}
		for _, tt := range tests {
			for pre := range pres {
				for post := range posts {
					for _, fill := range fills {
						body := []byte(strings.Repeat(fill, pre) + tt.piece + strings.Repeat(fill, post))
						got := path(body)
						require.Equal(t, mayChangeJSONRef(r, body), got, "%s %q", name, body)
						if fill == "x" {
							require.Equal(t, tt.want, got, "%s %q", name, body)
						}
						if !got && post < 18 {
							require.Equal(t, string(body), string(r.redactJSON(body)), "ruled out %q", body)
						}
					}
				}
			}
		}
	}
	for name, path := range mayChangeJSONPaths(t, r) {
		// Lead bytes at the very end could start U+0130 or U+212A in a longer body.
		for _, end := range []string{"\xc4", "\xe2"} {
			for pre := range 80 {
				assert.True(t, path([]byte(strings.Repeat("x", pre)+end)), "%s %d%q", name, pre, end)
			}
		}
		// "bearer" needs 8 bytes from its b: a token after a separator.
		for pre := range 80 {
			for _, end := range []string{"bearer", "bearer ", "BEARERx"} {
				body := []byte(strings.Repeat("x", pre) + end)
				assert.False(t, path(body), "%s %q", name, body)
				assert.True(t, path(append(body, '1', '2')), "%s %q", name, body)
			}
		}
		// A bare quote and nothing else, the shortest bodies.
		for _, body := range []string{"", `"`, `""`, `"q`, `"q"`, "\\"} {
			assert.Equal(t, mayChangeJSONRef(r, []byte(body)), path([]byte(body)), "%s %q", name, body)
		}
	}
}

// mayChangeJSONPaths are the ways mayChangeJSON reads a body on this machine,
// by name, each for bodies of any length.
func mayChangeJSONPaths(t testing.TB, r *Redactor) map[string]func([]byte) bool {
	paths := map[string]func([]byte) bool{"words": r.mayChangeJSONWords}
	if r.quick == nil {
		t.Log("this machine has no AVX2: only the word-at-a-time path is tested")
		return paths
	}
	paths["vector"] = func(b []byte) bool { return r.mayChangeJSONVectorWith(b, false) }
	if r.wide {
		paths["vector-avx512"] = func(b []byte) bool { return r.mayChangeJSONVectorWith(b, true) }
	} else {
		t.Log("this machine has no AVX-512: quickScanAVX512 is not tested")
	}
	return paths
}

// mayHoldPattern finds a b (either case), a J or the 13th digit at every
// offset around its 8-byte words, and rules out what has none of them.
func TestMayHoldPattern(t *testing.T) {
	for n := range 40 {
		for at := range n {
			for _, c := range []byte{'b', 'B', 'J'} {
				v := []byte(strings.Repeat("x", n))
				v[at] = c
				require.True(t, mayHoldPattern(v), "%q", v)
			}
		}
		assert.False(t, mayHoldPattern([]byte(strings.Repeat("xj:/A-Z", n))), n)
	}
	for pre := range 20 {
		for _, digits := range []string{"1234567890123", "1 2 3 4 5 6 7 8 9 0 1 2 3", "0000000000009"} {
			v := []byte(strings.Repeat("-", pre) + digits + strings.Repeat(":", pre%9))
			require.True(t, mayHoldPattern(v), "%q", v)
			twelve := bytes.Replace(v, []byte("9"), []byte("x"), 1)
			require.False(t, mayHoldPattern(twelve), "12 digits: %q", twelve)
		}
		v := []byte(strings.Repeat("/", pre) + "Thu, 01 Oct 2026 00:00:00 GMT")
		assert.False(t, mayHoldPattern(v), "a Date header has 12 digits: %q", v)
		// Bytes next to digits in ASCII, none of which count.
		assert.False(t, mayHoldPattern([]byte(strings.Repeat("/:", pre)+"//::;;..//::;;..//")), pre)
	}
}

// sensitiveHeader rules most names out by length and first letter, in any
// case, but never a sensitive one, nor one that lower-cases to one (the
// Kelvin sign is three bytes and lower-cases to "k").
func TestSensitiveHeader(t *testing.T) {
	r := NewRedactor(RedactorOptions{Headers: []string{"X-Custom-Secret", "_odd"}})
	for _, name := range []string{"Authorization", "AUTHORIZATION", "cookie", "Set-Cookie", "x-api-key", "X-API-KEY", "Proxy-Authorization",
		SessionTokenHeader, SDKKeyHeader, "x-custom-secret", "_ODD", "X-Api-\u212aey", "\u212a-a"} {
		want := name != "\u212a-a"
		assert.Equal(t, want, r.sensitiveHeader(name), "%q", name)
	}
	for _, name := range []string{"", "Content-Type", "Content-Length", "Cookies", "Authorizatio", "Date", "X-Api-Kez", "A", "\xff"} {
		assert.False(t, r.sensitiveHeader(name), "%q", name)
	}
}
