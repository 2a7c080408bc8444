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
	var tf timeFormat
	return ev.appendJSON(dst, escapeHTML, &tf)
}

// appendJSON is AppendJSON with times written through tf, which a sink keeps
// from one event to the next: the events of one second share its date.
func (ev *Event) appendJSON(dst []byte, escapeHTML bool, tf *timeFormat) ([]byte, error) {
	start := len(dst)
	out, err := ev.appendFast(dst, escapeHTML, tf)
	if err == nil {
		return out, nil
	}
	// The slow path starts again from dst: the fast one stopped half-way.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(ev.withBodies()); err != nil {
		return dst[:start], fmt.Errorf("encode event: %w", err)
	}
	return append(dst[:start], bytes.TrimSuffix(b.Bytes(), []byte{'\n'})...), nil
}

func (ev *Event) appendFast(b []byte, html bool, tf *timeFormat) ([]byte, error) {
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
	b, err := ev.Metadata.appendJSON(b, html, tf)
	if err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

func (md *Metadata) appendJSON(b []byte, html bool, tf *timeFormat) ([]byte, error) {
	var err error
	b = append(b, `{"event_id":`...)
	b = appendStringJSON(b, md.EventID, html)
	b = append(b, `,"request_time":`...)
	if b, err = tf.appendJSON(b, md.RequestTime); err != nil {
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
		if b, err = tf.appendJSON(b, t.t); err != nil {
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

// timeFormat writes times as time.Time.MarshalJSON does, reusing the date
// and clock of the last UTC time it wrote for the next in the same second:
// an event's four times mostly are, and so are the events a sink writes in
// one second; the date is most of the work.
type timeFormat struct {
	sec    int64    // the Unix second of prefix, when ok
	prefix [19]byte // "2006-01-02T15:04:05"
	ok     bool
}

// appendJSON appends t, quoted.
func (f *timeFormat) appendJSON(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	if sec := t.Unix(); f.ok && sec == f.sec && t.Location() == time.UTC {
		b = append(b, f.prefix[:]...)
		b = appendFraction(b, t.Nanosecond())
		return append(b, `Z"`...), nil
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return b[:len(b)-1], errUnusual
	}
	n := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	if f.ok = t.Location() == time.UTC; f.ok {
		f.sec = t.Unix()
		copy(f.prefix[:], b[n:])
	}
	return append(b, '"'), nil
}

// appendFraction appends ns as RFC3339Nano's fraction: a point and nine
// digits less the trailing zeros, nothing when ns is 0.
func appendFraction(b []byte, ns int) []byte {
	if ns == 0 {
		return b
	}
	var d [10]byte
	d[0] = '.'
	for i := 9; i > 0; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	n := 10
	for d[n-1] == '0' {
		n--
	}
	return append(b, d[:n]...)
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

// escTable is how appendStringJSON writes each byte.
type escTable struct {
	// e[c] is the one or two bytes to write for c in the low 16 bits (first
	// byte lowest, the second zero when there is one) and escFast; or zero
	// when c needs a closer look (control characters without a short escape,
	// UTF-8 to check, and <, >, & when html is set).
	e [256]uint32
	// two[c] is set when e[c] is two bytes: a table of its own, as a bool the
	// compiler knows is 0 or 1 is added without shifting a copy of e[c].
	two [256]bool
}

// jsonEscape[html] is the escTable without and with HTML escaping. Read-only.
var jsonEscape = func() (t [2]escTable) {
	for html := range 2 {
		for c := 0x20; c < utf8.RuneSelf; c++ {
			t[html].e[c] = escFast | uint32(c)
		}
		for c, e := range map[byte]byte{'"': '"', '\\': '\\', '\n': 'n', '\r': 'r', '\t': 't', '\b': 'b', '\f': 'f'} {
			t[html].e[c] = escFast | uint32(e)<<8 | '\\'
			t[html].two[c] = true
		}
	}
	t[1].e['<'], t[1].e['>'], t[1].e['&'] = 0, 0, 0
	return t
}()

// escFast marks an escTable entry written from the table.
const escFast = 1 << 16

// escLen is how many bytes t writes for c (when t.e[c] is not zero).
func escLen(t *escTable, c byte) int {
	n := 0
	if t.two[c] {
		n = 1 // compiled as a load of the bool: no branch, no CMOV
	}
	return 1 + n
}

// How appendStringJSON goes on from one stretch of s to the next.
const (
	escCommon = iota // escapeCommon: dense JSON, 16 bytes at a time from the table
	escWords         // escapeWords: runs with nothing to escape, a word at a time
	escBytes         // escapeBytes: a byte or a rune at a time
)

// escChunk is how many bytes of s appendStringJSON reserves room for at a
// time (two for each), so a long string that needs little escaping does not
// leave the buffer twice its size.
const escChunk = 64

// escAVX2Min is how much of s escapeAVX2 needs left to take a step: its
// loads reach 64 bytes past where a step starts.
const escAVX2Min = 64

// appendStringJSON writes s as a JSON string exactly as encoding/json does:
// invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped, and so are <, >
// and & when html is set.
//
// With AVX2 (amd64), escapeAVX2 writes s 32 bytes a step while 64 are left,
// without a branch on each byte: a step with nothing to escape is stored as
// it is, one with only two-byte escapes (the quotes of dense JSON) spread by
// a shuffle, the rest written one escape at a time. It stops at a byte of
// 0x80 or more, left to escapeBytes below until it hands back.
//
// Otherwise, and for the rest: bodies are mostly dense JSON with a quote every
// few bytes, where a branch on "does this byte need escaping" mispredicts all
// the time: escapeCommon writes them 16 bytes at a time from a table
// (jsonEscape) without one. Text and long runs of plain ASCII would pay that
// for nothing, so after 16 bytes that needed no escaping escapeWords copies a
// word at a time, checked as a whole, until one needs escaping. Bytes the
// table does not write (non-ASCII, control characters without a short escape,
// <>& with html) go to escapeBytes, which copies valid UTF-8 as is, and back
// to the table (or escapeAVX2) after 16 bytes it wrote in a row; the last
// bytes (fewer than 16) to escapeShort. Only invalid UTF-8, U+2028 and U+2029
// are written here. Room is reserved when less than the next step's worst
// case is left.
func appendStringJSON(b []byte, s string, html bool) []byte {
	return appendStringJSONWith(b, s, html, hasAVX2, hasWideEscape)
}

// appendStringJSONWith is appendStringJSON with escapeAVX2 (when avx2 and the
// CPU has it, spreading by VPEXPANDB when wide and the CPU has that) or
// without, so tests can check each.
func appendStringJSONWith(b []byte, s string, html, avx2, wide bool) []byte {
	if len(s) >= 8 && len(s) <= 64 && cleanJSON(s, html) {
		// Most header values, addresses and ids: copied whole.
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	avx2, wide = avx2 && hasAVX2, wide && hasWideEscape
	t := &jsonEscape[0]
	if html {
		t = &jsonEscape[1]
	}
	// The room the loop would reserve first, and the closing quote's.
	b = slices.Grow(b, max(2*min(len(s), escChunk), 6)+2)
	out := b[:cap(b)]
	j := len(b)
	out[j] = '"'
	j++
	for i, mode := 0, escCommon; i < len(s); {
		// Each step writes at most two bytes for each of 16 bytes of s, or six
		// for one; escapeAVX2 takes a step while 64 are left.
		simd := avx2 && mode != escBytes && len(s)-i >= escAVX2Min
		if room := len(out) - j; room <= max(2*min(len(s)-i, 16), 6) || simd && room < 64 {
			out = reserve(out, j, max(2*min(len(s)-i, escChunk), 6))
		}
		var hand bool
		switch {
		case simd:
			mode = escCommon
			if i, j = escapeAVX2(out, j, s, i, html, wide); s[i] >= utf8.RuneSelf {
				mode = escBytes
			}
		case mode == escBytes:
			if i, j, hand = escapeBytes(out, j, s, i, t); !hand {
				mode = escCommon
			}
		case len(s)-i < 16:
			// After text, or all of a short string: most likely nothing to escape.
			i, j, mode = escapeShort(out, j, s, i, t, html, mode == escWords || i == 0)
		case mode == escWords:
			if i, j = escapeWords(out, j, s, i, html); len(s)-i >= 16 && len(out)-j > 32 {
				mode = escCommon // a word to escape
			}
		default:
			i, j, mode = escapeCommon(out, j, s, i, t)
		}
		if !hand {
			continue
		}
		// s[i] starts invalid UTF-8, U+2028 or U+2029.
		out = reserve(out, j, 6)
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			j += copy(out[j:], `\ufffd`)
		case r == '\u2028' || r == '\u2029':
			j += copy(out[j:], []byte{'\\', 'u', '2', '0', '2', hexDigits[r&0xF]})
		default:
			j += copy(out[j:], s[i:i+size])
		}
		i += size
		mode = escBytes
	}
	out[j] = '"'
	return out[:j+1]
}

// escapeCommon writes s[i:] into out from j 16 bytes at a time from t while
// more than 32 bytes of room are left, and returns where it stopped in s and
// out and how to go on: escWords after 16 bytes that needed no escaping,
// escBytes before 16 bytes with one t does not write, escCommon when fewer
// than 16 bytes of s or 33 of room are left.
//
// Each byte writes its one or two bytes from t.e as a 16-bit store, the next
// byte's store starting after the bytes kept (t.two), without a branch. The 16
// are written out: a four-byte helper costs too much to inline (180 against a
// budget of 80), and calling it made dense JSON 3× slower.
func escapeCommon(out []byte, j int, s string, i int, t *escTable) (int, int, int) {
	rest, dst := s[i:], out[j:]
	for len(rest) >= 16 && len(dst) > 32 {
		// All 16 are written before looking whether t wrote them all: the
		// room is there (32 bytes at most), and dst only moves on when it did.
		in, o := rest[:16], dst[:32]
		c := in[0]
		e := t.e[c]
		all := e
		binary.LittleEndian.PutUint16(o, uint16(e))
		k := escLen(t, c) // where the next byte's store starts
		c = in[1]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[2]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[3]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[4]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[5]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[6]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[7]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[8]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[9]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[10]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[11]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[12]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[13]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[14]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[15]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		if all&escFast == 0 {
			return len(s) - len(rest), len(out) - len(dst), escBytes
		}
		rest, dst = rest[16:], dst[k:]
		if k == 16 {
			return len(s) - len(rest), len(out) - len(dst), escWords
		}
	}
	return len(s) - len(rest), len(out) - len(dst), escCommon
}

// escapeWords copies s[i:] into out from j a word at a time while no byte
// needs escaping and more than 32 bytes of room are left, and returns where it
// stopped in s and out.
func escapeWords(out []byte, j int, s string, i int, html bool) (int, int) {
	rest, dst := s[i:], out[j:]
	for len(rest) >= 8 && len(dst) > 32 {
		w := load64(rest[:8])
		if needsEscape(w, html) {
			break
		}
		binary.LittleEndian.PutUint64(dst, w)
		rest, dst = rest[8:], dst[8:]
	}
	return len(s) - len(rest), len(out) - len(dst)
}

// escapeBytes writes s[i:] into out from j a byte or a rune at a time while
// more than 6 bytes of room are left, until 16 bytes in a row were written
// from t, and returns where it stopped in s and out and whether at a rune to
// write by hand: invalid UTF-8, U+2028 or U+2029.
func escapeBytes(out []byte, j int, s string, i int, t *escTable) (int, int, bool) {
	for run := 0; i < len(s) && j < len(out)-6 && run < 16; {
		c := s[i]
		if e := t.e[c]; e != 0 {
			binary.LittleEndian.PutUint16(out[j:], uint16(e))
			j += escLen(t, c)
			i++
			run++
			continue
		}
		run = 0
		if c < utf8.RuneSelf {
			// \u00XX as two stores, not a copy of bytes built on the stack.
			binary.LittleEndian.PutUint32(out[j:], '\\'|'u'<<8|'0'<<16|'0'<<24)
			binary.LittleEndian.PutUint16(out[j+4:], uint16(hexDigits[c>>4])|uint16(hexDigits[c&0xF])<<8)
			i++
			j += 6
			continue
		}
		n := utf8Len(s[i:])
		if n == 0 {
			return i, j, true
		}
		if i+4 <= len(s) {
			binary.LittleEndian.PutUint32(out[j:], load32(s[i:i+4]))
		} else {
			copy(out[j:], s[i:i+n])
		}
		i += n
		j += n
	}
	return i, j, false
}

// escapeShort writes s[i:], fewer than 16 bytes, into out from j, and returns
// where it stopped in s and out and how to go on: escBytes at a byte t does
// not write. With clean and 8 bytes or more, it first looks whether none needs
// escaping, to copy them with two overlapping loads and stores; else t writes
// them as in escapeCommon, four at a time, then one at a time. out has room
// for two bytes for each.
func escapeShort(out []byte, j int, s string, i int, t *escTable, html, clean bool) (int, int, int) {
	if rest := s[i:]; clean && len(rest) >= 8 {
		n := len(rest)
		if w0, w1 := load64(rest[:8]), load64(rest[n-8:]); !needsEscape(w0, html) && !needsEscape(w1, html) {
			binary.LittleEndian.PutUint64(out[j+n-8:], w1)
			binary.LittleEndian.PutUint64(out[j:], w0)
			return len(s), j + n, escCommon
		}
	}
	for ; i+4 <= len(s); i += 4 {
		in, o := s[i:i+4], out[j:j+8]
		c := in[0]
		e := t.e[c]
		all := e
		binary.LittleEndian.PutUint16(o, uint16(e))
		k := escLen(t, c)
		c = in[1]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[2]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		c = in[3]
		e = t.e[c]
		all &= e
		binary.LittleEndian.PutUint16(o[k:], uint16(e))
		k += escLen(t, c)
		if all&escFast == 0 {
			break
		}
		j += k
	}
	for ; i < len(s); i++ {
		c := s[i]
		e := t.e[c]
		if e == 0 {
			return i, j, escBytes
		}
		binary.LittleEndian.PutUint16(out[j:j+2], uint16(e))
		j += escLen(t, c)
	}
	return i, j, escCommon
}

// utf8Len is the length of the UTF-8 sequence s starts with when it is valid
// and encoding/json copies it as is (not U+2028 or U+2029), or 0.
func utf8Len(s string) int {
	if len(s) < 2 || s[1]&0xC0 != 0x80 {
		return 0
	}
	c0, c1 := s[0], s[1]
	switch {
	case c0 < 0xC2:
		return 0
	case c0 < 0xE0:
		return 2
	case len(s) < 3 || s[2]&0xC0 != 0x80:
		return 0
	case c0 < 0xF0:
		if c0 == 0xE0 && c1 < 0xA0 || c0 == 0xED && c1 > 0x9F || c0 == 0xE2 && c1 == 0x80 && s[2]&^1 == 0xA8 {
			return 0 // overlong, a surrogate, U+2028 or U+2029
		}
		return 3
	case len(s) < 4 || s[3]&0xC0 != 0x80 || c0 > 0xF4 || c0 == 0xF0 && c1 < 0x90 || c0 == 0xF4 && c1 > 0x8F:
		return 0 // not a sequence, overlong, or past U+10FFFF
	}
	return 4
}

const (
	lsb = 0x0101010101010101 // the low bit of each byte of a word
	msb = 0x8080808080808080 // the high bit of each byte of a word
)

// needsEscape reports whether any byte of w is not written as itself: below
// 0x20, a quote, a backslash, not ASCII, or <, > or & with html. A borrow can
// only flag a byte above one that is flagged already.
func needsEscape(w uint64, html bool) bool {
	t := w | (w - 0x20*lsb) | (w ^ '"'*lsb - lsb) | (w ^ '\\'*lsb - lsb)
	if html {
		// < and > differ in one bit only.
		t |= (w^'<'*lsb)&^(2*lsb) - lsb | (w ^ '&'*lsb - lsb)
	}
	return t&msb != 0
}

// cleanJSON reports whether no byte of s, 8 bytes or more, needs escaping:
// a word at a time, the last one overlapping the one before.
func cleanJSON(s string, html bool) bool {
	n := len(s)
	for i := 0; i+8 < n; i += 8 {
		if needsEscape(load64(s[i:i+8]), html) {
			return false
		}
	}
	return !needsEscape(load64(s[n-8:]), html)
}

// load64 reads s[0:8] as a little-endian word (one load: the compiler merges them).
func load64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// load32 reads s[0:4] as a little-endian word.
func load32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
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

// appendHTMLEscaped appends enc, a JSON string encoded without HTML
// escaping, with <, > and & escaped: the only characters HTML escaping
// changes, and they stand for themselves in enc.
func appendHTMLEscaped(b, enc []byte) []byte {
	for {
		i := bytes.IndexAny(enc, "<>&")
		if i < 0 {
			return append(b, enc...)
		}
		b = append(b, enc[:i]...)
		b = append(b, `\u00`...)
		b = append(b, hexDigits[enc[i]>>4], hexDigits[enc[i]&0xf])
		enc = enc[i+1:]
	}
}

// withBodies is ev, or for an event that keeps its bodies only encoded, a copy
// with them decoded, for encoding/json.
func (ev *Event) withBodies() *Event {
	if !ev.bodiesEncoded() {
		return ev
	}
	cp := *ev
	for _, f := range [...]struct {
		val *string
		enc encodedString
	}{{&cp.RequestBody, ev.requestBodyJSON}, {&cp.ResponseBody, ev.responseBodyJSON}} {
		if f.enc.encodedOnly(*f.val) {
			// Made by appendStringJSON: cannot fail.
			_ = json.Unmarshal(f.enc.json, f.val)
		}
	}
	return &cp
}
