package forwarder

import (
	"bytes"
	"compress/gzip"
	"fmt"
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
// paths that are not, answers plain, gzip-compressed or chunked,
// every tenth one with a body past slabMax (not copied: that event keeps its
// exchange).
func detachTraffic(n int) (reqs, resps [][]byte) {
	for i := range n {
		body := benchJSONBody(200 + i*97%6000)
		if i%10 == 9 {
			body = benchJSONBody(slabMax + 1000)
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

// detachedView is what sinks read of ev: its JSON, and the raw bodies (HAR)
// and token (the upload header) that the JSON does not show.
func detachedView(t *testing.T, ev *Event) string {
	t.Helper()
	return eventJSON(t, ev) + "\n" + ev.RequestBody + "\n" + ev.ResponseBody + "\n" + ev.SessionToken
}

// Events a detached Builder made keep every byte while later exchanges are
// parsed into the buffers theirs gave back at Build. The control, events of a
// plain Builder whose exchanges are released as early, changes: the buffers
// are reused, so the check could fail.
func TestDetachedEventsOutliveTheirExchanges(t *testing.T) {
	for _, detached := range []bool{true, false} {
		t.Run(fmt.Sprintf("detached=%v", detached), func(t *testing.T) {
			f := New(Options{PathTemplates: true})
			b := f.NewBuilder()
			if detached {
				b = f.NewDetachedBuilder()
			}
			type kept struct {
				ev   *Event
				want string
			}
			var events []kept
			parser := httpparse.NewStreamFactory(httpparse.Options{}, func(ex *httpparse.Exchange) {
				ev := b.Build(ex)
				events = append(events, kept{ev, detachedView(t, ev)})
				if !detached {
					ex.Release() // what detaching does, without the copies
				}
			})
			s := parser.NewStream(reassembly.Conn{Initiator: netip.MustParseAddrPort("10.0.0.1:40000"),
				Responder: netip.MustParseAddrPort("10.0.0.2:80"), SYNSeen: true, Source: "test.pcap"})
			ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			reqs, resps := detachTraffic(300)
			for i := range reqs {
				for side, msg := range [][]byte{reqs[i], resps[i]} {
					ts = ts.Add(time.Millisecond)
					s.Data(reassembly.Chunk{Side: reassembly.Side(side), Bytes: msg, Seen: ts, Completed: ts})
				}
			}
			s.Close(reassembly.EndOfCapture, ts)
			require.Len(t, events, len(reqs))

			changed, kepts := 0, 0
			for _, k := range events {
				if k.ev.ex != nil {
					kepts++
				}
				if got := detachedView(t, k.ev); got != k.want {
					changed++
				}
			}
			if !detached {
				assert.Greater(t, changed, len(events)/2, "released exchanges' buffers were reused")
				return
			}
			assert.Zero(t, changed, "a detached event changed")
			assert.Equal(t, len(events)/10, kepts, "only the events with a body past slabMax keep their exchange")
			for _, k := range events {
				assert.NotContains(t, eventJSON(t, k.ev), "tok-", "the session token is never written")
				assert.True(t, strings.HasPrefix(k.ev.SessionToken, "tok-"), "the token is kept for the upload header")
				f.Release(k.ev)
			}
		})
	}
}
