// Package forwarder turns exchanges into OTAS events, redacts them, and writes them
// to sinks: JSON lines, HAR, or the OTAS backend.
package forwarder

import (
	"crypto/rand"
	"mime"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/google/uuid"

	"github.com/otas/otas-sniff/httpparse"
)

// SessionTokenHeader is the request header in which an AI agent sends its OTAS
// session token.
const SessionTokenHeader = "X-OTAS-Agent-Session-Token"

// Event is one OTAS event: the fields of the backend's ingestion contract plus
// the sniffer's metadata.
type Event struct {
	ProjectID           string         `json:"project_id"`
	Path                string         `json:"path"`
	Method              string         `json:"method"`
	StatusCode          int            `json:"status_code"`
	LatencyMS           float64        `json:"latency_ms"`
	RequestSizeBytes    int64          `json:"request_size_bytes"`
	ResponseSizeBytes   int64          `json:"response_size_bytes"`
	RequestHeaders      string         `json:"request_headers"`
	RequestBody         string         `json:"request_body"`
	QueryParams         string         `json:"query_params"`
	PostData            string         `json:"post_data"`
	ResponseHeaders     string         `json:"response_headers"`
	ResponseBody        string         `json:"response_body"`
	RequestContentType  string         `json:"request_content_type"`
	ResponseContentType string         `json:"response_content_type"`
	CustomProperties    map[string]any `json:"custom_properties"`
	Error               string         `json:"error"`
	Metadata            Metadata       `json:"metadata"`

	// SessionToken is the agent session token taken from the request. It is a
	// credential: never serialised, only sent as the upload header.
	SessionToken string `json:"-"`

	// requestBodyJSON and responseBodyJSON are the bodies already escaped as
	// JSON strings (without HTML escaping), made by Build on a worker so that
	// the sinks' one goroutine only copies them.
	requestBodyJSON, responseBodyJSON encodedString
}

// encodedString is a string's JSON encoding, valid while the string is still
// src (a changed field is encoded afresh).
type encodedString struct {
	src  string
	json []byte
}

func encodeString(s string) encodedString {
	if s == "" {
		return encodedString{}
	}
	// Dense JSON grows by a quarter when escaped; the rest is the room the last chunk reserves.
	return encodedString{src: s, json: appendStringJSON(make([]byte, 0, len(s)+len(s)/3+130), s, false)}
}

// appendStringJSONCached appends s as a JSON string, from c when it holds s.
func appendStringJSONCached(b []byte, s string, html bool, c encodedString) []byte {
	if !html && c.json != nil && c.src == s {
		return append(b, c.json...)
	}
	return appendStringJSON(b, s, html)
}

// Metadata is what the sniffer knows that the middleware never did.
type Metadata struct {
	EventID                  string         `json:"event_id"`
	RequestTime              time.Time      `json:"request_time"`
	ResponseTime             time.Time      `json:"response_time,omitzero"`
	RequestEndTime           time.Time      `json:"request_end_time,omitzero"`
	ResponseStartTime        time.Time      `json:"response_start_time,omitzero"`
	Client                   string         `json:"client"`
	Server                   string         `json:"server"`
	Host                     string         `json:"host"`
	HTTPVersion              string         `json:"http_version"`
	Source                   string         `json:"source"`
	ConnectionIndex          int            `json:"connection_index"`
	AgentSessionTokenPresent bool           `json:"agent_session_token_present"`
	RequestBodyTruncated     bool           `json:"request_body_truncated"`
	ResponseBodyTruncated    bool           `json:"response_body_truncated"`
	RequestBodyNotKept       string         `json:"request_body_not_kept,omitempty"`
	ResponseBodyNotKept      string         `json:"response_body_not_kept,omitempty"`
	InterimStatuses          []int          `json:"interim_statuses,omitempty"`
	Upgraded                 bool           `json:"upgraded,omitempty"`
	Anomalies                []string       `json:"anomalies,omitempty"`
	PathTemplate             string         `json:"path_template,omitempty"`
	Extra                    map[string]any `json:"extra,omitempty"`
}

// newEvent builds the event for one exchange that the Redactor has already
// redacted, cutting bodies at bodyLimit bytes. sessionToken is the token taken from
// the request before redaction.
func newEvent(ex *httpparse.Exchange, sessionToken string, bodyLimit int) *Event {
	req := ex.Request
	ev := &Event{
		Method:           req.Method,
		CustomProperties: map[string]any{},
		Error:            ex.Error,
		SessionToken:     sessionToken,
		RequestHeaders:   headersJSON(req.Header),
		ResponseHeaders:  "{}",
	}
	path, rawQuery := splitTarget(req.Target)
	ev.Path = path
	ev.QueryParams = valuesJSON(parseQuery(rawQuery))
	ev.RequestSizeBytes = req.BodySize
	reqBody, reqCut := cut(req.Body, bodyLimit)
	ev.RequestBody = reqBody
	ev.RequestContentType = req.Header.Get("Content-Type")
	ev.PostData = "{}"
	if isForm(ev.RequestContentType) {
		ev.PostData = valuesJSON(parseQuery(reqBody))
	}

	md := &ev.Metadata
	md.EventID = newEventID()
	md.RequestTime = req.Start.UTC()
	md.RequestEndTime = req.End.UTC()
	md.Client = ex.Client.String()
	md.Server = ex.Server.String()
	md.Host = req.Header.Get("Host")
	md.HTTPVersion = req.Proto
	md.Source = ex.Source
	md.ConnectionIndex = ex.Index
	md.AgentSessionTokenPresent = ev.SessionToken != ""
	md.RequestBodyTruncated = req.BodyTruncated || reqCut
	md.RequestBodyNotKept = req.BodyNotKept
	md.Upgraded = ex.Upgraded
	md.Anomalies = append(md.Anomalies, req.Anomalies...)
	for _, m := range ex.Interim {
		md.InterimStatuses = append(md.InterimStatuses, m.StatusCode)
	}

	if resp := ex.Response; resp != nil {
		ev.StatusCode = resp.StatusCode
		ev.LatencyMS = float64(resp.End.Sub(req.Start)) / float64(time.Millisecond)
		ev.ResponseSizeBytes = resp.BodySize
		respBody, respCut := cut(resp.Body, bodyLimit)
		ev.ResponseBody = respBody
		ev.ResponseContentType = resp.Header.Get("Content-Type")
		ev.ResponseHeaders = headersJSON(resp.Header)
		md.ResponseTime = resp.End.UTC()
		md.ResponseStartTime = resp.Start.UTC()
		md.ResponseBodyTruncated = resp.BodyTruncated || respCut
		md.ResponseBodyNotKept = resp.BodyNotKept
		md.Anomalies = append(md.Anomalies, resp.Anomalies...)
	}
	return ev
}

// splitTarget splits a request target into path and raw query. An absolute-form
// target (proxy requests) yields its path; an authority-form target (CONNECT)
// is kept whole as the path.
func splitTarget(target string) (path, rawQuery string) {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		if u, err := url.Parse(target); err == nil {
			p := u.EscapedPath()
			if p == "" {
				p = "/"
			}
			return p, u.RawQuery
		}
	}
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		return target[:i], target[i+1:]
	}
	return target, ""
}

// parseQuery is url.ParseQuery that keeps what it can of a malformed query.
func parseQuery(raw string) url.Values {
	v, _ := url.ParseQuery(raw)
	if v == nil {
		v = url.Values{}
	}
	return v
}

func isForm(contentType string) bool {
	if strings.IndexByte(contentType, ';') < 0 {
		return mediaType(contentType) == "application/x-www-form-urlencoded" // no parameters to be invalid
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// cut returns body as text, at most limit bytes, never splitting a UTF-8
// sequence, and whether it was cut.
func cut(body []byte, limit int) (string, bool) {
	if limit <= 0 || len(body) <= limit {
		return sharedString(body), false
	}
	n := limit
	for n > 0 && n > limit-utf8.UTFMax && !utf8.RuneStart(body[n]) {
		n--
	}
	return sharedString(body[:n]), true
}

// sharedString views a body as a string without copying it: a body is handed
// over by the parser (each message has its own buffer) and redaction never
// writes into one, so nothing changes it once the event holds it.
func sharedString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// newEventID returns a random (version 4) UUID, as uuid.NewString does but
// with one allocation instead of two: one per event adds up.
func newEventID() string {
	var u uuid.UUID
	_, _ = rand.Read(u[:])  // crypto/rand.Read never fails (Go 1.24+)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}
