package forwarder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/httpparse"
)

// slabExchange is exchange i of a run: a form post with a query, and a JSON
// answer whose size walks from a few bytes to past slabMax (its own allocation).
func slabExchange(i int) *httpparse.Exchange {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	body := benchJSONBody(20 + rng.IntN(slabMax+4096))
	return exchange(
		&httpparse.Message{Method: "POST", Target: fmt.Sprintf("/api/v1/users/%d/orders?page=%d&q=a+b", 1000+i, i%7), Proto: "HTTP/1.1",
			Header: httpparse.Header{{Name: "Host", Value: "api.test"}, {Name: "Content-Type", Value: "application/x-www-form-urlencoded"},
				{Name: "X-Request-Id", Value: fmt.Sprintf("req-%d", i)}},
			Body: []byte(fmt.Sprintf("a=%d&b=%s", i, strings.Repeat("x", i%300)))},
		&httpparse.Message{StatusCode: 200, Proto: "HTTP/1.1",
			Header: httpparse.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "X-N", Value: fmt.Sprint(i)}},
			Body:   body},
	)
}

// eventJSON is ev as a sink writes it, without its random id.
func eventJSON(t *testing.T, ev *Event) string {
	t.Helper()
	out, err := ev.AppendJSON(nil, false)
	require.NoError(t, err)
	return strings.Replace(string(out), ev.Metadata.EventID, "ID", 1)
}

// Events kept while others are released and their chunks reused keep every
// byte; released ones are overwritten (the poison shows), so the check above
// could fail. The same whether events come from Forwarder.Build (slabs from
// the pool) or from Builders (a slab each, as the parallel workers build).
func TestSlabReleaseReusesOnlyReleasedChunks(t *testing.T) {
	for _, builders := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("builders=%d", builders), func(t *testing.T) { testSlabRelease(t, builders) })
	}
}

func testSlabRelease(t *testing.T, builders int) {
	type kept struct {
		ev   *Event
		want string
	}
	// build makes 3000 events, keeping one in keepOneIn unreleased (none when
	// 0), and returns the kept and released ones and how many chunks held them.
	build := func(keepOneIn int) (keep, released []kept, chunks int) {
		f := New(Options{PathTemplates: true})
		f.slabs.poison = true
		buildEvent := f.Build
		if builders > 0 {
			bs := make([]*Builder, builders)
			for i := range bs {
				bs[i] = f.NewBuilder()
			}
			n := 0
			buildEvent = func(ex *httpparse.Exchange) *Event {
				n++
				return bs[n%len(bs)].Build(ex)
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		seen := map[*chunk]bool{}
		for i := range 3000 {
			ev := buildEvent(slabExchange(i))
			k := kept{ev, eventJSON(t, ev)}
			for _, c := range ev.chunks {
				if c != nil {
					seen[c] = true
				}
			}
			if keepOneIn == 0 || rng.IntN(keepOneIn) == 0 {
				keep = append(keep, k)
				continue
			}
			f.Release(ev)
			f.Release(ev) // a second release is a no-op
			released = append(released, k)
		}
		return keep, released, len(seen)
	}
	_, _, unreleasedChunks := build(0)
	keep, released, chunks := build(20)
	for _, k := range keep {
		require.Equal(t, k.want, eventJSON(t, k.ev), "a kept event changed")
	}
	assert.Less(t, chunks, unreleasedChunks/2, "chunks were reused")
	changed := 0
	for _, k := range released[:len(released)/2] {
		if eventJSON(t, k.ev) != k.want {
			changed++
		}
	}
	assert.Greater(t, changed, len(released)/4, "released events' chunks were poisoned or reused")
}

// An event with bytes in more chunks than it counts pins the others: they
// are never reused, so those bytes stay whatever is released later.
func TestSlabPinsChunksPastCount(t *testing.T) {
	p := new(slabPool)
	p.poison = true
	sl := p.get()
	perChunk := slabChunk / slabMax
	type value struct {
		s, want string
		c       *chunk
	}
	var vals []value
	for i := range (len(eventChunks{}) + 2) * perChunk {
		want := strings.Repeat(string(rune('a'+i%26)), slabMax)
		v := sl.string(append(sl.free(slabMax), want...))
		vals = append(vals, value{v, want, sl.c})
	}
	h := sl.take()
	counted := map[*chunk]bool{}
	for _, c := range h {
		require.NotNil(t, c)
		counted[c] = true
	}
	pinned := 0
	for _, v := range vals {
		if !counted[v.c] {
			require.True(t, v.c.pinned.Load(), "a chunk the event does not count is pinned")
			pinned++
		}
	}
	require.Equal(t, 2*perChunk, pinned)
	p.release(&h)
	// Many more events' worth of chunks, each released.
	for range 20 * perChunk {
		sl.string(append(sl.free(slabMax), strings.Repeat("z", slabMax)...))
		h2 := sl.take()
		p.release(&h2)
	}
	poisoned := 0
	for i, v := range vals {
		if counted[v.c] {
			if v.s != v.want {
				poisoned++
			}
			continue
		}
		assert.Equal(t, v.want, v.s, "value %d, in a pinned chunk", i)
	}
	assert.Positive(t, poisoned, "the counted chunks were released and reused")
}

// withoutIDs blanks the event ids (random) in sink output.
func withoutIDs(s string) string {
	var out strings.Builder
	for {
		i := strings.Index(s, `"event_id":"`)
		if j := strings.Index(s, `"_otasEventId":"`); j >= 0 && (i < 0 || j < i) {
			i = j + len(`"_otasEventId":"`) - len(`"event_id":"`)
		}
		if i < 0 {
			return out.String() + s
		}
		i += len(`"event_id":"`)
		out.WriteString(s[:i])
		s = s[i+uuidLen:]
	}
}

// Every sink copies what it keeps of an event: with chunks poisoned as each
// event is released (Handle releases after Deliver), what the sinks wrote,
// uploaded and counted is what they get from events never released.
func TestSinksKeepNothingOfReleasedEvents(t *testing.T) {
	const n = 400
	run := func(release bool) (jsonl, har string, endpoints []EndpointSummary, uploaded map[string]string) {
		h := newHarness(t)
		otas := h.sink(h.config())
		var jb, hb bytes.Buffer
		stats := NewEndpointStats(nil, 0)
		f := New(Options{PathTemplates: true}, NewJSONLWriter("test", &jb), NewHARWriter("test", &hb), stats, otas)
		f.slabs.poison = true
		tok := h.token("agent-1")
		for i := range n {
			ex := slabExchange(i)
			ex.Request.Header = append(ex.Request.Header, httpparse.Field{Name: SessionTokenHeader, Value: tok})
			ex.Request.Start = time.Date(2026, 1, 1, 0, 0, 0, i, time.UTC)
			ex.Response.End = ex.Request.Start.Add(time.Millisecond)
			if release {
				require.NoError(t, f.Handle(context.Background(), ex))
			} else {
				require.NoError(t, f.Deliver(context.Background(), f.Build(ex)))
			}
		}
		require.NoError(t, f.Close(context.Background()))
		uploaded = map[string]string{}
		for _, st := range h.srv.Stored() {
			ev := st.Event()
			md := ev["metadata"].(map[string]any)
			delete(md, "event_id")
			delete(ev, "agent_session_token") // signed with the time
			b, err := json.Marshal(ev)
			require.NoError(t, err)
			uploaded[fmt.Sprint(ev["path"])] = string(b)
		}
		return withoutIDs(jb.String()), withoutIDs(hb.String()), stats.Summaries(), uploaded
	}
	wantJSONL, wantHAR, wantEndpoints, wantUploaded := run(false)
	gotJSONL, gotHAR, gotEndpoints, gotUploaded := run(true)
	require.Equal(t, n, strings.Count(wantJSONL, "\n"))
	// Compared whole, not printed: a line is tens of kilobytes.
	assert.True(t, wantJSONL == gotJSONL, "jsonl differs")
	assert.False(t, strings.Contains(gotJSONL, "\x01"), "jsonl holds poison")
	assert.True(t, wantHAR == gotHAR, "har differs")
	assert.Equal(t, wantEndpoints, gotEndpoints, "endpoint stats")
	require.Len(t, wantUploaded, n)
	assert.True(t, reflect.DeepEqual(wantUploaded, gotUploaded), "otas uploads differ")
}

// keepingSink keeps the events it is given, as a test might: not an
// EventCopier.
type keepingSink struct{ evs []*Event }

func (s *keepingSink) Write(_ context.Context, ev *Event) error {
	s.evs = append(s.evs, ev)
	return nil
}
func (s *keepingSink) Close(context.Context) error { return nil }

// One sink that keeps events turns reuse off: what it kept stays whole
// through Handle's releases.
func TestReleaseOffWhenASinkKeepsEvents(t *testing.T) {
	for _, sinks := range [][]Sink{
		nil,
		{NewJSONLWriter("discard", io.Discard)},
		{NewJSONLWriter("discard", io.Discard), new(keepingSink)},
	} {
		keeping := len(sinks) > 1
		sink := new(keepingSink)
		f := New(Options{}, sinks...)
		f.slabs.poison = true
		assert.Equal(t, !keeping, f.reuse)
		var want []string
		for i := range 300 {
			ev := f.Build(slabExchange(i))
			want = append(want, eventJSON(t, ev))
			require.NoError(t, f.Deliver(context.Background(), ev))
			sink.evs = append(sink.evs, ev)
			f.Release(ev)
		}
		same := 0
		for i, ev := range sink.evs {
			if eventJSON(t, ev) == want[i] {
				same++
			}
		}
		if keeping {
			assert.Equal(t, len(want), same, "no event changed")
		} else {
			assert.Less(t, same, len(want)/2, "released events were reused (the check above can fail)")
		}
	}
}

// Event ids from one slab never repeat, across refills of its random bytes,
// and are version 4, RFC 9562 variant.
func TestEventIDsFromSlab(t *testing.T) {
	sl := new(slabPool).get()
	seen := map[string]bool{}
	for range 3 * len(sl.random) / 16 {
		id := string(appendEventID(nil, sl.random16()))
		require.False(t, seen[id], "repeated id %s", id)
		seen[id] = true
		u, err := uuid.Parse(id)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(4), u.Version())
		require.Equal(t, uuid.RFC4122, u.Variant())
	}
}
