package forwarder

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/httpparse"
	"github.com/otas/otas-sniff/reassembly"
)

// detachTraffic is n exchanges of one keep-alive connection, as bytes: JSON
// posts with a token and a query, to paths that are their own template and
// paths that are not, answers plain, gzip-compressed or chunked, some with
// text that HTML escaping changes or that is not UTF-8, every tenth one with a
// body past slabMax (not copied: that event keeps its exchange).
func detachTraffic(n int) (reqs, resps [][]byte) {
	for i := range n {
		body := benchJSONBody(200 + i*97%6000)
		switch {
		case i%10 == 9:
			body = benchJSONBody(slabMax + 1000)
		case i%7 == 0:
			body = append(body, fmt.Sprintf("<b>%d</b> & \xff\xfe \u2028 é", i)...)
		}
		path := fmt.Sprintf("/api/v1/users/%d/orders", 1000+i) // its template differs
		if i%2 == 0 {
			path = "/api/v1/orders" // its own template
		}
		req := fmt.Sprintf("POST %s?page=%d HTTP/1.1\r\nHost: api%d.test\r\nContent-Type: application/json\r\n"+
			"X-OTAS-Agent-Session-Token: tok-%d\r\nAuthorization: Bearer s%d\r\nContent-Length: %d\r\n\r\n%s", path, i, i%3, i, i, len(body), body)
		var resp string
		switch i % 3 {
		case 0:
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		case 1:
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(body)
			zw.Close()
			resp = fmt.Sprintf("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", z.Len(), z.String())
		case 2:
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
		}
		reqs, resps = append(reqs, []byte(req)), append(resps, []byte(resp))
	}
	return reqs, resps
}

// parseInto parses the exchanges of detachTraffic(n) on one connection and
// hands each to emit.
func parseInto(n int, emit func(*httpparse.Exchange)) {
	parser := httpparse.NewStreamFactory(httpparse.Options{}, emit)
	s := parser.NewStream(reassembly.Conn{Initiator: netip.MustParseAddrPort("10.0.0.1:40000"),
		Responder: netip.MustParseAddrPort("10.0.0.2:80"), SYNSeen: true, Source: "test.pcap"})
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reqs, resps := detachTraffic(n)
	for i := range reqs {
		for side, msg := range [][]byte{reqs[i], resps[i]} {
			ts = ts.Add(time.Millisecond)
			s.Data(reassembly.Chunk{Side: reassembly.Side(side), Bytes: msg, Seen: ts, Completed: ts})
		}
	}
	s.Close(reassembly.EndOfCapture, ts)
}

// eventView is what sinks read of ev: its JSON as the JSONL and OTAS sinks
// write it, with HTML escaping, and through encoding/json (an event with
// custom properties, compared as a value), and the raw bodies (HAR) and token (the upload header).
func eventView(t *testing.T, ev *Event) string {
	t.Helper()
	html, err := ev.AppendJSON(nil, true)
	require.NoError(t, err)
	cp := *ev
	cp.CustomProperties = Properties{"k": "v"}
	slow, err := cp.AppendJSON(nil, false)
	require.NoError(t, err)
	// As a value: a body kept only encoded comes back through a decoder, so
	// the bytes it had that were not UTF-8 come out as U+FFFD itself rather
	// than its escape.
	var v any
	require.NoError(t, json.Unmarshal(slow, &v))
	v.(map[string]any)["metadata"].(map[string]any)["event_id"] = "ID"
	slow, err = json.Marshal(v)
	require.NoError(t, err)
	id := ev.Metadata.EventID
	return strings.Join([]string{eventJSON(t, ev), strings.Replace(string(html), id, "ID", 1), string(slow),
		ev.RequestBody, ev.ResponseBody, ev.SessionToken}, "\n")
}

// Events a detached Builder made keep every byte while later exchanges are
// parsed into the buffers theirs gave back at Build, and read as a plain
// Builder's events read: with their raw bodies when a sink reads them (HAR),
// and only through their JSON when every sink writes JSON (then RequestBody
// and ResponseBody are empty). The control, a plain Builder whose exchanges
// are released as early, changes: the buffers are reused, so the check could
// fail.
func TestDetachedEventsOutliveTheirExchanges(t *testing.T) {
	const n = 300
	// What each event reads as when its exchange is kept.
	var want []string
	plain := New(Options{PathTemplates: true})
	pb := plain.NewBuilder()
	parseInto(n, func(ex *httpparse.Exchange) { want = append(want, eventView(t, pb.Build(ex))) })
	require.Len(t, want, n)
	noBodies := func(v string) string {
		parts := strings.Split(v, "\n")
		parts[3], parts[4] = "", ""
		return strings.Join(parts, "\n")
	}

	for _, c := range []struct {
		name      string
		sinks     []Sink
		detached  bool
		rawBodies bool
	}{
		{"detached, a sink reads bodies", []Sink{NewJSONLWriter("discard", io.Discard), NewHARWriter("discard", io.Discard)}, true, true},
		{"detached, every sink writes JSON", []Sink{NewJSONLWriter("discard", io.Discard), NewEndpointStats(io.Discard, 10)}, true, false},
		{"control", nil, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := New(Options{PathTemplates: true}, c.sinks...)
			b := f.NewBuilder()
			if c.detached {
				b = f.NewDetachedBuilder()
			}
			var events []*Event
			parseInto(n, func(ex *httpparse.Exchange) {
				events = append(events, b.Build(ex))
				if !c.detached {
					ex.Release() // what detaching does, without the copies
				}
			})
			require.Len(t, events, n)

			changed, kept := 0, 0
			for i, ev := range events {
				if ev.ex != nil {
					kept++
				}
				w := want[i]
				if !c.rawBodies && ev.ex == nil {
					w = noBodies(w)
				}
				if eventView(t, ev) != w {
					changed++
				}
			}
			if !c.detached {
				assert.Greater(t, changed, n/2, "released exchanges' buffers were reused")
				return
			}
			assert.Zero(t, changed, "a detached event reads as the plain builder's")
			assert.Equal(t, n/10, kept, "only the events with a body past slabMax keep their exchange")
			for _, ev := range events {
				assert.NotContains(t, eventJSON(t, ev), "tok-", "the session token is never written")
				assert.True(t, strings.HasPrefix(ev.SessionToken, "tok-"), "the token is kept for the upload header")
				f.Release(ev)
			}
		})
	}
}

// A body set on an event that keeps its bodies only encoded replaces the
// encoded one.
func TestEncodedBodiesGiveWayToNewOnes(t *testing.T) {
	f := New(Options{}, NewJSONLWriter("discard", io.Discard))
	b := f.NewDetachedBuilder()
	var ev *Event
	parseInto(1, func(ex *httpparse.Exchange) { ev = b.Build(ex) })
	require.True(t, ev.bodiesEncoded())
	before := eventJSON(t, ev)
	assert.Contains(t, before, `"request_body":"{\"items\"`)
	ev.RequestBody = "replaced <b>"
	for _, html := range []bool{false, true} {
		out, err := ev.AppendJSON(nil, html)
		require.NoError(t, err)
		assert.Contains(t, string(out), `"request_body":"replaced `, "html=%v", html)
		assert.Contains(t, string(out), `"response_body":"{\"items\"`, "html=%v", html)
	}
}
