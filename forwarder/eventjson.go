package forwarder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otas/otas-sniff/httpparse"
)

// Event encoding by hand: encoding/json's reflection and the maps it needs for
// header objects were a fifth of a replay's CPU. The output is byte for byte
// what encoding/json writes for the same values (event_json_test.go checks it
// against encoding/json on generated events); anything unusual (a non-empty
// custom_properties or extra, a time outside years 0-9999, a NaN latency) is
// handed to encoding/json.

// errUnusual sends an event down the encoding/json path.
var errUnusual = errors.New("event needs encoding/json")

// AppendJSON appends ev as one JSON object, as json.Encoder with SetEscapeHTML
// (escapeHTML) would write it, without the trailing newline.
func (ev *Event) AppendJSON(dst []byte, escapeHTML bool) ([]byte, error) {
	start := len(dst)
	out, err := ev.appendFast(dst, escapeHTML)
	if err == nil {
		return out, nil
	}
	// The slow path starts again from dst: the fast one stopped half-way.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(ev); err != nil {
		return dst[:start], fmt.Errorf("encode event: %w", err)
	}
	return append(dst[:start], bytes.TrimSuffix(b.Bytes(), []byte{'\n'})...), nil
}

func (ev *Event) appendFast(b []byte, html bool) ([]byte, error) {
	if len(ev.CustomProperties) > 0 || len(ev.Metadata.Extra) > 0 || math.IsNaN(ev.LatencyMS) || math.IsInf(ev.LatencyMS, 0) {
		return b, errUnusual
	}
	b = append(b, `{"project_id":`...)
	b = appendStringJSON(b, ev.ProjectID, html)
	b = append(b, `,"path":`...)
	b = appendStringJSON(b, ev.Path, html)
	b = append(b, `,"method":`...)
	b = appendStringJSON(b, ev.Method, html)
	b = append(b, `,"status_code":`...)
	b = strconv.AppendInt(b, int64(ev.StatusCode), 10)
	b = append(b, `,"latency_ms":`...)
	b = appendJSONFloat(b, ev.LatencyMS)
	b = append(b, `,"request_size_bytes":`...)
	b = strconv.AppendInt(b, ev.RequestSizeBytes, 10)
	b = append(b, `,"response_size_bytes":`...)
	b = strconv.AppendInt(b, ev.ResponseSizeBytes, 10)
	for _, f := range [...]struct {
		key, val string
		cache    encodedString
	}{
		{`,"request_headers":`, ev.RequestHeaders, encodedString{}},
		{`,"request_body":`, ev.RequestBody, ev.requestBodyJSON},
		{`,"query_params":`, ev.QueryParams, encodedString{}},
		{`,"post_data":`, ev.PostData, encodedString{}},
		{`,"response_headers":`, ev.ResponseHeaders, encodedString{}},
		{`,"response_body":`, ev.ResponseBody, ev.responseBodyJSON},
		{`,"request_content_type":`, ev.RequestContentType, encodedString{}},
		{`,"response_content_type":`, ev.ResponseContentType, encodedString{}},
	} {
		b = append(b, f.key...)
		b = appendStringJSONCached(b, f.val, html, f.cache)
	}
	b = append(b, `,"custom_properties":{}`...) // empty or nil: Properties.MarshalJSON
	b = append(b, `,"error":`...)
	b = appendStringJSON(b, ev.Error, html)
	b = append(b, `,"metadata":`...)
	b, err := ev.Metadata.appendJSON(b, html)
	if err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

func (md *Metadata) appendJSON(b []byte, html bool) ([]byte, error) {
	var err error
	b = append(b, `{"event_id":`...)
	b = appendStringJSON(b, md.EventID, html)
	b = append(b, `,"request_time":`...)
	if b, err = appendJSONTime(b, md.RequestTime); err != nil {
		return b, err
	}
	for _, t := range [...]struct {
		key string
		t   time.Time
	}{
		{`,"response_time":`, md.ResponseTime},
		{`,"request_end_time":`, md.RequestEndTime},
		{`,"response_start_time":`, md.ResponseStartTime},
	} {
		if t.t.IsZero() {
			continue // omitzero
		}
		b = append(b, t.key...)
		if b, err = appendJSONTime(b, t.t); err != nil {
			return b, err
		}
	}
	b = append(b, `,"client":`...)
	b = appendStringJSON(b, md.Client, html)
	b = append(b, `,"server":`...)
	b = appendStringJSON(b, md.Server, html)
	b = append(b, `,"host":`...)
	b = appendStringJSON(b, md.Host, html)
	b = append(b, `,"http_version":`...)
	b = appendStringJSON(b, md.HTTPVersion, html)
	b = append(b, `,"source":`...)
	b = appendStringJSON(b, md.Source, html)
	b = append(b, `,"connection_index":`...)
	b = strconv.AppendInt(b, int64(md.ConnectionIndex), 10)
	b = append(b, `,"agent_session_token_present":`...)
	b = strconv.AppendBool(b, md.AgentSessionTokenPresent)
	b = append(b, `,"request_body_truncated":`...)
	b = strconv.AppendBool(b, md.RequestBodyTruncated)
	b = append(b, `,"response_body_truncated":`...)
	b = strconv.AppendBool(b, md.ResponseBodyTruncated)
	if md.RequestBodyNotKept != "" {
		b = append(b, `,"request_body_not_kept":`...)
		b = appendStringJSON(b, md.RequestBodyNotKept, html)
	}
	if md.ResponseBodyNotKept != "" {
		b = append(b, `,"response_body_not_kept":`...)
		b = appendStringJSON(b, md.ResponseBodyNotKept, html)
	}
	if len(md.InterimStatuses) > 0 {
		b = append(b, `,"interim_statuses":[`...)
		for i, s := range md.InterimStatuses {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(s), 10)
		}
		b = append(b, ']')
	}
	if md.Upgraded {
		b = append(b, `,"upgraded":true`...)
	}
	if len(md.Anomalies) > 0 {
		b = append(b, `,"anomalies":[`...)
		for i, a := range md.Anomalies {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStringJSON(b, a, html)
		}
		b = append(b, ']')
	}
	if md.PathTemplate != "" {
		b = append(b, `,"path_template":`...)
		b = appendStringJSON(b, md.PathTemplate, html)
	}
	return append(b, '}'), nil
}

// appendJSONTime writes t as time.Time.MarshalJSON does.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, errUnusual
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendJSONFloat writes f as encoding/json does: like ES6, 'e' notation only
// for very small or large magnitudes, exponents not padded.
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// jsonEscape[html][c] is how appendStringJSON writes byte c: the one or two
// bytes to write in the low 16 bits (first byte lowest, the second zero when
// there is one), escTwo set when there are two, and escFast set; or zero when
// c needs a closer look (control characters without a short escape, UTF-8 to
// check, and <, >, & when html is set). Read-only.
var jsonEscape = func() (t [2][256]uint32) {
	for html := range 2 {
		for c := 0x20; c < utf8.RuneSelf; c++ {
			t[html][c] = escFast | uint32(c)
		}
		for c, e := range map[byte]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f'} {
			t[html][c] = escFast | escTwo | uint32(e)<<8 | '\\'
		}
	}
	t[1]['<'], t[1]['>'], t[1]['&'] = 0, 0, 0
	return t
}()

const (
	escTwo  = 1 << 16 // jsonEscape: two bytes to write
	escFast = 1 << 31 // jsonEscape: written from the table
)

// escLen is how many bytes jsonEscape entry e writes: 1, or 2 with escTwo.
func escLen(e uint32) int { return 1 + int(e>>16&1) }

// appendStringJSON writes s as a JSON string exactly as encoding/json does:
// invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped, and so are <, >
// and & when html is set.
//
// Bodies are mostly dense JSON with a quote every few bytes, where a branch on
// "does this byte need escaping" mispredicts all the time. The common bytes
// therefore take one path, four at a time: each writes its one or two bytes
// from a table (jsonEscape) as a 16-bit store, the next byte's store starting
// after the bytes kept, into room reserved per chunk (each byte at most
// doubles; the rare six-byte escapes reserve their own).
func appendStringJSON(b []byte, s string, html bool) []byte {
	tab := &jsonEscape[0]
	if html {
		tab = &jsonEscape[1]
	}
	// Room is reserved a chunk at a time, so a long string that needs little
	// escaping does not leave the buffer twice its size.
	const chunk = 64
	b = slices.Grow(b, min(len(s), chunk)*2+2)
	out := b[:cap(b)]
	j := len(b)
	out[j] = '"'
	j++
	for i := 0; i < len(s); {
		stop := min(len(s), i+chunk)
		out = reserve(out, j, 2*(stop-i))
		for i < stop {
			if i, j = escapeCommon(out, j, s, i, stop, tab); i == stop {
				break
			}
			c := s[i]
			if c < utf8.RuneSelf {
				i++
				out = reserve(out, j, 6+2*(stop-i))
				j += copy(out[j:], []byte{'\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF]})
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				out = reserve(out, j, 6+2*max(stop-i-1, 0))
				j += copy(out[j:], `\ufffd`)
			case r == '\u2028' || r == '\u2029':
				out = reserve(out, j, 6+2*max(stop-i-size, 0))
				j += copy(out[j:], []byte{'\\', 'u', '2', '0', '2', hexDigits[r&0xF]})
			default:
				// A rune may end past stop: it is copied as is, one byte per byte.
				out = reserve(out, j, size+2*max(stop-i-size, 0))
				j += copy(out[j:], s[i:i+size])
			}
			i += size
		}
	}
	out[j] = '"'
	return out[:j+1]
}

// escapeCommon writes s[i:stop] into out from j while its bytes are written
// from tab (see appendStringJSON), and returns where it stopped in s and out.
// out has two bytes of room for each byte to stop.
func escapeCommon(out []byte, j int, s string, i, stop int, tab *[256]uint32) (int, int) {
	for ; i+4 <= stop; i += 4 {
		// Four bytes are written before looking whether all were the table's
		// to write: the room is there (8 bytes at most), and j only moves on
		// when they were.
		in, o := s[i:i+4], out[j:j+8:j+8]
		e := tab[in[0]]
		all := e
		binary.LittleEndian.PutUint16(o[0:], uint16(e))
		k := escLen(e) // where the next byte's store starts
		e = tab[in[1]]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(e)
		e = tab[in[2]]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(e)
		e = tab[in[3]]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(e)
		if all&escFast == 0 {
			break
		}
		j += k
	}
	for ; i < stop; i++ {
		e := tab[s[i]]
		if e == 0 {
			break
		}
		binary.LittleEndian.PutUint16(out[j:j+2], uint16(e))
		j += escLen(e)
	}
	return i, j
}

// reserve returns buf (used up to j) with at least n bytes of room after j,
// and always one more for the closing quote.
func reserve(buf []byte, j, n int) []byte {
	if len(buf)-j > n {
		return buf
	}
	g := slices.Grow(buf[:j], n+1)
	return g[:cap(g)]
}

// maxStackFields is how many header fields appendHeadersJSON sorts without allocating.
const maxStackFields = 48

// headersJSONSize is about how long appendHeadersJSON makes h.
func headersJSONSize(h httpparse.Header) int {
	size := 2
	for _, f := range h {
		size += len(f.Name) + len(f.Value) + 6
	}
	return size + size/8
}

// appendHeadersJSON appends header fields as a JSON object of name to value,
// names sorted, as json.Marshal of a map[string]string would; repeated fields
// are joined with ", " as RFC 9110 allows.
func appendHeadersJSON(b []byte, h httpparse.Header) []byte {
	var stack [maxStackFields]httpparse.Field
	merged := stack[:0]
	if len(h) > len(stack) {
		merged = make([]httpparse.Field, 0, len(h))
	}
	for _, f := range h {
		if i := slices.IndexFunc(merged, func(m httpparse.Field) bool { return m.Name == f.Name }); i >= 0 {
			merged[i].Value += ", " + f.Value
			continue
		}
		merged = append(merged, f)
	}
	slices.SortFunc(merged, func(a, b httpparse.Field) int { return strings.Compare(a.Name, b.Name) })
	b = append(b, '{')
	for i, f := range merged {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStringJSON(b, f.Name, true)
		b = append(b, ':')
		b = appendStringJSON(b, f.Value, true)
	}
	return append(b, '}')
}

// valuesJSON encodes parsed query or form values as json.Marshal does a
// map[string][]string: names sorted, lists in order.
func valuesJSON(v map[string][]string) string {
	if len(v) == 0 {
		return "{}"
	}
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	slices.Sort(names)
	var buf [512]byte
	b := append(buf[:0], '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStringJSON(b, k, true)
		b = append(b, ':')
		if v[k] == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, s := range v[k] {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendStringJSON(b, s, true)
		}
		b = append(b, ']')
	}
	return string(append(b, '}'))
}
