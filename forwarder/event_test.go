package forwarder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/httpparse"
)

var t0 = time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)

func exchange(req, resp *httpparse.Message) *httpparse.Exchange {
	return &httpparse.Exchange{
		Client:   netip.MustParseAddrPort("10.0.0.1:40000"),
		Server:   netip.MustParseAddrPort("[2001:db8::2]:8000"),
		Source:   "capture.pcap",
		Request:  req,
		Response: resp,
	}
}

func TestEventFields(t *testing.T) {
	req := &httpparse.Message{
		Method: "POST", Target: "/api/login?next=%2Fhome&tag=a&tag=b", Proto: "HTTP/1.1",
		Header: httpparse.Header{
			{Name: "Host", Value: "api.example.test"},
			{Name: "Content-Type", Value: "application/x-www-form-urlencoded"},
			{Name: "Authorization", Value: "Bearer abc"},
			{Name: "x-otas-agent-session-token", Value: "tok.en.value"},
			{Name: "Accept", Value: "a"},
			{Name: "Accept", Value: "b"},
		},
		Body: []byte("user=ada&lang=en"), BodySize: 16,
		Start: t0, End: t0.Add(time.Millisecond),
	}
	resp := &httpparse.Message{
		StatusCode: 201, Proto: "HTTP/1.1",
		Header:   httpparse.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Set-Cookie", Value: "s=1"}},
		Body:     []byte(`{"ok":true}`),
		BodySize: 30, // gzip on the wire
		Start:    t0.Add(20 * time.Millisecond), End: t0.Add(25500 * time.Microsecond),
	}
	ex := exchange(req, resp)
	ex.Interim = []*httpparse.Message{{StatusCode: 100}}
	f := New(Options{})
	ev := f.Event(ex)

	assert.Equal(t, "/api/login", ev.Path)
	assert.Equal(t, "POST", ev.Method)
	assert.Equal(t, 201, ev.StatusCode)
	assert.InDelta(t, 25.5, ev.LatencyMS, 1e-9, "request first byte to response last byte")
	assert.JSONEq(t, `{"next":["/home"],"tag":["a","b"]}`, ev.QueryParams)
	assert.JSONEq(t, `{"user":["ada"],"lang":["en"]}`, ev.PostData)
	assert.EqualValues(t, 16, ev.RequestSizeBytes)
	assert.EqualValues(t, 30, ev.ResponseSizeBytes, "size as transferred, not as decoded")
	assert.JSONEq(t, `{"Host":"api.example.test","Content-Type":"application/x-www-form-urlencoded","Authorization":"[REDACTED]","x-otas-agent-session-token":"[REDACTED]","Accept":"a, b"}`, ev.RequestHeaders)
	assert.JSONEq(t, `{"Content-Type":"application/json","Set-Cookie":"[REDACTED]"}`, ev.ResponseHeaders)
	assert.Equal(t, "application/x-www-form-urlencoded", ev.RequestContentType)
	assert.Equal(t, "application/json", ev.ResponseContentType)
	assert.Equal(t, "tok.en.value", ev.SessionToken)
	assert.Equal(t, []int{100}, ev.Metadata.InterimStatuses)
	assert.Equal(t, "10.0.0.1:40000", ev.Metadata.Client)
	assert.Equal(t, "[2001:db8::2]:8000", ev.Metadata.Server)
	assert.Equal(t, "api.example.test", ev.Metadata.Host)
	assert.Equal(t, "capture.pcap", ev.Metadata.Source)
	assert.True(t, ev.Metadata.AgentSessionTokenPresent)
	assert.Len(t, ev.Metadata.EventID, 36)

	b, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "tok.en.value", "the session token never reaches a sink")
	assert.NotContains(t, string(b), "Bearer abc")
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, field := range []string{"project_id", "path", "method", "status_code", "latency_ms", "request_size_bytes", "response_size_bytes",
		"request_headers", "request_body", "query_params", "post_data", "response_headers", "response_body",
		"request_content_type", "response_content_type", "custom_properties", "error", "metadata"} {
		assert.Contains(t, m, field)
	}
	assert.Len(t, m, 18, "exactly the contract's fields")
	md := m["metadata"].(map[string]any)
	assert.Equal(t, "2026-05-06T07:08:09.123456789Z", md["request_time"], "RFC 3339 with nanoseconds")
	assert.Equal(t, "2026-05-06T07:08:09.148956789Z", md["response_time"])
}

func TestEventWithoutResponse(t *testing.T) {
	ex := exchange(&httpparse.Message{Method: "GET", Target: "/slow", Proto: "HTTP/1.1", Start: t0}, nil)
	ex.Error = "no response"
	ev := New(Options{}).Event(ex)
	assert.Equal(t, 0, ev.StatusCode)
	assert.Equal(t, 0.0, ev.LatencyMS)
	assert.Equal(t, "no response", ev.Error)
	assert.Equal(t, "{}", ev.ResponseHeaders)
	assert.Equal(t, "{}", ev.QueryParams)
	assert.Equal(t, "{}", ev.PostData)
	assert.False(t, ev.Metadata.AgentSessionTokenPresent)
	b, _ := json.Marshal(ev)
	assert.NotContains(t, string(b), "response_time", "no response, no response time")
}

func TestSplitTarget(t *testing.T) {
	tests := []struct{ target, path, query string }{
		{"/a/b?x=1", "/a/b", "x=1"},
		{"/a/b", "/a/b", ""},
		{"/a#frag", "/a", ""},
		{"http://proxy.test:8080/p/q?z=2", "/p/q", "z=2"},
		{"http://proxy.test", "/", ""},
		{"example.test:443", "example.test:443", ""},
		{"*", "*", ""},
	}
	for _, tt := range tests {
		p, q := splitTarget(tt.target)
		assert.Equal(t, tt.path, p, tt.target)
		assert.Equal(t, tt.query, q, tt.target)
	}
}

func TestBodyCut(t *testing.T) {
	body := []byte(strings.Repeat("a", 9) + "é" + "bc") // é is 2 bytes at 9..10
	tests := []struct {
		limit   int
		want    string
		wantCut bool
	}{
		{0, string(body), false},
		{100, string(body), false},
		{9, strings.Repeat("a", 9), true},
		{10, strings.Repeat("a", 9), true}, // never half a rune
		{11, strings.Repeat("a", 9) + "é", true},
	}
	for _, tt := range tests {
		got, cut := cut(body, tt.limit)
		assert.Equal(t, tt.want, got, "limit %d", tt.limit)
		assert.Equal(t, tt.wantCut, cut, "limit %d", tt.limit)
	}

	big := exchange(&httpparse.Message{Method: "POST", Target: "/", Body: bytes.Repeat([]byte("x"), 200), BodySize: 200, Start: t0}, nil)
	ev := New(Options{BodyLimit: 50}).Event(big)
	assert.Len(t, ev.RequestBody, 50)
	assert.True(t, ev.Metadata.RequestBodyTruncated)
	assert.EqualValues(t, 200, ev.RequestSizeBytes)
}

func TestJSONLSink(t *testing.T) {
	var buf bytes.Buffer
	s := NewJSONLWriter("buf", &buf)
	f := New(Options{}, s)
	for _, p := range []string{"/a", "/b"} {
		require.NoError(t, f.Handle(context.Background(), exchange(&httpparse.Message{Method: "GET", Target: p, Start: t0}, nil)))
	}
	require.NoError(t, f.Close(context.Background()))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	assert.Contains(t, lines[0], `"path":"/a"`)
	assert.Contains(t, lines[1], `"path":"/b"`)
	n, errs := f.Stats()
	assert.EqualValues(t, 2, n)
	assert.EqualValues(t, 0, errs)
}

// A file sink writes whole lines in blocks of about jsonlBlock bytes and the
// rest at Close; a failed write fails every later one and Close, which still
// closes the file.
func TestJSONLSinkBlocks(t *testing.T) {
	var w recordingWriter
	s := newJSONLSink("rec", &w, &w, false)
	ev := New(Options{}).Event(exchange(&httpparse.Message{Method: "POST", Target: "/p", Body: bytes.Repeat([]byte("y"), 1000), BodySize: 1000, Start: t0}, nil))
	for range 200 {
		require.NoError(t, s.Write(context.Background(), ev))
	}
	require.NotEmpty(t, w.writes, "about 230 KB of lines must not wait for Close")
	for _, b := range w.writes {
		assert.GreaterOrEqual(t, len(b), jsonlBlock)
		assert.Equal(t, byte('\n'), b[len(b)-1], "whole lines only")
	}
	require.NoError(t, s.Close(context.Background()))
	assert.True(t, w.closed)
	lines := strings.Split(strings.TrimSuffix(string(bytes.Join(w.writes, nil)), "\n"), "\n")
	require.Len(t, lines, 200)
	for _, l := range lines {
		var back Event
		require.NoError(t, json.Unmarshal([]byte(l), &back))
		assert.Equal(t, ev.RequestBody, back.RequestBody)
	}

	boom := errors.New("disk full")
	w = recordingWriter{err: boom}
	s = newJSONLSink("rec", &w, &w, true)
	assert.ErrorIs(t, s.Write(context.Background(), ev), boom)
	assert.ErrorIs(t, s.Write(context.Background(), ev), boom, "the first error sticks")
	assert.Len(t, w.writes, 1, "nothing written after it")
	assert.ErrorIs(t, s.Close(context.Background()), boom)
	assert.True(t, w.closed, "closed even after a failed write")
}

// recordingWriter keeps each write, failing them all with err when set.
type recordingWriter struct {
	writes [][]byte
	err    error
	closed bool
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

func (w *recordingWriter) Close() error {
	w.closed = true
	return nil
}

func TestParseSinkSpec(t *testing.T) {
	tests := []struct {
		in, kind, arg, err string
	}{
		{in: "jsonl:-", kind: "jsonl", arg: "-"},
		{in: "jsonl:/tmp/x.jsonl", kind: "jsonl", arg: "/tmp/x.jsonl"},
		{in: "har:out.har", kind: "har", arg: "out.har"},
		{in: "otas", kind: "otas"},
		{in: "jsonl", err: "needs a path"},
		{in: "kafka:x", err: "unknown output"},
	}
	for _, tt := range tests {
		spec, err := ParseSinkSpec(tt.in)
		if tt.err != "" {
			require.Error(t, err, tt.in)
			assert.Contains(t, err.Error(), tt.err)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, SinkSpec{Kind: tt.kind, Arg: tt.arg}, spec)
	}
}

func TestNewEventID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newEventID()
		u, err := uuid.Parse(id)
		require.NoError(t, err, id)
		assert.Equal(t, uuid.Version(4), u.Version(), id)
		assert.Equal(t, uuid.RFC4122, u.Variant(), id)
		assert.False(t, seen[id], "repeated %s", id)
		seen[id] = true
	}
}
