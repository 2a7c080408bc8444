package httpparse

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/reassembly"
)

const (
	reqA  = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
	reqB  = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
	reqC  = "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
	respA = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
	respB = "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb"
	respC = "HTTP/1.1 202 Accepted\r\nContent-Length: 1\r\n\r\nc"
)

func TestGapsAndPairing(t *testing.T) {
	cases := []parseCase{
		{
			name: "gap of known size inside a content-length body keeps framing",
			steps: []step{
				cli(0, "POST /up HTTP/1.1\r\nContent-Length: 10\r\n\r\n012"),
				gapOf(reassembly.Initiator, ms, 4),
				cli(2*ms, "789"+reqB),
				srv(3*ms, respA),
				srv(4*ms, respB),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /up -> 200", "GET /b -> 201"}, summaries(r))
				req := r.exchanges[0].Request
				assert.Equal(t, []string{anomalyGapInBody}, req.Anomalies)
				assert.EqualValues(t, 10, req.BodySize)
				assert.Equal(t, "012", string(req.Body))
				assert.True(t, req.BodyTruncated)
				assert.EqualValues(t, 1, r.stats.GapsInMessages)
			},
		},
		{
			name: "gap inside a chunk of known size keeps framing",
			steps: []step{
				cli(0, reqA),
				srv(ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n01"),
				gapOf(reassembly.Responder, 2*ms, 5),
				srv(3*ms, "789\r\n0\r\n\r\n"),
				cli(4*ms, reqB),
				srv(5*ms, respB),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b -> 201"}, summaries(r))
				assert.Equal(t, []string{anomalyGapInBody}, r.exchanges[0].Response.Anomalies)
				assert.EqualValues(t, 10, r.exchanges[0].Response.BodySize)
			},
		},
		{
			name: "gap of unknown size in a header drops that message only",
			steps: []step{
				cli(0, reqA),
				srv(ms, respA),
				cli(2*ms, "GET /lost HTTP/1.1\r\nHo"),
				gapOf(reassembly.Initiator, 3*ms, -1),
				cli(4*ms, "st: h\r\n\r\n"),
				srv(5*ms, respB), // answers /lost
				cli(6*ms, reqC),
				srv(7*ms, respC),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /c -> 202"}, summaries(r))
				assert.EqualValues(t, 1, r.stats.UnmatchedResponses)
				assert.EqualValues(t, 1, r.stats.GapsInMessages)
				// Index counts requests whose header block was seen.
				assert.Equal(t, 1, r.exchanges[1].Index)
			},
		},
		{
			name: "whole request lost in a request-direction gap: its response is unmatched, later pairs do not shift",
			steps: []step{
				cli(0, reqA),
				srv(ms, respA),
				gapOf(reassembly.Initiator, 2*ms, len(reqB)), // reqB never captured
				srv(3*ms, respB),
				cli(4*ms, reqC),
				srv(5*ms, respC),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /c -> 202"}, summaries(r))
				assert.Equal(t, "c", string(r.exchanges[1].Response.Body))
				assert.EqualValues(t, 1, r.stats.UnmatchedResponses)
				assert.Zero(t, r.stats.UnmatchedRequests)
			},
		},
		{
			name: "whole response lost in a response-direction gap: its request is reported, later pairs do not shift",
			steps: []step{
				cli(0, reqA),
				srv(ms, respA),
				cli(2*ms, reqB),
				gapOf(reassembly.Responder, 3*ms, len(respB)),
				cli(4*ms, reqC),
				srv(5*ms, respC),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b !" + errResponseLostInGap, "GET /c -> 202"}, summaries(r))
				assert.EqualValues(t, 1, r.stats.UnmatchedRequests)
				assert.Zero(t, r.stats.UnmatchedResponses)
			},
		},
		{
			name: "response cut by an unknown gap: its request is reported, the side resyncs",
			steps: []step{
				cli(0, reqA),
				srv(ms, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
				gapOf(reassembly.Responder, 2*ms, -1),
				srv(3*ms, "xyz\r\n0\r\n\r\n"),
				cli(4*ms, reqB),
				srv(5*ms, respB),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a !" + errResponseLostInGap, "GET /b -> 201"}, summaries(r))
				assert.EqualValues(t, len("xyz\r\n0\r\n\r\n"), r.stats.SkippedBytes)
			},
		},
		{
			name: "gap past the end of a body: the body completes, the rest resyncs",
			steps: []step{
				cli(0, reqA),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"),
				gapOf(reassembly.Responder, 2*ms, 2+3),
				cli(4*ms, reqB),
				srv(5*ms, respB),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b -> 201"}, summaries(r))
				assert.Contains(t, r.exchanges[0].Response.Anomalies, anomalyGapInBody)
				assert.EqualValues(t, 4, r.exchanges[0].Response.BodySize)
			},
		},
		{
			name: "gap in a close-delimited body",
			steps: []step{
				cli(0, reqA),
				srv(ms, "HTTP/1.0 200 OK\r\n\r\nabc"),
				gapOf(reassembly.Responder, 2*ms, 100),
				srv(3*ms, "xyz"),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200"}, summaries(r))
				resp := r.exchanges[0].Response
				assert.EqualValues(t, 106, resp.BodySize)
				assert.Equal(t, "abc", string(resp.Body))
				assert.True(t, resp.BodyTruncated)
			},
		},
		{
			name: "pipelined requests with every response captured are not touched by the heuristic",
			steps: []step{
				cli(0, reqA+reqB+reqC),
				srv(ms, respA+respB+respC),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200", "GET /b -> 201", "GET /c -> 202"}, summaries(r))
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runCase(t, c) })
	}
}

func TestResync(t *testing.T) {
	cases := []parseCase{
		{
			name: "garbage before the first request",
			steps: []step{
				cli(0, "\x00\x01garbage\r\nmore\r\n"+reqA),
				srv(ms, respA),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200"}, summaries(r))
				assert.EqualValues(t, len("\x00\x01garbage\r\nmore\r\n"), r.stats.SkippedBytes)
				assert.Equal(t, testClient, r.exchanges[0].Client)
			},
		},
		{
			name: "capture starts mid-connection on both sides",
			steps: []step{
				cli(0, "tail of a request body\r\n"),
				srv(ms, "st of an earlier response body"),
				cli(2*ms, reqB),
				srv(3*ms, "more body"+respB),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /b -> 201"}, summaries(r))
				assert.Equal(t, t0.Add(2*ms), r.exchanges[0].Request.Start)
				assert.Equal(t, t0.Add(3*ms), r.exchanges[0].Response.Start)
				assert.EqualValues(t, len("tail of a request body\r\n")+len("st of an earlier response body")+len("more body"), r.stats.SkippedBytes)
			},
		},
		{
			name: "mid-stream start inside a response: next response's request is found by content",
			steps: []step{
				{kind: stepData, side: reassembly.Initiator, data: "e: text/html\r\n\r\n<p>HTTP/1.1 is nice</p>", at: 0},
				{kind: stepData, side: reassembly.Responder, data: "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", at: ms},
				{kind: stepData, side: reassembly.Initiator, data: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", at: 2 * ms},
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"POST /x -> 200"}, summaries(r))
				assert.Equal(t, testServer, r.exchanges[0].Client)
			},
		},
		{
			name: "request glued to the end of a binary body is found by its method",
			steps: []step{
				cli(0, "\xff\xfe"+reqA),
				srv(ms, respA),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200"}, summaries(r))
				assert.EqualValues(t, 2, r.stats.SkippedBytes)
			},
		},
		{
			name: "a long stretch of garbage",
			steps: []step{
				cli(0, strings.Repeat("garbage without any message start ", 1000)),
				cli(ms, reqA),
				srv(2*ms, strings.Repeat("z", 30000)+respA),
			},
			check: func(t *testing.T, r result) {
				require.Equal(t, []string{"GET /a -> 200"}, summaries(r))
				assert.EqualValues(t, 34*1000+30000, r.stats.SkippedBytes)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.steps) > 0 && totalBytes(c.steps) > 5000 {
				// Every-offset splitting is quadratic; check a few cuttings only.
				whole := replay(c.opts, c.steps, c.reason, nil)
				c.check(t, whole)
				for _, k := range []int{1, 17, 1000, 34999, 35001, 40000, 64999} {
					require.Equal(t, whole, replay(c.opts, c.steps, c.reason, map[int]bool{k: true}), "cut at %d", k)
				}
				return
			}
			runCase(t, c)
		})
	}
}

func TestProtocolDetection(t *testing.T) {
	cases := []parseCase{
		{
			name: "TLS client hello",
			steps: []step{
				cli(0, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03GET / HTTP/1.1\r\n\r\n"),
				srv(ms, "\x16\x03\x03\x00\x7a\x02"),
			},
			check: func(t *testing.T, r result) {
				assert.Empty(t, r.exchanges)
				assert.EqualValues(t, 1, r.stats.TLSStreams)
				assert.Zero(t, r.stats.SkippedBytes)
				assert.Zero(t, r.stats.NotHTTP)
			},
		},
		{
			name: "HTTP/2 prior knowledge",
			steps: []step{
				cli(0, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00"),
				srv(ms, "\x00\x00\x00\x04\x01\x00\x00\x00\x00"),
			},
			check: func(t *testing.T, r result) {
				assert.Empty(t, r.exchanges)
				assert.EqualValues(t, 1, r.stats.HTTP2Streams)
				assert.Zero(t, r.stats.SkippedBytes)
				assert.Zero(t, r.stats.ParseErrors)
			},
		},
		{
			name: "not HTTP",
			steps: []step{
				cli(0, "SSH-2.0-OpenSSH_9.6\r\n"),
				srv(ms, "SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01"),
			},
			check: func(t *testing.T, r result) {
				assert.Empty(t, r.exchanges)
				assert.EqualValues(t, 1, r.stats.NotHTTP)
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runCase(t, c) })
	}
}

func TestOversizedHeaders(t *testing.T) {
	big := "GET /big HTTP/1.1\r\nX-Big: " + strings.Repeat("v", 300) + "\r\n\r\n"
	many := "GET /many HTTP/1.1\r\n" + strings.Repeat("X-A: 1\r\n", 11) + "\r\n"
	for _, c := range []struct{ name, req string }{{"too many bytes", big}, {"too many fields", many}} {
		t.Run(c.name, func(t *testing.T) {
			runCase(t, parseCase{
				opts: Options{MaxHeaderBytes: 200, MaxHeaders: 10},
				steps: []step{
					cli(0, c.req),
					srv(ms, respA), // answers the skipped request
					cli(2*ms, reqB),
					srv(3*ms, respB),
				},
				check: func(t *testing.T, r result) {
					require.Equal(t, []string{"GET /b -> 201"}, summaries(r))
					assert.EqualValues(t, 1, r.stats.OversizedHeaders)
					assert.EqualValues(t, 1, r.stats.UnmatchedResponses)
				},
			})
		})
	}
}
