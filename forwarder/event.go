// Package forwarder turns exchanges into OTAS events, redacts them, and writes them
// to sinks: JSON lines, HAR, or the OTAS backend.
package forwarder

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/netip"
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
// the sniffer's metadata. RequestBody and ResponseBody are empty in the events
// of a detached Builder when every sink is an EncodedBodiesSink: the bodies are
// then only in the event's JSON encoding (AppendJSON).
type Event struct {
	ProjectID           string     `json:"project_id"`
	Path                string     `json:"path"`
	Method              string     `json:"method"`
	StatusCode          int        `json:"status_code"`
	LatencyMS           float64    `json:"latency_ms"`
	RequestSizeBytes    int64      `json:"request_size_bytes"`
	ResponseSizeBytes   int64      `json:"response_size_bytes"`
	RequestHeaders      string     `json:"request_headers"`
	RequestBody         string     `json:"request_body"`
	QueryParams         string     `json:"query_params"`
	PostData            string     `json:"post_data"`
	ResponseHeaders     string     `json:"response_headers"`
	ResponseBody        string     `json:"response_body"`
	RequestContentType  string     `json:"request_content_type"`
	ResponseContentType string     `json:"response_content_type"`
	CustomProperties    Properties `json:"custom_properties"`
	Error               string     `json:"error"`
	Metadata            Metadata   `json:"metadata"`

	// SessionToken is the agent session token taken from the request. It is a
	// credential: never serialised, only sent as the upload header.
	SessionToken string `json:"-"`

	// requestBodyJSON and responseBodyJSON are the bodies already escaped as
	// JSON strings (without HTML escaping), made by Build on a worker so that
	// the sinks' one goroutine only copies them.
	requestBodyJSON, responseBodyJSON encodedString
	// chunks hold the strings Build took from its slab, and ex the exchange
	// the rest view, until Release.
	chunks eventChunks
	ex     *httpparse.Exchange
}

// encodedString is a string's JSON encoding, valid while the string is still
// src (a changed field is encoded afresh). An encoding with src "" stands for
// a string no longer kept (a detached event's body, whose sinks read only its
// encoding) while the field stays empty; a body set after Build replaces it.
type encodedString struct {
	src  string
	json []byte
}

// encodedOnly is whether c stands for a string no longer kept, in place of
// field s.
func (c encodedString) encodedOnly(s string) bool { return s == "" && c.src == "" && c.json != nil }

// bodiesEncoded is whether either body is kept only encoded.
func (ev *Event) bodiesEncoded() bool {
	return ev.requestBodyJSON.encodedOnly(ev.RequestBody) || ev.responseBodyJSON.encodedOnly(ev.ResponseBody)
}

// encodeString escapes s into sl (its own allocation when long).
func encodeString(sl *slab, s string) encodedString {
	if s == "" {
		return encodedString{}
	}
	// Dense JSON grows by a quarter when escaped; the rest is the room the last chunk reserves.
	return encodedString{src: s, json: sl.bytes(appendStringJSON(sl.free(len(s)+len(s)/3+130), s, false))}
}

// appendStringJSONCached appends s as a JSON string, from c when it holds s or
// stands for it.
func appendStringJSONCached(b []byte, s string, html bool, c encodedString) []byte {
	switch {
	case c.json == nil || c.src != s:
	case !html:
		return append(b, c.json...)
	case c.encodedOnly(s):
		return appendHTMLEscaped(b, c.json)
	}
	return appendStringJSON(b, s, html)
}

// Properties are an event's custom properties. Nil, as Build leaves them (a
// map per event adds up), is encoded as {} like an empty map; make one before
// adding to it.
type Properties map[string]any

// MarshalJSON writes p as encoding/json writes a map[string]any, and nil as {}.
func (p Properties) MarshalJSON() ([]byte, error) {
	if len(p) == 0 {
		return []byte("{}"), nil
	}
	// No HTML escaping here: the caller's encoder applies its own setting to the result.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any(p)); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
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
// redacted, cutting bodies at bodyLimit bytes, its small strings taken from sl.
// sessionToken is the token taken from the request before redaction.
func newEvent(ex *httpparse.Exchange, sessionToken string, bodyLimit int, sl *slab) *Event {
	req := ex.Request
	ev := &Event{
		Method:          req.Method,
		Error:           ex.Error,
		SessionToken:    sessionToken,
		RequestHeaders:  sl.string(appendHeadersJSON(sl.free(headersJSONSize(req.Header)), req.Header)),
		ResponseHeaders: "{}",
	}
	path, rawQuery := splitTarget(req.Target)
	ev.Path = path
	ev.QueryParams = sl.string(appendQueryJSON(sl.free(queryJSONSize(rawQuery)), rawQuery))
	ev.RequestSizeBytes = req.BodySize
	reqBody, reqCut := cut(req.Body, bodyLimit)
	ev.RequestBody = reqBody
	ev.RequestContentType = req.Header.Get("Content-Type")
	ev.PostData = "{}"
	if isForm(ev.RequestContentType) {
		ev.PostData = sl.string(appendQueryJSON(sl.free(queryJSONSize(reqBody)), reqBody))
	}

	md := &ev.Metadata
	md.EventID = sl.string(appendEventID(sl.free(uuidLen), sl.random16()))
	md.RequestTime = req.Start.UTC()
	md.RequestEndTime = req.End.UTC()
	md.Client = addrPortString(sl, ex.Client)
	md.Server = addrPortString(sl, ex.Server)
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
		ev.ResponseHeaders = sl.string(appendHeadersJSON(sl.free(headersJSONSize(resp.Header)), resp.Header))
		md.ResponseTime = resp.End.UTC()
		md.ResponseStartTime = resp.Start.UTC()
		md.ResponseBodyTruncated = resp.BodyTruncated || respCut
		md.ResponseBodyNotKept = resp.BodyNotKept
		md.Anomalies = append(md.Anomalies, resp.Anomalies...)
	}
	return ev
}

// detach copies into sl every string of ev that views its exchange's memory
// (newEvent's and Redact's), so that the exchange can be released while ev is
// still to be written. Without rawBodies the bodies are not copied but dropped:
// their encodings stand for them. The other strings are sl's already, constants, or
// the capture source's name; a Prepare hook's are not known, so build does not
// detach events when there is one.
func (ev *Event) detach(sl *slab, rawBodies bool) {
	own := func(s string) string {
		if s == "" {
			return ""
		}
		return sl.string(append(sl.free(len(s)), s...))
	}
	path := ev.Path
	ev.Method, ev.Path, ev.Error, ev.SessionToken = own(ev.Method), own(path), own(ev.Error), own(ev.SessionToken)
	ev.RequestContentType, ev.ResponseContentType = own(ev.RequestContentType), own(ev.ResponseContentType)
	if rawBodies {
		ev.RequestBody, ev.ResponseBody = own(ev.RequestBody), own(ev.ResponseBody)
		// Still the encodings of the bodies, now of their copies.
		ev.requestBodyJSON.src, ev.responseBodyJSON.src = ev.RequestBody, ev.ResponseBody
	} else {
		ev.RequestBody, ev.ResponseBody = "", ""
		ev.requestBodyJSON.src, ev.responseBodyJSON.src = "", "" // see encodedString
	}
	md := &ev.Metadata
	md.Host, md.HTTPVersion = own(md.Host), own(md.HTTPVersion)
	if md.PathTemplate == path { // else a changed template, in sl already
		md.PathTemplate = ev.Path
	}
}

// addrPortString is p.String(), its bytes taken from sl.
func addrPortString(sl *slab, p netip.AddrPort) string {
	if !p.IsValid() {
		return "invalid AddrPort" // what String says; AppendTo writes nothing
	}
	return sl.string(p.AppendTo(sl.free(len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%enp5s0]:65535"))))
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

// maxQueryPairs is how many name=value pairs appendQueryJSON sorts on the
// stack; a longer query or form takes the url.ParseQuery path.
const maxQueryPairs = 32

// queryJSONSize is about how long appendQueryJSON makes raw.
func queryJSONSize(raw string) int {
	return len(raw) + len(raw)/8 + 16
}

// appendQueryJSON appends valuesJSON(parseQuery(raw)), names sorted and each
// name's values in order, without building the url.Values map.
func appendQueryJSON(b []byte, raw string) []byte {
	if strings.Count(raw, "&") >= maxQueryPairs {
		return append(b, valuesJSON(parseQuery(raw))...)
	}
	type pair struct{ name, value string }
	// No append: growing onto the heap would take decoded along.
	var stack [maxQueryPairs]pair
	n := 0
	// Decoded names and values with escapes; raw ones are views of raw.
	var decoded [256]byte
	dec := decoded[:0]
	// As url.ParseQuery: fields are split on '&', and one that is empty, holds
	// a ';' or does not unescape is left out.
	for rest := raw; rest != ""; {
		var field string
		field, rest, _ = strings.Cut(rest, "&")
		if field == "" || strings.IndexByte(field, ';') >= 0 {
			continue
		}
		name, value, _ := strings.Cut(field, "=")
		var ok bool
		if name, dec, ok = queryUnescape(dec, name); !ok {
			continue
		}
		if value, dec, ok = queryUnescape(dec, value); !ok {
			continue
		}
		stack[n] = pair{name, value}
		n++
	}
	pairs := stack[:n]
	// An insertion sort: stable, so that a name's values keep their order, and
	// unlike slices.SortStableFunc's indirect calls it lets decoded stay on the stack.
	for i := 1; i < len(pairs); i++ {
		for j := i; j > 0 && pairs[j].name < pairs[j-1].name; j-- {
			pairs[j], pairs[j-1] = pairs[j-1], pairs[j]
		}
	}
	b = append(b, '{')
	for i, p := range pairs {
		if i > 0 && p.name == pairs[i-1].name {
			b = append(b, ',') // the name's next value
		} else {
			if i > 0 {
				b = append(b, "],"...)
			}
			b = appendStringJSON(b, p.name, true)
			b = append(b, ":["...)
		}
		b = appendStringJSON(b, p.value, true)
	}
	if len(pairs) > 0 {
		b = append(b, ']')
	}
	return append(b, '}')
}

// queryUnescape is url.QueryUnescape, false when s is not well-formed; an s
// with escapes is decoded onto the end of buf, and the result is a view of
// those bytes, which the caller must not write again.
func queryUnescape(buf []byte, s string) (string, []byte, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, buf, true
	}
	start := len(buf)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			buf = append(buf, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "", buf[:start], false
			}
			buf = append(buf, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			buf = append(buf, c)
		}
	}
	// buf may have moved when it grew; bytes written before stay where they were.
	return unsafe.String(&buf[start], len(buf)-start), buf, true
}

// unhex is the value of a hex digit c (isHex).
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
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

// uuidLen is the length of a UUID's text form.
const uuidLen = len("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")

// appendEventID appends a random (version 4) UUID in the form uuid.NewString
// returns, its bits taken from random.
func appendEventID(b []byte, random [16]byte) []byte {
	u := uuid.UUID(random)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var text [uuidLen]byte
	hex.Encode(text[0:8], u[0:4])
	text[8] = '-'
	hex.Encode(text[9:13], u[4:6])
	text[13] = '-'
	hex.Encode(text[14:18], u[6:8])
	text[18] = '-'
	hex.Encode(text[19:23], u[8:10])
	text[23] = '-'
	hex.Encode(text[24:], u[10:])
	return append(b, text[:]...)
}
