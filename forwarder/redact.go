package forwarder

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/url"
	"regexp"
	"strings"

	"github.com/otas/otas-sniff/httpparse"
)

// Redacted replaces every sensitive value.
const Redacted = "[REDACTED]"

// DefaultSensitiveHeaders are the headers the OTAS middleware always redacted.
var DefaultSensitiveHeaders = []string{"Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Proxy-Authorization"}

// DefaultSensitiveParams are the query parameters, form fields and JSON keys whose
// values are always redacted (names compare case-insensitively).
var DefaultSensitiveParams = []string{"password", "passwd", "secret", "token", "access_token", "refresh_token", "api_key", "apikey", "client_secret"}

// RedactorOptions configures a Redactor beyond its defaults.
type RedactorOptions struct {
	// Headers are extra header names to redact (case-insensitive).
	Headers []string
	// Params are extra query parameter, form field and JSON key names whose values
	// are redacted (case-insensitive).
	Params []string
	// Patterns are extra value patterns redacted wherever they occur in bodies,
	// header values, query and form values. A pattern with a capturing group has
	// only its first group redacted; otherwise the whole match is.
	Patterns []*regexp.Regexp
}

// valuePattern is one pattern searched for in values, with a cheap prefilter so
// most values skip the regular expression, and an optional check on the match.
type valuePattern struct {
	re     *regexp.Regexp
	maybe  func([]byte) bool
	accept func([]byte) bool
}

// Redactor removes credentials from an exchange before any sink sees it. It is
// safe for concurrent use.
type Redactor struct {
	headers  map[string]bool
	params   map[string]bool
	patterns []valuePattern
}

var (
	bearerRe = regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9._~+/-]+=*)`)
	jwtRe    = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	// Card numbers: 13 to 19 digits, optionally grouped by spaces or dashes, with
	// a major-network first digit (2-6) so epoch-millisecond timestamps (1...)
	// are left alone; a match must also pass the Luhn check.
	cardRe = regexp.MustCompile(`\b[2-6](?:[ -]?[0-9]){12,18}\b`)
)

// NewRedactor returns a Redactor for the default sensitive headers, the agent
// session token header, the default sensitive parameters, the built-in value
// patterns (bearer tokens, JWTs, Luhn-valid card numbers) and opts.
func NewRedactor(opts RedactorOptions) *Redactor {
	r := &Redactor{headers: map[string]bool{}, params: map[string]bool{}}
	for _, lists := range [][]string{DefaultSensitiveHeaders, {SessionTokenHeader}, opts.Headers} {
		for _, h := range lists {
			if h = strings.TrimSpace(h); h != "" {
				r.headers[strings.ToLower(h)] = true
			}
		}
	}
	for _, lists := range [][]string{DefaultSensitiveParams, opts.Params} {
		for _, p := range lists {
			if p = strings.TrimSpace(p); p != "" {
				r.params[strings.ToLower(p)] = true
			}
		}
	}
	r.patterns = []valuePattern{
		{re: bearerRe, maybe: containsFold("bearer")},
		{re: jwtRe, maybe: func(b []byte) bool { return bytes.Contains(b, []byte("eyJ")) }},
		{re: cardRe, maybe: atLeastDigits(13), accept: luhn},
	}
	for _, re := range opts.Patterns {
		if re != nil {
			r.patterns = append(r.patterns, valuePattern{re: re})
		}
	}
	return r
}

// Redact rewrites ex in place.
func (r *Redactor) Redact(ex *httpparse.Exchange) {
	if ex.Request != nil {
		ex.Request.Target = r.redactTarget(ex.Request.Target)
	}
	for _, m := range append([]*httpparse.Message{ex.Request, ex.Response}, ex.Interim...) {
		if m == nil {
			continue
		}
		r.redactHeader(m.Header)
		r.redactHeader(m.Trailer)
		if len(m.Body) > 0 {
			m.Body = r.RedactBody(m.Header.Get("Content-Type"), m.Body)
		}
	}
}

func (r *Redactor) redactHeader(h httpparse.Header) {
	for i := range h {
		if r.headers[strings.ToLower(h[i].Name)] {
			h[i].Value = Redacted
			continue
		}
		if v := r.redactText([]byte(h[i].Value)); v != nil {
			h[i].Value = string(v)
		}
	}
}

// redactTarget redacts the query of a request target.
func (r *Redactor) redactTarget(target string) string {
	q := strings.IndexByte(target, '?')
	if q < 0 {
		return target
	}
	end := len(target)
	if h := strings.IndexByte(target[q:], '#'); h >= 0 {
		end = q + h
	}
	red := r.redactForm(target[q+1 : end])
	return target[:q+1] + red + target[end:]
}

// redactForm redacts a URL-encoded list of name=value pairs, keeping every byte
// that is not a redacted value.
func (r *Redactor) redactForm(raw string) string {
	if raw == "" {
		return raw
	}
	var b strings.Builder
	changed := false
	for i, pair := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, value, hasValue := strings.Cut(pair, "=")
		if !hasValue || value == "" {
			b.WriteString(pair)
			continue
		}
		key, err := url.QueryUnescape(name)
		if err != nil {
			key = name
		}
		if r.params[strings.ToLower(key)] {
			b.WriteString(name + "=" + Redacted)
			changed = true
			continue
		}
		dec, err := url.QueryUnescape(value)
		if err != nil {
			dec = value
		}
		if red := r.redactText([]byte(dec)); red != nil {
			b.WriteString(name + "=" + url.QueryEscape(string(red)))
			changed = true
			continue
		}
		b.WriteString(pair)
	}
	if !changed {
		return raw
	}
	return b.String()
}

// RedactBody returns body with sensitive values replaced: form fields by name in a
// URL-encoded form, values of sensitive keys at any depth in JSON (rewriting only
// those values, so valid JSON stays valid), and value patterns anywhere. body is
// not modified; the result may share its memory when nothing changed.
func (r *Redactor) RedactBody(contentType string, body []byte) []byte {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/x-www-form-urlencoded":
		return []byte(r.redactForm(string(body)))
	case strings.HasSuffix(mt, "json") || looksJSON(body):
		return r.redactJSON(body)
	}
	if red := r.redactText(body); red != nil {
		return red
	}
	return body
}

func looksJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

// redactText applies the value patterns to b; it returns nil when nothing matched.
func (r *Redactor) redactText(b []byte) []byte {
	var out []byte
	for _, p := range r.patterns {
		src := b
		if out != nil {
			src = out
		}
		if p.maybe != nil && !p.maybe(src) {
			continue
		}
		if red := replacePattern(p, src); red != nil {
			out = red
		}
	}
	return out
}

// replacePattern replaces each match of p (its first group when it has one)
// with Redacted; nil when nothing was replaced.
func replacePattern(p valuePattern, src []byte) []byte {
	matches := p.re.FindAllSubmatchIndex(src, -1)
	if matches == nil {
		return nil
	}
	var out []byte
	last := 0
	for _, m := range matches {
		start, end := m[0], m[1]
		if len(m) >= 4 && m[2] >= 0 {
			start, end = m[2], m[3]
		}
		if p.accept != nil && !p.accept(src[start:end]) {
			continue
		}
		out = append(out, src[last:start]...)
		out = append(out, Redacted...)
		last = end
	}
	if out == nil {
		return nil
	}
	return append(out, src[last:]...)
}

func containsFold(word string) func([]byte) bool {
	lw := []byte(strings.ToLower(word))
	return func(b []byte) bool {
		for i := 0; i+len(lw) <= len(b); i++ {
			if b[i]|0x20 == lw[0] && bytes.EqualFold(b[i:i+len(lw)], lw) {
				return true
			}
		}
		return false
	}
}

func atLeastDigits(n int) func([]byte) bool {
	return func(b []byte) bool {
		c := 0
		for _, x := range b {
			if '0' <= x && x <= '9' {
				if c++; c >= n {
					return true
				}
			}
		}
		return false
	}
}

// luhn reports whether the digits in b (separators ignored) number 13 to 19 and
// pass the Luhn checksum.
func luhn(b []byte) bool {
	var digits []byte
	for _, c := range b {
		if '0' <= c && c <= '9' {
			digits = append(digits, c-'0')
		}
	}
	if len(digits) < 13 || len(digits) > 19 {
		return false
	}
	sum := 0
	for i := range digits {
		d := int(digits[len(digits)-1-i])
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// redactJSON rewrites the values of sensitive keys and the pattern matches in
// string and number values of a JSON text. Only the rewritten value spans change.
// Text that is not JSON (or is cut short) keeps the rewrites made before the
// point where it stops parsing, and has the patterns applied to the rest.
func (r *Redactor) redactJSON(body []byte) []byte {
	s := jsonScanner{d: body, r: r, sensStart: -1}
	err := s.document()
	tail := len(body)
	if err != nil {
		// Not JSON after all: patterns apply to everything after the last edit.
		tail = 0
		if s.sensStart >= 0 {
			// Cut inside a sensitive value: nothing of it may remain.
			s.edits = append(s.edits, edit{s.sensStart, len(body), []byte(`"` + Redacted + `"`)})
			tail = len(body)
		}
	}
	if len(s.edits) == 0 && tail == len(body) {
		return body
	}
	out := make([]byte, 0, len(body))
	last := 0
	for _, e := range s.edits {
		out = append(out, body[last:e.start]...)
		out = append(out, e.repl...)
		last = e.end
	}
	if last < tail {
		out = append(out, body[last:tail]...)
		last = tail
	}
	if last < len(body) {
		rest := body[last:]
		if red := r.redactText(rest); red != nil {
			rest = red
		}
		out = append(out, rest...)
	}
	return out
}

type edit struct {
	start, end int
	repl       []byte
}

// errJSON is any syntax error; where it happened is the scanner's position.
type errJSON struct{}

func (errJSON) Error() string { return "not JSON" }

// maxJSONDepth bounds nesting so a hostile body cannot exhaust the stack.
const maxJSONDepth = 512

// jsonScanner is a strict RFC 8259 recursive-descent scanner that records edits.
type jsonScanner struct {
	d         []byte
	i         int
	r         *Redactor
	edits     []edit
	depth     int
	quiet     int // > 0 inside a sensitive value
	sensStart int // where the outermost sensitive value being scanned began, or -1
}

func (s *jsonScanner) ws() {
	for s.i < len(s.d) {
		switch s.d[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScanner) document() error {
	s.ws()
	if err := s.value(false); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.d) {
		return errJSON{}
	}
	return nil
}

// value scans one value; a sensitive value is replaced whole, and nothing inside
// it is edited separately (edits must not overlap).
func (s *jsonScanner) value(sensitive bool) error {
	s.ws()
	if s.i >= len(s.d) {
		return errJSON{}
	}
	start := s.i
	sensitive = sensitive && s.quiet == 0
	if sensitive {
		s.sensStart = start
		s.quiet++
	}
	var err error
	switch c := s.d[s.i]; {
	case c == '{':
		err = s.object()
	case c == '[':
		err = s.array()
	case c == '"':
		var content []byte
		var escaped bool
		content, escaped, err = s.str()
		if err == nil && s.quiet == 0 {
			s.stringValue(start, content, escaped)
		}
	case c == '-' || ('0' <= c && c <= '9'):
		err = s.number()
		if n := s.d[start:s.i]; err == nil && s.quiet == 0 && len(n) >= 13 && '2' <= n[0] && n[0] <= '6' && isDigits(n) && luhn(n) {
			s.edits = append(s.edits, edit{start, s.i, []byte(`"` + Redacted + `"`)})
		}
	default:
		err = s.literal()
	}
	if err != nil {
		return err
	}
	if sensitive {
		s.quiet--
		s.sensStart = -1
		s.edits = append(s.edits, edit{start, s.i, []byte(`"` + Redacted + `"`)})
	}
	return nil
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// stringValue applies the value patterns to a string's text, re-encoding it when
// something was redacted.
func (s *jsonScanner) stringValue(start int, content []byte, escaped bool) {
	text := content
	if escaped {
		var str string
		if json.Unmarshal(s.d[start:s.i], &str) != nil {
			return
		}
		text = []byte(str)
	}
	red := s.r.redactText(text)
	if red == nil {
		return
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(string(red)) != nil {
		return
	}
	s.edits = append(s.edits, edit{start, s.i, bytes.TrimRight(b.Bytes(), "\n")})
}

func (s *jsonScanner) object() error {
	if s.depth++; s.depth > maxJSONDepth {
		return errJSON{}
	}
	defer func() { s.depth-- }()
	s.i++ // {
	s.ws()
	if s.i < len(s.d) && s.d[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != '"' {
			return errJSON{}
		}
		keyStart := s.i
		content, escaped, err := s.str()
		if err != nil {
			return err
		}
		key := string(content)
		if escaped {
			_ = json.Unmarshal(s.d[keyStart:s.i], &key)
		}
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != ':' {
			return errJSON{}
		}
		s.i++
		if err := s.value(s.r.params[strings.ToLower(key)]); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.d) {
			return errJSON{}
		}
		switch s.d[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errJSON{}
		}
	}
}

func (s *jsonScanner) array() error {
	if s.depth++; s.depth > maxJSONDepth {
		return errJSON{}
	}
	defer func() { s.depth-- }()
	s.i++ // [
	s.ws()
	if s.i < len(s.d) && s.d[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(false); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.d) {
			return errJSON{}
		}
		switch s.d[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errJSON{}
		}
	}
}

// str scans a string token, returning its raw content and whether it has escapes.
func (s *jsonScanner) str() ([]byte, bool, error) {
	s.i++ // opening quote
	start := s.i
	escaped := false
	for s.i < len(s.d) {
		c := s.d[s.i]
		switch {
		case c == '"':
			content := s.d[start:s.i]
			s.i++
			return content, escaped, nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.d) {
				s.i = len(s.d)
				return nil, false, errJSON{}
			}
			switch s.d[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.d) || !isHex4(s.d[s.i+2:s.i+6]) {
					return nil, false, errJSON{}
				}
				s.i += 6
			default:
				return nil, false, errJSON{}
			}
		case c < 0x20:
			return nil, false, errJSON{}
		default:
			s.i++
		}
	}
	return nil, false, errJSON{}
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (s *jsonScanner) digits() int {
	n := 0
	for s.i < len(s.d) && '0' <= s.d[s.i] && s.d[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

func (s *jsonScanner) number() error {
	if s.d[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.d) {
		return errJSON{}
	}
	if s.d[s.i] == '0' {
		s.i++
	} else if s.digits() == 0 {
		return errJSON{}
	}
	if s.i < len(s.d) && s.d[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return errJSON{}
		}
	}
	if s.i < len(s.d) && (s.d[s.i] == 'e' || s.d[s.i] == 'E') {
		s.i++
		if s.i < len(s.d) && (s.d[s.i] == '+' || s.d[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return errJSON{}
		}
	}
	return nil
}

func (s *jsonScanner) literal() error {
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(s.d[s.i:], []byte(lit)) {
			s.i += len(lit)
			return nil
		}
	}
	return errJSON{}
}
