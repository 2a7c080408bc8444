package forwarder

import (
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/httpparse"
)

// headersJSON and newEventID are the string forms of appendHeadersJSON and
// appendEventID, for tests.
func headersJSON(h httpparse.Header) string { return string(appendHeadersJSON(nil, h)) }
func newEventID() string                    { return string(appendEventID(nil, new(slabPool).get().random16())) }

// queryCases are queries and forms of every kind url.ParseQuery sees.
var queryCases = []string{
	"", "a", "a=", "=", "=1", "&", "&&a=1&&", "a=1&b=2&a=3", "b=2&a=1&a=0&b=1&c",
	"x=%3C%26%3E&&=&y", "z=\xff&%E2%80%A8=1", "a+b=c+d&a%20b=%2B", "q=open+orders&page=2",
	"a=%zz&b=1", "a=%4&b=%", "%=1&c=2", "a=1;b=2&c=3", "a=1&b=2;&c", "k=a=b=c", "k=%22q%22%5C&K=\x01",
	"é=ü&E=e", "long=" + strings.Repeat("%41", 300) + "&short=1" + strings.Repeat("&x=1", 3),
	strings.Repeat("p=1&", maxQueryPairs-1) + "p=2", strings.Repeat("p=1&", maxQueryPairs) + "p=2",
	strings.Repeat("n=%41%42&", 200),
}

// appendQueryJSON writes what url.ParseQuery and valuesJSON do.
func TestAppendQueryJSONMatchesParseQuery(t *testing.T) {
	for _, q := range queryCases {
		want := valuesJSON(parseQuery(q))
		got := appendQueryJSON([]byte("p"), q)
		assert.Equal(t, "p"+want, string(got), "%q", q)
		m, _ := url.ParseQuery(q)
		if m == nil {
			m = url.Values{}
		}
		marshalled, err := json.Marshal(map[string][]string(m))
		require.NoError(t, err)
		assert.Equal(t, string(marshalled), want, "%q", q)
	}
}

func FuzzAppendQueryJSON(f *testing.F) {
	for _, q := range queryCases {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		if want, got := valuesJSON(parseQuery(q)), string(appendQueryJSON(nil, q)); got != want {
			t.Fatalf("%q: got %s, want %s", q, got, want)
		}
	})
}

func TestAddrPortString(t *testing.T) {
	sl := new(slabPool).get()
	for _, s := range []string{"1.2.3.4:5", "[::1]:80", "[::ffff:10.0.0.1]:443", "[fe80::1%eth0]:8080", "[2001:db8::ff00:42:8329]:65535"} {
		p := netip.MustParseAddrPort(s)
		assert.Equal(t, p.String(), addrPortString(sl, p))
	}
	assert.Equal(t, netip.AddrPort{}.String(), addrPortString(sl, netip.AddrPort{}))
}

// Strings handed out by a slab are never overwritten, whatever comes after
// them: values too big for a chunk, values that outgrow the room asked for.
func TestSlabKeepsWhatItHandsOut(t *testing.T) {
	sl := new(slabPool).get()
	var got, want []string
	for i := range 2000 {
		v := strings.Repeat(string(rune('a'+i%26)), i*7%(slabMax+100))
		ask := len(v)
		if i%3 == 0 {
			ask /= 2 // too little: the value may move to its own allocation
		}
		got = append(got, sl.string(append(sl.free(ask), v...)))
		want = append(want, strings.Clone(v))
		b := sl.bytes(append(sl.free(4), "xyz"...))
		assert.Equal(t, len(b), cap(b), "no room to append into the chunk")
	}
	assert.Equal(t, want, got)
}

// Build from several goroutines: each event has what its exchange had (run
// with -race), and releasing it lets the others reuse its chunks.
func TestBuildConcurrent(t *testing.T) {
	f := New(Options{})
	f.slabs.poison = true
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				id := strings.Repeat("x", (w*300+i)%50)
				ex := &httpparse.Exchange{
					Client: netip.MustParseAddrPort("10.0.0.1:1234"), Server: netip.MustParseAddrPort("[::1]:80"),
					Request: &httpparse.Message{Method: "POST", Target: "/a?id=" + id + "&w=" + string(rune('0'+w)),
						Header: httpparse.Header{{Name: "X-Id", Value: id}, {Name: "Content-Type", Value: "application/x-www-form-urlencoded"}},
						Body:   []byte("f=" + id)},
					Response: &httpparse.Message{StatusCode: 200, Header: httpparse.Header{{Name: "X-Id", Value: id}}, Body: []byte(`{"id":"` + id + `"}`)},
				}
				ev := f.Build(ex)
				assert.Equal(t, `{"id":["`+id+`"],"w":["`+string(rune('0'+w))+`"]}`, ev.QueryParams)
				assert.Equal(t, `{"f":["`+id+`"]}`, ev.PostData)
				assert.Equal(t, `{"Content-Type":"application/x-www-form-urlencoded","X-Id":"`+id+`"}`, ev.RequestHeaders)
				assert.Equal(t, `{"X-Id":"`+id+`"}`, ev.ResponseHeaders)
				out, err := ev.AppendJSON(nil, false)
				require.NoError(t, err)
				assert.Equal(t, encodingJSON(t, ev, false), string(out))
				assert.Contains(t, string(out), `"custom_properties":{}`)
				f.Release(ev)
			}
		}()
	}
	wg.Wait()
}

// Nil and empty custom properties are {} on every path, set ones as
// encoding/json writes a map.
func TestPropertiesJSON(t *testing.T) {
	for _, p := range []Properties{nil, {}} {
		b, err := json.Marshal(&Event{CustomProperties: p})
		require.NoError(t, err)
		assert.Contains(t, string(b), `"custom_properties":{}`)
		// The encoding/json fallback of AppendJSON, with and without HTML escaping.
		ev := &Event{CustomProperties: p, Metadata: Metadata{Extra: map[string]any{"k": 1}}}
		out, err := ev.AppendJSON(nil, true)
		require.NoError(t, err)
		assert.Contains(t, string(out), `"custom_properties":{}`)
	}
	props := map[string]any{"b": "<&>\u2028", "a": []any{1.5, nil, map[string]any{"z": true, "y": "é"}}}
	for _, html := range []bool{false, true} {
		ev := &Event{CustomProperties: props}
		out, err := ev.AppendJSON(nil, html)
		require.NoError(t, err)
		want := encodingJSON(t, map[string]any{"custom_properties": props}, html)
		assert.Contains(t, string(out), want[1:len(want)-1], "html %v", html)
	}
}

// redactPair decodes on the stack and rules values out with mayMatch: the
// result is what decoding with url.QueryUnescape and running every pattern gives.
func TestRedactPairMatchesQueryUnescape(t *testing.T) {
	r := NewRedactor(RedactorOptions{})
	reference := func(pair string) string {
		name, value, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(name)
		if err != nil {
			key = name
		}
		if r.params[strings.ToLower(key)] {
			return name + "=" + Redacted
		}
		dec, err := url.QueryUnescape(value)
		if err != nil {
			dec = value
		}
		if red := r.redactText([]byte(dec)); red != nil {
			return name + "=" + url.QueryEscape(string(red))
		}
		return pair
	}
	for _, pair := range []string{
		"q=open+orders", "pass%77ord=x", "Token=abc", "to%zzken=1", "a=Bearer+abc.def", "a=bearer%20xyz%3D%3D",
		"card=4111+1111+1111+1111", "card=4111%201111%201111%201111", "n=4111111111111112", "jwt=eyJhbGciOi.eyJzdWIi.sig",
		"e=%E2%80%A8%zz", "long=" + strings.Repeat("%42", 200) + "earer+" + strings.Repeat("x", 300), "k=" + strings.Repeat("+", 300),
	} {
		got, _ := r.redactPair(pair)
		assert.Equal(t, reference(pair), got, pair)
	}
}

// With PathTemplates, Build fills the template PathTemplate gives, from the
// slab when it differs from the path; events built later do not overwrite the
// templates of earlier ones.
func TestBuildPathTemplates(t *testing.T) {
	f := New(Options{PathTemplates: true})
	targets := []string{"/api/v1/orders", "/api/v1/users/42/orders?page=2", "/img/1234.png", "*", "/a/9f1c0e4a-77b2-4c1e-9a0b-2d9e1f3c5a77/b/7"}
	var events []*Event
	for i := range 200 {
		target := targets[i%len(targets)]
		events = append(events, f.Build(&httpparse.Exchange{Request: &httpparse.Message{Method: "GET", Target: target}}))
	}
	for i, ev := range events {
		target := targets[i%len(targets)]
		assert.Equal(t, PathTemplate(target), ev.Metadata.PathTemplate, target)
	}
	assert.Equal(t, "/api/v1/users/{id}/orders", events[1].Metadata.PathTemplate)
	assert.Equal(t, "/img/{id}.png", events[2].Metadata.PathTemplate)
	assert.Empty(t, New(Options{}).Build(&httpparse.Exchange{Request: &httpparse.Message{Method: "GET", Target: "/a/1"}}).Metadata.PathTemplate)
}
