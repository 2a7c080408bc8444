package forwarder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// HARVersion is the HTTP Archive format version the HAR sink writes.
const HARVersion = "1.2"

// harTimeLayout is ISO 8601 with milliseconds, as HAR's startedDateTime wants.
const harTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// HARSink writes events as an HTTP Archive 1.2 file that browser developer tools
// and API clients (Chrome DevTools, Firefox, Insomnia) import. Entries are
// written as events come, so memory does not grow with the capture; Close
// completes the JSON document. A file left by a crash misses only the closing
// brackets.
type HARSink struct {
	mu      sync.Mutex
	name    string
	w       *bufio.Writer
	closer  io.Closer
	entries int
	closed  bool
	// flushEach makes each entry visible at once (a terminal or a pipe).
	flushEach bool
}

// NewHARSink creates path ("-" is standard output) and writes the archive's
// opening to it.
func NewHARSink(path string) (*HARSink, error) {
	if path == "-" {
		return NewHARWriter("stdout", os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open har output: %w", err)
	}
	return newHARSink(path, f, f, false), nil
}

// NewHARWriter writes an archive to w, flushing each entry; w is not closed.
func NewHARWriter(name string, w io.Writer) *HARSink {
	return newHARSink(name, w, nil, true)
}

func newHARSink(name string, w io.Writer, c io.Closer, flushEach bool) *HARSink {
	s := &HARSink{name: name, w: bufio.NewWriterSize(w, 64<<10), closer: c, flushEach: flushEach}
	creator, _ := json.Marshal(harCreator{Name: "otas-sniff", Version: buildVersion()})
	// The log's fixed members go first so that only entries remain to stream.
	fmt.Fprintf(s.w, `{"log":{"version":%q,"creator":%s,"pages":[],"entries":[`, HARVersion, creator)
	return s
}

// buildVersion is the main module's version, "devel" for a source build.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// Write appends ev as one entry.
func (s *HARSink) Write(_ context.Context, ev *Event) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// URLs and bodies keep their & < > readable.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(harEntryFromEvent(ev)); err != nil {
		return fmt.Errorf("write %s: encode entry: %w", s.name, err)
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("write %s: har output already closed", s.name)
	}
	sep := "\n"
	if s.entries > 0 {
		sep = ",\n"
	}
	s.w.WriteString(sep)
	s.w.Write(b)
	s.entries++
	if s.flushEach {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", s.name, err)
		}
	}
	return nil
}

// CopiesEvents marks HARSink an EventCopier: entries are encoded in Write.
func (s *HARSink) CopiesEvents() {}

// Close ends the archive, flushes and closes the file. Closing twice is a no-op.
func (s *HARSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.w.WriteString("\n]}}\n")
	err := s.w.Flush()
	if err != nil {
		err = fmt.Errorf("flush %s: %w", s.name, err)
	}
	if s.closer != nil {
		if cerr := s.closer.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close %s: %w", s.name, cerr))
		}
	}
	return err
}

// The har* types are the parts of HAR 1.2 the sink fills. Optional members the
// sniffer cannot know (pages, browser, compression ...) are left out; fields
// prefixed with _ are custom fields, which the format allows.
type harCreator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type harEntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            float64     `json:"time"`
	Request         harRequest  `json:"request"`
	Response        harResponse `json:"response"`
	Cache           struct{}    `json:"cache"`
	Timings         harTimings  `json:"timings"`
	ServerIPAddress string      `json:"serverIPAddress,omitempty"`
	Connection      string      `json:"connection,omitempty"`
	Comment         string      `json:"comment,omitempty"`
	EventID         string      `json:"_otasEventId,omitempty"`
	Error           string      `json:"_error,omitempty"`
}

type harRequest struct {
	Method      string         `json:"method"`
	URL         string         `json:"url"`
	HTTPVersion string         `json:"httpVersion"`
	Cookies     []harCookie    `json:"cookies"`
	Headers     []harNameValue `json:"headers"`
	QueryString []harNameValue `json:"queryString"`
	PostData    *harPostData   `json:"postData,omitempty"`
	HeadersSize int64          `json:"headersSize"`
	BodySize    int64          `json:"bodySize"`
	Comment     string         `json:"comment,omitempty"`
}

type harResponse struct {
	Status      int            `json:"status"`
	StatusText  string         `json:"statusText"`
	HTTPVersion string         `json:"httpVersion"`
	Cookies     []harCookie    `json:"cookies"`
	Headers     []harNameValue `json:"headers"`
	Content     harContent     `json:"content"`
	RedirectURL string         `json:"redirectURL"`
	HeadersSize int64          `json:"headersSize"`
	BodySize    int64          `json:"bodySize"`
	Comment     string         `json:"comment,omitempty"`
}

type harNameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harCookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Path     string `json:"path,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Expires  string `json:"expires,omitempty"`
	HTTPOnly bool   `json:"httpOnly,omitempty"`
	Secure   bool   `json:"secure,omitempty"`
}

type harPostData struct {
	MimeType string         `json:"mimeType"`
	Params   []harNameValue `json:"params"`
	Text     string         `json:"text"`
	Comment  string         `json:"comment,omitempty"`
}

type harContent struct {
	Size        int64  `json:"size"`
	Compression int64  `json:"compression,omitempty"`
	MimeType    string `json:"mimeType"`
	Text        string `json:"text,omitempty"`
	Encoding    string `json:"encoding,omitempty"`
	Comment     string `json:"comment,omitempty"`
}

// harTimings: blocked, dns, connect and ssl are -1 ("does not apply") because a
// passive capture of HTTP/1.x sees no connection set-up per request.
type harTimings struct {
	Blocked float64 `json:"blocked"`
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
	SSL     float64 `json:"ssl"`
}

func harEntryFromEvent(ev *Event) harEntry {
	md := &ev.Metadata
	reqHeaders := harHeaders(ev.RequestHeaders)
	respHeaders := harHeaders(ev.ResponseHeaders)
	timings := harTimingsFor(ev)
	e := harEntry{
		StartedDateTime: md.RequestTime.Format(harTimeLayout),
		Time:            timings.Send + timings.Wait + timings.Receive,
		Timings:         timings,
		Connection:      md.Client,
		EventID:         md.EventID,
		Error:           ev.Error,
		Request: harRequest{
			Method:      ev.Method,
			URL:         harURL(ev),
			HTTPVersion: md.HTTPVersion,
			Cookies:     harRequestCookies(reqHeaders),
			Headers:     reqHeaders,
			QueryString: harQuery(ev.QueryParams),
			PostData:    harPostDataFor(ev),
			HeadersSize: -1,
			BodySize:    ev.RequestSizeBytes,
		},
		Response: harResponseFor(ev, respHeaders),
	}
	if host, _, err := net.SplitHostPort(md.Server); err == nil {
		e.ServerIPAddress = host
	}
	var notes []string
	if ev.Error != "" {
		notes = append(notes, ev.Error)
	}
	if len(md.Anomalies) > 0 {
		notes = append(notes, "anomalies: "+strings.Join(md.Anomalies, ", "))
	}
	e.Comment = strings.Join(notes, "; ")
	return e
}

// harTimingsFor splits the exchange's time. The event carries the request's
// first byte and the response's last, not the moments between, so the whole
// round trip is counted as wait; send and receive are 0 rather than -1 because
// HAR requires them to be non-negative.
func harTimingsFor(ev *Event) harTimings {
	t := harTimings{Blocked: -1, DNS: -1, Connect: -1, SSL: -1}
	md := &ev.Metadata
	ms := func(d time.Duration) float64 { return float64(max(d, 0)) / float64(time.Millisecond) }
	switch {
	case !md.ResponseTime.IsZero() && !md.RequestTime.IsZero() && !md.RequestEndTime.IsZero() && !md.ResponseStartTime.IsZero():
		// send: the request on the wire; wait: until the response's first byte;
		// receive: the response on the wire. Capture timestamps, so the sum is
		// the event's latency.
		t.Send = ms(md.RequestEndTime.Sub(md.RequestTime))
		t.Wait = ms(md.ResponseStartTime.Sub(md.RequestEndTime))
		t.Receive = ms(md.ResponseTime.Sub(md.ResponseStartTime))
	case !md.ResponseTime.IsZero() && !md.RequestTime.IsZero():
		t.Wait = ms(md.ResponseTime.Sub(md.RequestTime))
	case ev.LatencyMS > 0:
		t.Wait = ev.LatencyMS
	}
	return t
}

// harURL rebuilds the absolute URL: the Host header (or the server address when
// the request had none), the path as sent, and the query.
func harURL(ev *Event) string {
	host := ev.Metadata.Host
	if host == "" {
		host = ev.Metadata.Server
	}
	path := ev.Path
	switch {
	case ev.Method == http.MethodConnect:
		// The target is an authority, the tunnel's far end.
		return "http://" + path
	case !strings.HasPrefix(path, "/"):
		path = "/" + path
	}
	u := "http://" + host + path
	if q := harQuery(ev.QueryParams); len(q) > 0 {
		v := url.Values{}
		for _, p := range q {
			v.Add(p.Name, p.Value)
		}
		u += "?" + v.Encode()
	}
	return u
}

// harHeaders turns an event's header JSON (name → value) into HAR's list, sorted
// by name because the JSON object kept no order.
func harHeaders(headersJSON string) []harNameValue {
	var m map[string]string
	_ = json.Unmarshal([]byte(headersJSON), &m) // malformed or empty gives no headers
	out := make([]harNameValue, 0, len(m))
	for name, value := range m {
		out = append(out, harNameValue{Name: name, Value: value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// harQuery turns a query or form JSON (name → values) into HAR's list, sorted by
// name, each value its own pair.
func harQuery(valuesJSON string) []harNameValue {
	var m map[string][]string
	_ = json.Unmarshal([]byte(valuesJSON), &m)
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	out := []harNameValue{}
	for _, name := range names {
		for _, v := range m[name] {
			out = append(out, harNameValue{Name: name, Value: v})
		}
	}
	return out
}

func headerValue(h []harNameValue, name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// harRequestCookies parses the Cookie header; a redacted header yields none.
func harRequestCookies(h []harNameValue) []harCookie {
	out := []harCookie{}
	raw := headerValue(h, "Cookie")
	if raw == "" || raw == Redacted {
		return out
	}
	cookies, err := http.ParseCookie(raw)
	if err != nil {
		return out
	}
	for _, c := range cookies {
		out = append(out, harCookie{Name: c.Name, Value: c.Value})
	}
	return out
}

// harResponseCookies parses Set-Cookie fields (joined with ", " in the event, so
// only a single one parses reliably); a redacted header yields none.
func harResponseCookies(h []harNameValue) []harCookie {
	out := []harCookie{}
	raw := headerValue(h, "Set-Cookie")
	if raw == "" || raw == Redacted {
		return out
	}
	c, err := http.ParseSetCookie(raw)
	if err != nil {
		return out
	}
	hc := harCookie{Name: c.Name, Value: c.Value, Path: c.Path, Domain: c.Domain, HTTPOnly: c.HttpOnly, Secure: c.Secure}
	if !c.Expires.IsZero() {
		hc.Expires = c.Expires.UTC().Format(harTimeLayout)
	}
	return append(out, hc)
}

// harPostDataFor describes the request body, or returns nil when there was none.
// Form bodies carry both params and text, as browsers export them, so that
// importers reading either get the body.
func harPostDataFor(ev *Event) *harPostData {
	md := &ev.Metadata
	if ev.RequestBody == "" && ev.RequestSizeBytes == 0 && md.RequestBodyNotKept == "" {
		return nil
	}
	pd := &harPostData{MimeType: ev.RequestContentType, Params: []harNameValue{}, Text: ev.RequestBody}
	if isForm(ev.RequestContentType) {
		pd.Params = harQuery(ev.PostData)
	}
	switch {
	case md.RequestBodyNotKept != "":
		pd.Comment = "body not kept: " + md.RequestBodyNotKept
	case md.RequestBodyTruncated:
		pd.Comment = "body truncated"
	}
	return pd
}

func harResponseFor(ev *Event, headers []harNameValue) harResponse {
	md := &ev.Metadata
	if ev.StatusCode == 0 {
		// No response was captured: status 0, as browsers record a failed request.
		return harResponse{
			Cookies:     []harCookie{},
			Headers:     headers,
			Content:     harContent{MimeType: "x-unknown"},
			HeadersSize: -1,
			BodySize:    -1,
			Comment:     ev.Error,
		}
	}
	content := harContent{MimeType: ev.ResponseContentType}
	if content.MimeType == "" {
		content.MimeType = "x-unknown"
	}
	body := ev.ResponseBody
	content.Size = int64(len(body))
	if utf8.ValidString(body) {
		content.Text = body
	} else {
		// JSON strings hold only UTF-8; binary bodies travel base64-encoded.
		content.Text = base64.StdEncoding.EncodeToString([]byte(body))
		content.Encoding = "base64"
	}
	switch {
	case md.ResponseBodyNotKept != "":
		content.Size = ev.ResponseSizeBytes
		content.Comment = "body not kept: " + md.ResponseBodyNotKept
	case md.ResponseBodyTruncated:
		content.Size = max(ev.ResponseSizeBytes, content.Size)
		content.Comment = "body truncated"
	case content.Size > ev.ResponseSizeBytes:
		content.Compression = content.Size - ev.ResponseSizeBytes
	}
	return harResponse{
		Status:      ev.StatusCode,
		StatusText:  http.StatusText(ev.StatusCode),
		HTTPVersion: md.HTTPVersion,
		Cookies:     harResponseCookies(headers),
		Headers:     headers,
		Content:     content,
		RedirectURL: headerValue(headers, "Location"),
		HeadersSize: -1,
		BodySize:    ev.ResponseSizeBytes,
	}
}
