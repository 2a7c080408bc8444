package forwarder

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// harKind is a JSON type as HAR 1.2 names them.
type harKind int

const (
	kString harKind = iota
	kNumber
	kInteger
	kBool
	kObject
	kArray
)

func (k harKind) String() string {
	return [...]string{"string", "number", "integer", "boolean", "object", "array"}[k]
}

// harValidator checks a decoded HAR document against the HAR 1.2 specification:
// required members, member types, and no unknown members except the custom
// ones starting with "_" that the spec allows.
type harValidator struct {
	problems []string
}

func (v *harValidator) fail(path, format string, args ...any) {
	v.problems = append(v.problems, path+": "+fmt.Sprintf(format, args...))
}

func kindOf(x any) (harKind, bool) {
	switch n := x.(type) {
	case string:
		return kString, true
	case float64:
		if n == math.Trunc(n) {
			return kInteger, true
		}
		return kNumber, true
	case bool:
		return kBool, true
	case map[string]any:
		return kObject, true
	case []any:
		return kArray, true
	}
	return 0, false
}

func (v *harValidator) typeOK(path string, x any, want harKind) bool {
	got, ok := kindOf(x)
	if !ok {
		v.fail(path, "is %v, want %s", x, want)
		return false
	}
	if got == want || (want == kNumber && got == kInteger) {
		return true
	}
	v.fail(path, "is a %s, want %s", got, want)
	return false
}

// object checks that x is an object with the required members, only known or
// custom members, each of its type, and returns it.
func (v *harValidator) object(path string, x any, required, optional map[string]harKind) map[string]any {
	if !v.typeOK(path, x, kObject) {
		return nil
	}
	obj := x.(map[string]any)
	for name, kind := range required {
		val, ok := obj[name]
		if !ok {
			v.fail(path, "missing required %q", name)
			continue
		}
		v.typeOK(path+"."+name, val, kind)
	}
	for name, val := range obj {
		if _, ok := required[name]; ok {
			continue
		}
		if kind, ok := optional[name]; ok {
			v.typeOK(path+"."+name, val, kind)
			continue
		}
		if !strings.HasPrefix(name, "_") {
			v.fail(path, "unknown member %q", name)
		}
	}
	return obj
}

func (v *harValidator) array(path string, x any) []any {
	if x == nil {
		return nil
	}
	if a, ok := x.([]any); ok {
		return a
	}
	return nil
}

func (v *harValidator) nameValues(path string, x any, extra map[string]harKind) {
	for i, item := range v.array(path, x) {
		opt := map[string]harKind{"comment": kString}
		for k, kind := range extra {
			opt[k] = kind
		}
		v.object(fmt.Sprintf("%s[%d]", path, i), item, map[string]harKind{"name": kString, "value": kString}, opt)
	}
}

func (v *harValidator) cookies(path string, x any) {
	for i, item := range v.array(path, x) {
		v.object(fmt.Sprintf("%s[%d]", path, i), item,
			map[string]harKind{"name": kString, "value": kString},
			map[string]harKind{"path": kString, "domain": kString, "expires": kString, "httpOnly": kBool, "secure": kBool, "comment": kString})
	}
}

func (v *harValidator) document(doc any) {
	root := v.object("$", doc, map[string]harKind{"log": kObject}, nil)
	if root == nil {
		return
	}
	log := v.object("log", root["log"],
		map[string]harKind{"version": kString, "creator": kObject, "entries": kArray},
		map[string]harKind{"browser": kObject, "pages": kArray, "comment": kString})
	if log == nil {
		return
	}
	if ver, ok := log["version"]; ok && ver != "1.2" {
		v.fail("log.version", "is %v, want 1.2", log["version"])
	}
	creator := map[string]harKind{"name": kString, "version": kString}
	v.object("log.creator", log["creator"], creator, map[string]harKind{"comment": kString})
	for i, e := range v.array("log.entries", log["entries"]) {
		v.entry(fmt.Sprintf("log.entries[%d]", i), e)
	}
}

func (v *harValidator) entry(path string, x any) {
	e := v.object(path, x,
		map[string]harKind{"startedDateTime": kString, "time": kNumber, "request": kObject, "response": kObject, "cache": kObject, "timings": kObject},
		map[string]harKind{"pageref": kString, "serverIPAddress": kString, "connection": kString, "comment": kString})
	if e == nil {
		return
	}
	if s, ok := e["startedDateTime"].(string); ok {
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			v.fail(path+".startedDateTime", "%q is not ISO 8601: %v", s, err)
		}
	}
	v.request(path+".request", e["request"])
	v.response(path+".response", e["response"])
	v.object(path+".cache", e["cache"], nil, map[string]harKind{"beforeRequest": kObject, "afterRequest": kObject, "comment": kString})

	timings := v.object(path+".timings", e["timings"],
		map[string]harKind{"send": kNumber, "wait": kNumber, "receive": kNumber},
		map[string]harKind{"blocked": kNumber, "dns": kNumber, "connect": kNumber, "ssl": kNumber, "comment": kString})
	if timings == nil {
		return
	}
	sum := 0.0
	for name, val := range timings {
		n, ok := val.(float64)
		if !ok {
			continue
		}
		switch name {
		case "send", "wait", "receive":
			if n < 0 {
				v.fail(path+".timings."+name, "is %v, must be non-negative", n)
			}
		case "blocked", "dns", "connect", "ssl":
			if n < 0 && n != -1 {
				v.fail(path+".timings."+name, "is %v, must be -1 or non-negative", n)
			}
		}
		// ssl is included in connect, so the spec leaves it out of the total.
		if n > 0 && name != "ssl" {
			sum += n
		}
	}
	if total, ok := e["time"].(float64); ok && math.Abs(total-sum) > 1e-6 {
		v.fail(path+".time", "is %v, want the sum of timings %v", total, sum)
	}
}

func (v *harValidator) request(path string, x any) {
	r := v.object(path, x,
		map[string]harKind{"method": kString, "url": kString, "httpVersion": kString, "cookies": kArray, "headers": kArray, "queryString": kArray, "headersSize": kInteger, "bodySize": kInteger},
		map[string]harKind{"postData": kObject, "comment": kString})
	if r == nil {
		return
	}
	if s, ok := r["url"].(string); ok {
		if u, err := url.Parse(s); err != nil || !u.IsAbs() {
			v.fail(path+".url", "%q is not an absolute URL", s)
		}
	}
	v.cookies(path+".cookies", r["cookies"])
	v.nameValues(path+".headers", r["headers"], nil)
	v.nameValues(path+".queryString", r["queryString"], nil)
	if pd, ok := r["postData"]; ok {
		p := v.object(path+".postData", pd, map[string]harKind{"mimeType": kString},
			map[string]harKind{"params": kArray, "text": kString, "comment": kString})
		if p != nil {
			for i, item := range v.array(path+".postData.params", p["params"]) {
				v.object(fmt.Sprintf("%s.postData.params[%d]", path, i), item, map[string]harKind{"name": kString},
					map[string]harKind{"value": kString, "fileName": kString, "contentType": kString, "comment": kString})
			}
		}
	}
}

func (v *harValidator) response(path string, x any) {
	r := v.object(path, x,
		map[string]harKind{"status": kInteger, "statusText": kString, "httpVersion": kString, "cookies": kArray, "headers": kArray, "content": kObject, "redirectURL": kString, "headersSize": kInteger, "bodySize": kInteger},
		map[string]harKind{"comment": kString})
	if r == nil {
		return
	}
	v.cookies(path+".cookies", r["cookies"])
	v.nameValues(path+".headers", r["headers"], nil)
	v.object(path+".content", r["content"], map[string]harKind{"size": kInteger, "mimeType": kString},
		map[string]harKind{"compression": kInteger, "text": kString, "encoding": kString, "comment": kString})
}

// validateHAR decodes data and returns every departure from HAR 1.2.
func validateHAR(t *testing.T, data []byte) []string {
	t.Helper()
	var doc any
	require.NoError(t, json.Unmarshal(data, &doc), "HAR output is not JSON:\n%s", data)
	var v harValidator
	v.document(doc)
	sort.Strings(v.problems)
	return v.problems
}

// The validator must itself reject what the spec rejects, or its passing says
// nothing.
func TestHARValidatorRejects(t *testing.T) {
	valid := func() map[string]any {
		return map[string]any{"log": map[string]any{
			"version": "1.2",
			"creator": map[string]any{"name": "x", "version": "1"},
			"entries": []any{map[string]any{
				"startedDateTime": "2024-05-01T10:00:00.000Z",
				"time":            5.0,
				"request": map[string]any{"method": "GET", "url": "http://a/", "httpVersion": "HTTP/1.1",
					"cookies": []any{}, "headers": []any{}, "queryString": []any{}, "headersSize": -1.0, "bodySize": 0.0},
				"response": map[string]any{"status": 200.0, "statusText": "OK", "httpVersion": "HTTP/1.1",
					"cookies": []any{}, "headers": []any{}, "content": map[string]any{"size": 0.0, "mimeType": "text/plain"},
					"redirectURL": "", "headersSize": -1.0, "bodySize": 0.0},
				"cache":   map[string]any{},
				"timings": map[string]any{"send": 0.0, "wait": 5.0, "receive": 0.0, "dns": -1.0},
			}},
		}}
	}
	entry := func(doc map[string]any) map[string]any {
		return doc["log"].(map[string]any)["entries"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"valid", func(map[string]any) {}, ""},
		{"missing version", func(d map[string]any) { delete(d["log"].(map[string]any), "version") }, `log: missing required "version"`},
		{"wrong version", func(d map[string]any) { d["log"].(map[string]any)["version"] = "1.1" }, "log.version: is 1.1, want 1.2"},
		{"status as string", func(d map[string]any) { entry(d)["response"].(map[string]any)["status"] = "200" }, "log.entries[0].response.status: is a string, want integer"},
		{"unknown member", func(d map[string]any) { entry(d)["extra"] = 1.0 }, `log.entries[0]: unknown member "extra"`},
		{"custom member allowed", func(d map[string]any) { entry(d)["_extra"] = 1.0 }, ""},
		{"negative wait", func(d map[string]any) { entry(d)["timings"].(map[string]any)["wait"] = -1.0 }, "log.entries[0].timings.wait: is -1, must be non-negative"},
		{"time not sum", func(d map[string]any) { entry(d)["time"] = 7.0 }, "log.entries[0].time: is 7, want the sum of timings 5"},
		{"relative url", func(d map[string]any) { entry(d)["request"].(map[string]any)["url"] = "/x" }, `log.entries[0].request.url: "/x" is not an absolute URL`},
		{"bad date", func(d map[string]any) { entry(d)["startedDateTime"] = "yesterday" }, "log.entries[0].startedDateTime"},
		{"missing mimeType", func(d map[string]any) {
			delete(entry(d)["response"].(map[string]any)["content"].(map[string]any), "mimeType")
		}, `log.entries[0].response.content: missing required "mimeType"`},
		{"header without value", func(d map[string]any) {
			entry(d)["request"].(map[string]any)["headers"] = []any{map[string]any{"name": "A"}}
		}, `log.entries[0].request.headers[0]: missing required "value"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := valid()
			tt.mutate(doc)
			b, err := json.Marshal(doc)
			require.NoError(t, err)
			problems := validateHAR(t, b)
			if tt.want == "" {
				assert.Empty(t, problems)
				return
			}
			assert.Contains(t, strings.Join(problems, "\n"), tt.want)
		})
	}
}

var harT0 = time.Date(2024, 5, 1, 10, 0, 0, 123_000_000, time.UTC)

func harTestEvents() []*Event {
	get := &Event{
		Method: "GET", Path: "/api/users/42", StatusCode: 200, LatencyMS: 12.5,
		QueryParams:         `{"b":["2"],"a":["1","x y"]}`,
		RequestHeaders:      `{"Host":"shop.example:8000","Accept":"application/json","Cookie":"sid=abc; theme=dark"}`,
		ResponseHeaders:     `{"Content-Type":"application/json","Set-Cookie":"sid=new; Path=/; HttpOnly"}`,
		ResponseBody:        `{"id":42}`,
		ResponseSizeBytes:   9,
		ResponseContentType: "application/json",
		PostData:            "{}",
		Metadata: Metadata{
			EventID: "ev-1", RequestTime: harT0, ResponseTime: harT0.Add(12500 * time.Microsecond),
			Client: "10.0.0.1:51000", Server: "10.0.0.2:8000", Host: "shop.example:8000", HTTPVersion: "HTTP/1.1",
		},
	}
	form := &Event{
		Method: "POST", Path: "/login", StatusCode: 302, LatencyMS: 3,
		QueryParams:         "{}",
		RequestHeaders:      `{"Host":"shop.example","Content-Type":"application/x-www-form-urlencoded","Authorization":"[REDACTED]"}`,
		RequestBody:         "user=bob&remember=on",
		RequestSizeBytes:    20,
		RequestContentType:  "application/x-www-form-urlencoded",
		PostData:            `{"user":["bob"],"remember":["on"]}`,
		ResponseHeaders:     `{"Location":"/home","Set-Cookie":"[REDACTED]"}`,
		ResponseContentType: "",
		Metadata: Metadata{
			EventID: "ev-2", RequestTime: harT0.Add(time.Second), ResponseTime: harT0.Add(time.Second + 3*time.Millisecond),
			Client: "10.0.0.1:51001", Server: "[2001:db8::2]:80", Host: "shop.example", HTTPVersion: "HTTP/1.1",
			Anomalies: []string{"gap_in_body"},
		},
	}
	binary := &Event{
		Method: "GET", Path: "/img/1.png", StatusCode: 200, LatencyMS: 1,
		QueryParams: "{}", RequestHeaders: `{}`, PostData: "{}",
		ResponseHeaders:     `{"Content-Type":"image/png","Content-Encoding":"gzip"}`,
		ResponseBody:        "\x89PNG\r\n\x1a\n\x00\xff",
		ResponseSizeBytes:   4,
		ResponseContentType: "image/png",
		Metadata: Metadata{
			EventID: "ev-3", RequestTime: harT0.Add(2 * time.Second), ResponseTime: harT0.Add(2*time.Second + time.Millisecond),
			Client: "10.0.0.3:40000", Server: "10.0.0.2:8000", HTTPVersion: "HTTP/1.0",
		},
	}
	lost := &Event{
		Method: "PUT", Path: "/api/items/7", Error: "no response",
		QueryParams: "{}", RequestHeaders: `{"Host":"shop.example","Content-Type":"application/json"}`,
		RequestBody: `{"qty":3}`, RequestSizeBytes: 9, RequestContentType: "application/json",
		PostData: "{}", ResponseHeaders: "{}",
		Metadata: Metadata{
			EventID: "ev-4", RequestTime: harT0.Add(3 * time.Second),
			Client: "10.0.0.1:51002", Server: "10.0.0.2:8000", Host: "shop.example", HTTPVersion: "HTTP/1.1",
		},
	}
	return []*Event{get, form, binary, lost}
}

// harDoc is the decoded archive, typed for the round trip.
type harDoc struct {
	Log struct {
		Version string     `json:"version"`
		Creator harCreator `json:"creator"`
		Entries []harEntry `json:"entries"`
	} `json:"log"`
}

func writeHAR(t *testing.T, events []*Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	s := NewHARWriter("test", &buf)
	for _, ev := range events {
		require.NoError(t, s.Write(context.Background(), ev))
	}
	require.NoError(t, s.Close(context.Background()))
	return buf.Bytes()
}

func TestHARSinkOutputIsValidHAR(t *testing.T) {
	tests := []struct {
		name   string
		events []*Event
	}{
		{"no entries", nil},
		{"one entry", harTestEvents()[:1]},
		{"every kind", harTestEvents()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := writeHAR(t, tt.events)
			assert.Empty(t, validateHAR(t, out))
			var doc harDoc
			require.NoError(t, json.Unmarshal(out, &doc))
			assert.Equal(t, "1.2", doc.Log.Version)
			assert.Equal(t, "otas-sniff", doc.Log.Creator.Name)
			assert.Len(t, doc.Log.Entries, len(tt.events))
		})
	}
}

func TestHARSinkRoundTrip(t *testing.T) {
	events := harTestEvents()
	var doc harDoc
	require.NoError(t, json.Unmarshal(writeHAR(t, events), &doc))
	require.Len(t, doc.Log.Entries, len(events))

	tests := []struct {
		name        string
		url         string
		status      int
		statusText  string
		reqBody     string
		respBody    string
		respMime    string
		time        float64
		started     string
		serverIP    string
		redirectURL string
	}{
		{"get with query", "http://shop.example:8000/api/users/42?a=1&a=x+y&b=2", 200, "OK", "", `{"id":42}`, "application/json", 12.5, "2024-05-01T10:00:00.123Z", "10.0.0.2", ""},
		{"form post", "http://shop.example/login", 302, "Found", "user=bob&remember=on", "", "x-unknown", 3, "2024-05-01T10:00:01.123Z", "2001:db8::2", "/home"},
		{"binary body", "http://10.0.0.2:8000/img/1.png", 200, "OK", "", "\x89PNG\r\n\x1a\n\x00\xff", "image/png", 1, "2024-05-01T10:00:02.123Z", "10.0.0.2", ""},
		{"no response", "http://shop.example/api/items/7", 0, "", `{"qty":3}`, "", "x-unknown", 0, "2024-05-01T10:00:03.123Z", "10.0.0.2", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, e := events[i], doc.Log.Entries[i]
			assert.Equal(t, ev.Method, e.Request.Method)
			assert.Equal(t, tt.url, e.Request.URL)
			assert.Equal(t, ev.Metadata.HTTPVersion, e.Request.HTTPVersion)
			assert.Equal(t, tt.status, e.Response.Status)
			assert.Equal(t, tt.statusText, e.Response.StatusText)
			assert.Equal(t, tt.started, e.StartedDateTime)
			assert.InDelta(t, tt.time, e.Time, 1e-9)
			assert.InDelta(t, tt.time, e.Timings.Wait, 1e-9)
			assert.Equal(t, -1.0, e.Timings.DNS)
			assert.Equal(t, tt.serverIP, e.ServerIPAddress)
			assert.Equal(t, ev.Metadata.Client, e.Connection)
			assert.Equal(t, ev.Metadata.EventID, e.EventID)
			assert.Equal(t, tt.redirectURL, e.Response.RedirectURL)
			assert.Equal(t, tt.respMime, e.Response.Content.MimeType)

			if tt.reqBody == "" {
				assert.Nil(t, e.Request.PostData)
			} else {
				require.NotNil(t, e.Request.PostData)
				assert.Equal(t, tt.reqBody, e.Request.PostData.Text)
				assert.Equal(t, ev.RequestContentType, e.Request.PostData.MimeType)
			}
			assert.Equal(t, ev.RequestSizeBytes, e.Request.BodySize)

			body := e.Response.Content.Text
			if e.Response.Content.Encoding == "base64" {
				raw, err := base64.StdEncoding.DecodeString(body)
				require.NoError(t, err)
				body = string(raw)
			}
			assert.Equal(t, tt.respBody, body)

			var reqHeaders map[string]string
			require.NoError(t, json.Unmarshal([]byte(ev.RequestHeaders), &reqHeaders))
			got := map[string]string{}
			for _, h := range e.Request.Headers {
				got[h.Name] = h.Value
			}
			assert.Equal(t, reqHeaders, got)
		})
	}

	get, form, binary, lost := doc.Log.Entries[0], doc.Log.Entries[1], doc.Log.Entries[2], doc.Log.Entries[3]
	assert.Equal(t, []harNameValue{{"a", "1"}, {"a", "x y"}, {"b", "2"}}, get.Request.QueryString)
	assert.Equal(t, []harCookie{{Name: "sid", Value: "abc"}, {Name: "theme", Value: "dark"}}, get.Request.Cookies)
	assert.Equal(t, []harCookie{{Name: "sid", Value: "new", Path: "/", HTTPOnly: true}}, get.Response.Cookies)
	assert.Equal(t, []harNameValue{{"remember", "on"}, {"user", "bob"}}, form.Request.PostData.Params)
	assert.Empty(t, form.Response.Cookies, "a redacted Set-Cookie yields no cookie")
	assert.Contains(t, form.Comment, "gap_in_body")
	assert.Equal(t, "base64", binary.Response.Content.Encoding)
	assert.Equal(t, int64(10), binary.Response.Content.Size)
	assert.Equal(t, int64(6), binary.Response.Content.Compression)
	assert.Equal(t, "no response", lost.Error)
	assert.Equal(t, int64(-1), lost.Response.BodySize)
}

func TestHARSinkStreamsEntries(t *testing.T) {
	var buf bytes.Buffer
	s := NewHARWriter("test", &buf)
	require.NoError(t, s.Write(context.Background(), harTestEvents()[0]))
	// Before Close, the entry is out and only the closing brackets are missing.
	assert.True(t, strings.HasPrefix(buf.String(), `{"log":{"version":"1.2"`))
	assert.Contains(t, buf.String(), `"url":"http://shop.example:8000/api/users/42?a=1&a=x+y&b=2"`)
	assert.False(t, json.Valid(buf.Bytes()))
	require.NoError(t, s.Close(context.Background()))
	assert.True(t, json.Valid(buf.Bytes()))
}

func TestHARSinkFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.har")
	s, err := NewHARSink(path)
	require.NoError(t, err)
	for _, ev := range harTestEvents() {
		require.NoError(t, s.Write(context.Background(), ev))
	}
	require.NoError(t, s.Close(context.Background()))
	require.NoError(t, s.Close(context.Background()), "a second Close is a no-op")
	err = s.Write(context.Background(), harTestEvents()[0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already closed")

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Empty(t, validateHAR(t, data))
}

func TestHARSinkOpenError(t *testing.T) {
	_, err := NewHARSink(filepath.Join(t.TempDir(), "missing-dir", "out.har"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "open har output")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestHARSinkConcurrentWrites(t *testing.T) {
	var buf bytes.Buffer
	s := NewHARWriter("test", &buf)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				assert.NoError(t, s.Write(context.Background(), harTestEvents()[0]))
			}
		})
	}
	wg.Wait()
	require.NoError(t, s.Close(context.Background()))
	assert.Empty(t, validateHAR(t, buf.Bytes()))
	var doc harDoc
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	assert.Len(t, doc.Log.Entries, writers*each)
}
