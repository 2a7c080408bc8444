package httpparse

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

// snapshot is everything an exchange says, copied out of its buffers.
func snapshot(ex *Exchange) string {
	var b strings.Builder
	for _, m := range append([]*Message{ex.Request, ex.Response}, ex.Interim...) {
		if m == nil {
			b.WriteString("<nil>\n")
			continue
		}
		fmt.Fprintf(&b, "%q %q %d %q %q %q|", m.Method, m.Target, m.StatusCode, m.Reason, m.Proto, m.Body)
		for _, f := range append(append(Header{}, m.Header...), m.Trailer...) {
			fmt.Fprintf(&b, "%q=%q ", f.Name, f.Value)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// poolTraffic is n exchanges on one keep-alive connection of every shape a
// buffer is taken for: bodies in the head's room, grown past it, chunked,
// gzip-decoded (the raw buffer given back at once), a HEAD, a 100 Continue,
// pipelined pairs.
func poolTraffic(n int) (reqs, resps []string) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		body := strings.Repeat(fmt.Sprintf(`{"i":%d,"v":"%s"},`, i, strings.Repeat("x", i%50)), 1+rng.IntN(400))
		var req, resp string
		switch i % 6 {
		case 0:
			req = fmt.Sprintf("POST /a/%d HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
			resp = fmt.Sprintf("HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s", len(body)/2, body[:len(body)/2])
		case 1:
			req = fmt.Sprintf("GET /b/%d?q=%d HTTP/1.1\r\nHost: h\r\n\r\n", i, i)
			var chunked strings.Builder
			for off := 0; off < len(body); off += 3000 {
				part := body[off:min(off+3000, len(body))]
				fmt.Fprintf(&chunked, "%x;ext=%d\r\n%s\r\n", len(part), i, part)
			}
			resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked.String() + fmt.Sprintf("0\r\nX-Trailer: t%d\r\n\r\n", i)
		case 2:
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write([]byte(body))
			zw.Close()
			req = fmt.Sprintf("GET /c/%d HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n", i)
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s", z.Len(), z.String())
		case 3:
			req = fmt.Sprintf("HEAD /d/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-N: %d\r\n\r\n", len(body), i)
		case 4:
			req = fmt.Sprintf("PUT /e/%d HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
			resp = fmt.Sprintf("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d", i%100)
		case 5:
			// A declared body much larger than the reserve: it grows twice.
			big := strings.Repeat(body, 1+50_000/len(body))
			req = fmt.Sprintf("GET /f/%d HTTP/1.1\r\nHost: h\r\n\r\nGET /g/%d HTTP/1.1\r\nHost: h\r\n\r\n", i, i)
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 204 No Content\r\n\r\n", len(big), big)
		}
		reqs, resps = append(reqs, req), append(resps, resp)
	}
	return reqs, resps
}

// Exchanges released while others are kept: the buffers of released ones go
// to later messages (poisoned on the way), and no kept exchange changes by a
// byte; released ones do, so the check can fail.
func TestReleasedBuffersServeLaterMessages(t *testing.T) {
	type kept struct {
		ex   *Exchange
		want string
	}
	var keep, released []kept
	rng := rand.New(rand.NewPCG(5, 6))
	var f *StreamFactory
	f = NewStreamFactory(Options{}, func(ex *Exchange) {
		k := kept{ex, snapshot(ex)}
		if rng.IntN(6) == 0 {
			keep = append(keep, k)
			return
		}
		ex.Release()
		ex.Release() // a second call does nothing
		released = append(released, k)
	})
	f.bufs.poison = true
	s := f.NewStream(testConn())
	ts := time.Unix(1_700_000_000, 0)
	feed := func(side reassembly.Side, msg string) {
		for len(msg) > 0 {
			n := min(len(msg), 1448)
			s.Data(reassembly.Chunk{Side: side, Bytes: []byte(msg[:n]), Seen: ts, Completed: ts})
			msg = msg[n:]
		}
	}
	reqs, resps := poolTraffic(600)
	for i := range reqs {
		feed(reassembly.Initiator, reqs[i])
		feed(reassembly.Responder, resps[i])
	}
	s.Close(reassembly.Closed, ts)
	require.Len(t, keep, len(keep))
	require.Equal(t, 700, len(keep)+len(released))
	for _, k := range keep {
		require.Equal(t, k.want, snapshot(k.ex), "a kept exchange changed")
	}
	changed := 0
	for _, k := range released {
		if snapshot(k.ex) != k.want {
			changed++
		}
	}
	assert.Greater(t, changed, len(released)/2, "released exchanges were poisoned or reused")
	var pooled int
	for _, l := range f.bufs.free {
		pooled += len(l)
	}
	assert.Positive(t, pooled, "buffers came back")
}
