package httpparse

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

const ms = time.Millisecond

// summary is an exchange reduced to what most cases assert on.
func summary(ex *Exchange) string {
	var b strings.Builder
	b.WriteString(ex.Request.Method + " " + ex.Request.Target)
	for _, m := range ex.Interim {
		b.WriteString(" ~" + itoa(m.StatusCode))
	}
	if ex.Response != nil {
		b.WriteString(" -> " + itoa(ex.Response.StatusCode))
	}
	if ex.Error != "" {
		b.WriteString(" !" + ex.Error)
	}
	if ex.Upgraded {
		b.WriteString(" upgraded")
	}
	return b.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

func summaries(r result) []string {
	out := []string{}
	for _, ex := range r.exchanges {
		out = append(out, summary(ex))
	}
	return out
}

func TestFraming(t *testing.T) {
	cases := []parseCase{
		{
			name: "simple keep-alive exchange",
			steps: []step{
				cli(0, "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
				srv(10*ms, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
			},
			check: func(t *testing.T, r result) {
				require.Len(t, r.exchanges, 1)
				ex := r.exchanges[0]
				assert.Equal(t, "GET /a?x=1 -> 200", summary(ex))
				assert.Equal(t, testClient, ex.Client)
				assert.Equal(t, testServer, ex.Server)
				assert.Equal(t, "test.pcap", ex.Source)
				assert.Equal(t, 0, ex.Index)
				assert.Equal(t, "HTTP/1.1", ex.Request.Proto)
				assert.Equal(t, "example.com", ex.Request.Header.Get("HOST"))
				assert.Equal(t, "OK", ex.Response.Reason)
				assert.Equal(t, "hello", string(ex.Response.Body))
				assert.EqualValues(t, 5, ex.Response.BodySize)
				assert.Equal(t, t0, ex.Request.Start)
				assert.Equal(t, t0, ex.Request.End)
				assert.Equal(t, t0.Add(10*ms), ex.Response.Start)
				assert.Equal(t, t0.Add(10*ms), ex.Response.End)
				assert.Empty(t, ex.Request.Anomalies)
				assert.Equal(t, Stats{Streams: 1, Requests: 1, Responses: 1, Exchanges: 1}, r.stats)
			},
		},
		{
			name: "lower-case version accepted and counted",
			steps: []step{
				cli(0, "GET / http/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 204 No Content\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET / -> 204"}, summaries(r))
				assert.Equal(t, []string{anomalyLenientVersion}, r.exchanges[0].Request.Anomalies)
				assert.EqualValues(t, 1, r.stats.LenientVersions)
			},
		},
		{
			name: "obs-fold joins continuation lines, names are case-insensitive",
			steps: []step{
				cli(0, "GET / HTTP/1.1\r\nX-Long: part one\r\n  part two\r\n\tpart three\r\nhOsT: h\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
			},
			check: func(t *testing.T, r result) {
				require.Len(t, r.exchanges, 1)
				req := r.exchanges[0].Request
				assert.Equal(t, "part one part two part three", req.Header.Get("x-long"))
				assert.Equal(t, "h", req.Header.Get("Host"))
				assert.Contains(t, req.Anomalies, anomalyObsFold)
				assert.Equal(t, "ok", string(r.exchanges[0].Response.Body))
			},
		},
		{
			name: "target with a raw space is kept as sent",
			steps: []step{
				cli(0, "GET /a b/c HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a b/c -> 404"}, summaries(r))
			},
		},
		{
			name: "bare LF line ends",
			steps: []step{
				cli(0, "GET /lf HTTP/1.1\nHost: h\n\n"),
				srv(ms, "HTTP/1.0 200 OK\nContent-Length: 1\n\nx"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /lf -> 200"}, summaries(r))
				assert.Equal(t, "x", string(r.exchanges[0].Response.Body))
			},
		},
		{
			name: "request bodies by content-length, identical duplicates allowed",
			steps: []step{
				cli(0, "POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"+
					"PUT /b HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nde"),
				srv(ms, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /a -> 201", "PUT /b -> 200"}, summaries(r))
				assert.Equal(t, "abc", string(r.exchanges[0].Request.Body))
				assert.Equal(t, "de", string(r.exchanges[1].Request.Body))
				assert.Equal(t, 1, r.exchanges[1].Index)
			},
		},
		{
			name: "chunked with extensions and trailers",
			steps: []step{
				cli(0, "GET /c HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
					"5;name=\"v;x\"\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0;last\r\nX-Sum: 42\r\nX-Other: y\r\n\r\n"),
				cli(2*ms, "GET /next HTTP/1.1\r\n\r\n"),
				srv(3*ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /c -> 200", "GET /next -> 200"}, summaries(r))
				resp := r.exchanges[0].Response
				assert.Equal(t, "hello world0123456789", string(resp.Body))
				assert.EqualValues(t, 21, resp.BodySize)
				assert.True(t, resp.Chunked)
				assert.Equal(t, Header{{"X-Sum", "42"}, {"X-Other", "y"}}, resp.Trailer)
				assert.Empty(t, r.exchanges[1].Response.Body)
				assert.EqualValues(t, 0, r.stats.ParseErrors)
			},
		},
		{
			name: "chunked request body",
			steps: []step{
				cli(0, "POST /up HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /up -> 200"}, summaries(r))
				assert.True(t, r.exchanges[0].Request.Chunked)
				assert.EqualValues(t, 3, r.exchanges[0].Request.BodySize)
			},
		},
		{
			name: "transfer-encoding and content-length: chunked wins",
			steps: []step{
				cli(0, "POST /te HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"+
					"GET /after HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /te -> 200", "GET /after -> 200"}, summaries(r))
				assert.Equal(t, []string{anomalyCLAndChunked}, r.exchanges[0].Request.Anomalies)
				assert.Equal(t, "hi", string(r.exchanges[0].Request.Body))
			},
		},
		{
			name: "HTTP/1.0 close-delimited response ends at the server's FIN",
			steps: []step{
				cli(0, "GET /old HTTP/1.0\r\n\r\n"),
				srv(ms, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>"),
				srv(2*ms, "</html>"),
				fin(reassembly.Responder, 3*ms),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /old -> 200"}, summaries(r))
				resp := r.exchanges[0].Response
				assert.Equal(t, "<html></html>", string(resp.Body))
				assert.Equal(t, t0.Add(2*ms), resp.End)
			},
		},
		{
			name: "close-delimited response ends at Close without FIN",
			steps: []step{
				cli(0, "GET /x HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody to the end"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /x -> 200"}, summaries(r))
				assert.Equal(t, "body to the end", string(r.exchanges[0].Response.Body))
			},
		},
		{
			name: "response with unknown transfer-coding is close-delimited",
			steps: []step{
				cli(0, "GET /x HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nabcdef"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /x -> 200"}, summaries(r))
				assert.Equal(t, "abcdef", string(r.exchanges[0].Response.Body))
			},
		},
		{
			name: "no body for HEAD, 204 and 304 whatever the headers say",
			steps: []step{
				cli(0, "HEAD /h HTTP/1.1\r\n\r\nGET /n HTTP/1.1\r\n\r\nGET /m HTTP/1.1\r\n\r\nGET /last HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"+
					"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"+
					"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"HEAD /h -> 200", "GET /n -> 204", "GET /m -> 304", "GET /last -> 200"}, summaries(r))
				for _, ex := range r.exchanges[:3] {
					assert.Empty(t, ex.Response.Body)
					assert.Zero(t, ex.Response.BodySize)
				}
				assert.Equal(t, "ok", string(r.exchanges[3].Response.Body))
			},
		},
		{
			name: "expect 100-continue: interim then final",
			steps: []step{
				cli(0, "PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
				srv(ms, "HTTP/1.1 100 Continue\r\n\r\n"),
				cli(2*ms, "data"),
				srv(3*ms, "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"PUT /f ~100 ~102 -> 201"}, summaries(r))
				ex := r.exchanges[0]
				assert.Equal(t, "data", string(ex.Request.Body))
				assert.Equal(t, t0.Add(2*ms), ex.Request.End)
				assert.Equal(t, t0.Add(ms), ex.Interim[0].Start)
				assert.EqualValues(t, 3, r.stats.Responses)
			},
		},
		{
			name: "pipelining pairs FIFO and passes HEAD to the response parser",
			steps: []step{
				cli(0, "GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"),
				srv(2*ms, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
				srv(3*ms, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /1 -> 200", "HEAD /2 -> 200", "POST /3 -> 200"}, summaries(r))
				assert.Equal(t, "A", string(r.exchanges[0].Response.Body))
				assert.Equal(t, "C", string(r.exchanges[2].Response.Body))
				for i, ex := range r.exchanges {
					assert.Equal(t, i, ex.Index)
				}
			},
		},
		{
			name: "bytes after Connection: close are still parsed",
			steps: []step{
				cli(0, "GET /a HTTP/1.0\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na"),
				cli(2*ms, "GET /b HTTP/1.1\r\n\r\n"),
				srv(3*ms, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b -> 200"}, summaries(r))
			},
		},
		{
			name: "101 switching protocols upgrades and stops parsing",
			steps: []step{
				cli(0, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
				srv(ms, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"),
				cli(2*ms, "\x81\x85abcdGET / HTTP/1.1\r\n\r\n"),
				srv(3*ms, "HTTP/1.1 200 OK\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /ws -> 101 upgraded"}, summaries(r))
				assert.EqualValues(t, 1, r.stats.Upgrades)
				assert.Zero(t, r.stats.SkippedBytes)
				assert.Zero(t, r.stats.UnmatchedResponses)
			},
		},
		{
			name: "CONNECT 200 upgrades; tunnel bytes sent early are not garbage",
			steps: []step{
				cli(0, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01\x00\x05hello"),
				srv(ms, "HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"CONNECT example.com:443 -> 200 upgraded"}, summaries(r))
				assert.Zero(t, r.stats.SkippedBytes)
				assert.Zero(t, r.stats.TLSStreams)
			},
		},
		{
			name: "refused CONNECT keeps parsing",
			steps: []step{
				cli(0, "CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
				cli(2*ms, "CONNECT example.com:443 HTTP/1.1\r\nProxy-Authorization: x\r\n\r\n"),
				srv(3*ms, "HTTP/1.1 200 OK\r\n\r\n"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"CONNECT example.com:443 -> 407", "CONNECT example.com:443 -> 200 upgraded"}, summaries(r))
			},
		},
		{
			name: "upgrade request answered normally: held bytes are parsed",
			steps: []step{
				cli(0, "GET /a HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"),
				srv(2*ms, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b -> 200"}, summaries(r))
				assert.Equal(t, t0, r.exchanges[1].Request.Start)
			},
		},
		{
			// The held request must be parsed before the second answer, even
			// when both answers come in one segment (FuzzSplitInvariance found
			// the counters differing with where the server's bytes were cut).
			name: "upgrade request answered normally, both answers in one segment",
			steps: []step{
				cli(0, "GET /a HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b -> 200"}, summaries(r))
				assert.Zero(t, r.stats.UnmatchedResponses)
			},
		},
		{
			name: "early response before the request body ends is handed on when the request completes",
			steps: []step{
				cli(0, "POST /big HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc"),
				srv(ms, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"),
				cli(2*ms, "def"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /big -> 413"}, summaries(r))
				assert.Equal(t, "abcdef", string(r.exchanges[0].Request.Body))
				assert.Equal(t, t0.Add(2*ms), r.exchanges[0].Request.End)
			},
		},
		{
			name: "server is the initiator (capture began with a server packet)",
			steps: []step{
				{kind: stepData, side: reassembly.Responder, data: "GET /flip HTTP/1.1\r\n\r\n", at: ms},
				{kind: stepData, side: reassembly.Initiator, data: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", at: 2 * ms},
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /flip -> 200"}, summaries(r))
				assert.Equal(t, testServer, r.exchanges[0].Client)
				assert.Equal(t, testClient, r.exchanges[0].Server)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runCase(t, c) })
	}
}

func TestInvalidFramingResyncs(t *testing.T) {
	next := "GET /next HTTP/1.1\r\n\r\n"
	cases := []struct {
		name, head string
		garbage    bool // no valid request line: skipped, not a parse error
		// kept: the head was valid and the body's framing broke, so the request
		// keeps its place in the pipeline (its answer must not go to the next
		// request) and comes out with an "invalid request" error.
		kept bool
	}{
		{name: "invalid content-length", head: "POST /bad HTTP/1.1\r\nContent-Length: abc\r\n\r\nxyz"},
		{name: "negative content-length", head: "POST /bad HTTP/1.1\r\nContent-Length: -5\r\n\r\nxyz"},
		{name: "overflowing content-length", head: "POST /bad HTTP/1.1\r\nContent-Length: 18446744073709551617\r\n\r\nxyz"},
		{name: "conflicting content-length", head: "POST /bad HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nxyz"},
		{name: "conflicting list", head: "POST /bad HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nxyz"},
		{name: "empty content-length", head: "POST /bad HTTP/1.1\r\nContent-Length: \r\n\r\nxyz"},
		{name: "request transfer-encoding not ending in chunked", head: "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz"},
		{name: "invalid chunk size", head: "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxyz\r\n0\r\n\r\n", kept: true},
		{name: "chunk size over 2^63", head: "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nxyz\r\n", kept: true},
		{name: "chunk size over 2^64", head: "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nxyz\r\n", kept: true},
		{name: "chunk without CRLF after data", head: "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyzW\r\n0\r\n\r\n", kept: true},
		{name: "HTTP/0.9 request line", head: "GET /bad\r\n\r\n", garbage: true},
		{name: "HTTP/2.0 request line", head: "GET /bad HTTP/2.0\r\n\r\n", garbage: true},
		{name: "separator in method", head: "G(T /bad HTTP/1.1\r\n\r\n", garbage: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runCase(t, parseCase{
				steps: []step{cli(0, c.head+next)},
				check: func(t *testing.T, r result) {
					got := summaries(r)
					if c.kept {
						require.Len(t, got, 2)
						assert.True(t, strings.HasPrefix(got[0], "POST /bad !invalid request: "), got[0])
						assert.Contains(t, r.exchanges[0].Request.Anomalies, anomalyInvalidFraming)
						got = got[1:]
					}
					require.Equal(t, []string{"GET /next !no response"}, got)
					if c.garbage {
						assert.EqualValues(t, len(c.head), r.stats.SkippedBytes)
						assert.Zero(t, r.stats.ParseErrors)
					} else {
						assert.EqualValues(t, 1, r.stats.ParseErrors)
					}
					if c.kept {
						assert.EqualValues(t, 2, r.stats.UnmatchedRequests)
					} else {
						assert.EqualValues(t, 1, r.stats.UnmatchedRequests)
					}
				},
			})
		})
	}
}

func TestInvalidResponseFraming(t *testing.T) {
	runCase(t, parseCase{
		steps: []step{
			cli(0, "GET /a HTTP/1.1\r\n\r\n"),
			srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nbody"),
			cli(2*ms, "GET /b HTTP/1.1\r\n\r\n"),
			srv(3*ms, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		},
		check: func(t *testing.T, r result) {
			require.Len(t, r.exchanges, 2)
			assert.Nil(t, r.exchanges[0].Response)
			assert.Contains(t, r.exchanges[0].Error, errResponseInvalid)
			assert.Contains(t, r.exchanges[0].Error, "content-length")
			assert.Equal(t, "GET /b -> 200", summary(r.exchanges[1]))
			assert.EqualValues(t, 4, r.stats.SkippedBytes)
		},
	})
}

func TestCloseReasons(t *testing.T) {
	steps := []step{
		srv(0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), // answers a request before the capture
		cli(ms, "GET /1 HTTP/1.1\r\n\r\n"),
		srv(2*ms, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
		cli(3*ms, "GET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
	}
	for _, c := range []struct {
		reason reassembly.CloseReason
		want   string
	}{
		{reassembly.Stopped, errCaptureStopped},
		{reassembly.Closed, errNoResponse},
		{reassembly.IdleTimeout, errNoResponse},
		{reassembly.EndOfCapture, errNoResponse},
	} {
		t.Run(c.reason.String(), func(t *testing.T) {
			runCase(t, parseCase{steps: steps, reason: c.reason, check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /1 -> 200", "GET /2 !" + c.want, "POST /3 !" + c.want}, summaries(r))
				last := r.exchanges[2].Request
				assert.Contains(t, last.Anomalies, anomalyIncomplete)
				assert.Equal(t, "abc", string(last.Body))
				assert.True(t, last.BodyTruncated)
				assert.EqualValues(t, 1, r.stats.UnmatchedResponses)
				assert.EqualValues(t, 2, r.stats.UnmatchedRequests)
			}})
		})
	}
}

func TestResponseCutByClose(t *testing.T) {
	runCase(t, parseCase{
		steps: []step{
			cli(0, "GET /big HTTP/1.1\r\n\r\n"),
			srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
		},
		check: func(t *testing.T, r result) {
			require.Equal(t, []string{"GET /big -> 200 !" + errResponseIncomplete}, summaries(r))
			assert.Equal(t, "partial", string(r.exchanges[0].Response.Body))
			assert.True(t, r.exchanges[0].Response.BodyTruncated)
		},
	})
}

// A message's head and body share one buffer, its strings viewing the head: a
// body that outgrows the room reserved after the head (bodyReserve) moves to a
// buffer of its own, and the head's strings stay as they were, however the
// bytes came (whole, in MTU-sized pieces, one byte at a time).
func TestHeadStringsSurviveBodyGrowth(t *testing.T) {
	body := strings.Repeat(`{"id":12345,"name":"x"},`, 2*bodyReserve/24)
	steps := []step{
		cli(0, "POST /api/items?x=1 HTTP/1.1\r\nHost: api.test\r\nX-Trace: abc-123\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body),
		srv(ms, "HTTP/1.1 201 Created\r\nX-Server: test\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body),
	}
	mtu, every := map[int]bool{}, map[int]bool{}
	for k := 1; k < totalBytes(steps); k++ {
		mtu[k] = k%1448 == 0
		every[k] = true
	}
	for name, cuts := range map[string]map[int]bool{"whole": nil, "mtu": mtu, "bytes": every} {
		r := replay(Options{}, steps, reassembly.Closed, cuts)
		require.Len(t, r.exchanges, 1, name)
		req, resp := r.exchanges[0].Request, r.exchanges[0].Response
		assert.Equal(t, "/api/items?x=1", req.Target, name)
		assert.Equal(t, Header{{Name: "Host", Value: "api.test"}, {Name: "X-Trace", Value: "abc-123"}, {Name: "Content-Length", Value: itoa(len(body))}}, req.Header, name)
		assert.Equal(t, "Created", resp.Reason, name)
		assert.Equal(t, "test", resp.Header.Get("X-Server"), name)
		assert.Equal(t, body, string(req.Body), name)
		assert.Equal(t, body, string(resp.Body), name)
	}
}

// isTokenChar is RFC 9110's tchar, for every byte; trimOWS drops spaces and
// tabs at both ends only.
func TestTokenChars(t *testing.T) {
	for c := range 256 {
		b := byte(c)
		want := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
		require.Equal(t, want, isTokenChar(b), "byte %#x", c)
	}
	for _, s := range []string{"", " ", "\t \t", "a", " a", "a ", "\ta b\t ", " \r\n ", "x\t\ty", "\x00 z"} {
		assert.Equal(t, strings.Trim(s, " \t"), string(trimOWS([]byte(s))), "%q", s)
		assert.Equal(t, strings.TrimRight(s, " \t"), string(trimRightOWS([]byte(s))), "%q", s)
	}
}
