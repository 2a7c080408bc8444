package forwarder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"mime"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/otas/otas-sniff/httpparse"
)

// SDKKeyHeader carries the OTAS SDK key on uploads to the backend.
const SDKKeyHeader = "X-OTAS-SDK-KEY"

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
	re *regexp.Regexp
	// minLen is the shortest text the pattern can match: shorter values skip it.
	minLen int
	maybe  func([]byte) bool
	accept func([]byte) bool
}

// Redactor removes credentials from an exchange before any sink sees it. It is
// safe for concurrent use.
type Redactor struct {
	headers map[string]bool
	params  map[string]bool
	// headerShapes and paramShapes rule out most header names and JSON keys
	// without a map lookup. maxParam is the longest parameter name.
	headerShapes, paramShapes nameShapes
	maxParam                  int
	patterns                  []valuePattern
	// minPattern is the shortest text any pattern can match.
	minPattern int
	// userPatterns is set when patterns beyond the built-in ones are configured.
	userPatterns bool
	// namesByLast lists the sensitive names by their last byte, and keyPairs
	// their last two bytes (keyPairsFor); quickOK is set when every name is
	// ASCII and no user pattern is configured, so that mayChangeJSON can rule a
	// body out (see there).
	namesByLast [256][]string
	keyPairs    *[256][4]uint64
	quickOK     bool
	// quick is the vector kernel's tables, nil without one (newQuickTables);
	// wide says the kernel reads 64 bytes a step (AVX-512), not 32.
	quick *quickTables
	wide  bool
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
	// The SDK key header too: a sniffer on the backend's port sees its own uploads.
	for _, lists := range [][]string{DefaultSensitiveHeaders, {SessionTokenHeader, SDKKeyHeader}, opts.Headers} {
		for _, h := range lists {
			if h = strings.TrimSpace(h); h != "" {
				lh := strings.ToLower(h)
				r.headers[lh] = true
				r.headerShapes.add(lh)
			}
		}
	}
	for _, lists := range [][]string{DefaultSensitiveParams, opts.Params} {
		for _, p := range lists {
			if p = strings.TrimSpace(p); p != "" {
				lp := strings.ToLower(p)
				r.params[lp] = true
				r.maxParam = max(r.maxParam, len(lp))
				r.paramShapes.add(lp)
				r.namesByLast[lp[len(lp)-1]] = append(r.namesByLast[lp[len(lp)-1]], lp)
			}
		}
	}
	// Minimum lengths: "bearer" SP one character; "eyJ" x "." x "."; 13 digits.
	r.patterns = []valuePattern{
		{re: bearerRe, minLen: 8, maybe: containsFold("bearer")},
		{re: jwtRe, minLen: 7, maybe: func(b []byte) bool { return bytes.Contains(b, []byte("eyJ")) }},
		{re: cardRe, minLen: 13, maybe: hasDigitRun(13), accept: luhn},
	}
	for _, re := range opts.Patterns {
		if re != nil {
			r.patterns = append(r.patterns, valuePattern{re: re})
			r.userPatterns = true
		}
	}
	r.quickOK = !r.userPatterns
	for name := range r.params {
		for _, c := range []byte(name) {
			r.quickOK = r.quickOK && c < utf8.RuneSelf && c != '"' && c != '\\'
		}
	}
	if r.quickOK {
		names := make([]string, 0, len(r.params))
		for name := range r.params {
			names = append(names, name)
		}
		r.keyPairs = keyPairsFor(names)
		r.quick = newQuickTables(names)
		r.wide = r.quick != nil && hasAVX512
	}
	r.minPattern = r.patterns[0].minLen
	for _, p := range r.patterns {
		r.minPattern = min(r.minPattern, p.minLen)
	}
	return r
}

// sensitiveParam reports whether a (JSON key, form field) name is sensitive,
// without allocating for names short enough to be one.
func (r *Redactor) sensitiveParam(name []byte) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			// Unicode lower-casing can change the length (the Kelvin sign is "k").
			return r.params[strings.ToLower(string(name))]
		}
	}
	if len(name) > r.maxParam || !mayBeName(&r.paramShapes, name) {
		return false
	}
	var buf [64]byte
	lower := buf[:0]
	if len(name) > len(buf) {
		lower = make([]byte, 0, len(name))
	}
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower = append(lower, c)
	}
	return r.params[string(lower)]
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
		if r.sensitiveHeader(h[i].Name) {
			h[i].Value = Redacted
			continue
		}
		if v := readOnlyBytes(h[i].Value); r.mayMatch(v) {
			if red := r.redactText(v); red != nil {
				h[i].Value = string(red)
			}
		}
	}
}

// sensitiveHeader reports whether a header is redacted whole. Most names
// differ from every sensitive one in length or first letter (either case),
// which is cheaper to see than a lower-cased copy's map lookup. Not for
// names with a byte past ASCII: lower-casing those can change their length
// (the Kelvin sign is "k").
func (r *Redactor) sensitiveHeader(name string) bool {
	if isASCII(name) && !mayBeName(&r.headerShapes, name) {
		return false
	}
	return lookupFold(r.headers, name)
}

// isASCII reports whether every byte of s is below 0x80, a word at a time.
func isASCII(s string) bool {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if load64(s[i:i+8])&msb != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// nameShapes are the lengths and first bytes of a set of lower-case ASCII
// names: lens has bit n set when one is n bytes long (every bit once one is 64
// or longer), first bit c when one starts with byte c.
type nameShapes struct {
	lens  uint64
	first [4]uint64
}

func (s *nameShapes) add(name string) {
	if len(name) < 64 {
		s.lens |= 1 << len(name)
	} else {
		s.lens = ^uint64(0)
	}
	s.first[name[0]>>6] |= 1 << (name[0] & 63)
}

// mayBeName reports whether an ASCII name may be one of s's, in any case:
// false when no name of s has its length or its first byte (either case).
func mayBeName[T ~string | ~[]byte](s *nameShapes, name T) bool {
	if len(name) == 0 || len(name) < 64 && s.lens&(1<<len(name)) == 0 {
		return false
	}
	c, lc := name[0], name[0]|0x20
	return s.first[c>>6]&(1<<(c&63)) != 0 || s.first[lc>>6]&(1<<(lc&63)) != 0
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
	raw := target[q+1 : end]
	red := r.redactForm(raw)
	if red == raw {
		return target // nothing redacted: no new string (redactForm returns raw itself)
	}
	return target[:q+1] + red + target[end:]
}

// redactForm redacts a URL-encoded list of name=value pairs, keeping every byte
// that is not a redacted value.
func (r *Redactor) redactForm(raw string) string {
	if raw == "" {
		return raw
	}
	// b is started only at the first change: most queries keep every byte.
	var b strings.Builder
	started := false
	for start := 0; start <= len(raw); {
		end := strings.IndexByte(raw[start:], '&')
		if end < 0 {
			end = len(raw)
		} else {
			end += start
		}
		if repl, changed := r.redactPair(raw[start:end]); changed || started {
			if !started {
				b.WriteString(raw[:start])
				started = true
			}
			b.WriteString(repl)
			if end < len(raw) {
				b.WriteByte('&')
			}
		}
		start = end + 1
	}
	if !started {
		return raw
	}
	return b.String()
}

// redactPair redacts one name=value pair of a form; false when it is kept.
func (r *Redactor) redactPair(pair string) (string, bool) {
	name, value, hasValue := strings.Cut(pair, "=")
	if !hasValue || value == "" {
		return pair, false
	}
	// Name and value are decoded on the stack (as url.QueryUnescape, raw when
	// malformed): most pairs have nothing to redact and need no copy.
	var buf [256]byte
	key, rest, ok := queryUnescape(buf[:0], name)
	if !ok {
		key = name
	}
	if lookupFold(r.params, key) {
		return name + "=" + Redacted, true
	}
	dec, _, ok := queryUnescape(rest, value)
	if !ok {
		dec = value
	}
	if !r.mayMatch(readOnlyBytes(dec)) {
		return pair, false
	}
	// A copy, so that buf stays on the stack: the patterns may keep their input.
	if red := r.redactText([]byte(dec)); red != nil {
		return name + "=" + url.QueryEscape(string(red)), true
	}
	return pair, false
}

// RedactBody returns body with sensitive values replaced: form fields by name in a
// URL-encoded form, values of sensitive keys at any depth in JSON (rewriting only
// those values, so valid JSON stays valid), and value patterns anywhere. body is
// not modified; the result may share its memory when nothing changed.
func (r *Redactor) RedactBody(contentType string, body []byte) []byte {
	mt := mediaType(contentType)
	switch {
	case mt == "application/x-www-form-urlencoded":
		return []byte(r.redactForm(string(body)))
	case strings.HasSuffix(mt, "json") || looksJSON(body):
		if !r.mayChangeJSON(body) {
			return body
		}
		return r.redactJSON(body)
	}
	if red := r.redactText(body); red != nil {
		return red
	}
	return body
}

// mediaType is mime.ParseMediaType's lower-cased type/subtype ("" when it
// does not parse), without its allocations for the usual plain values.
func mediaType(contentType string) string {
	if strings.IndexByte(contentType, ';') < 0 {
		v := strings.TrimSpace(contentType)
		slash := strings.IndexByte(v, '/')
		plain := slash > 0 && slash < len(v)-1
		for i := 0; plain && i < len(v); i++ {
			c := v[i]
			plain = c == '/' && i == slash || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '+'
		}
		if plain {
			return v
		}
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt
}

// lookupFold is m[strings.ToLower(name)] without allocating for short ASCII
// names (a map lookup by string(bytes) does not copy).
func lookupFold(m map[string]bool, name string) bool {
	var buf [64]byte
	if len(name) > len(buf) {
		return m[strings.ToLower(name)]
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= utf8.RuneSelf {
			return m[strings.ToLower(name)]
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m[string(buf[:len(name)])]
}

// readOnlyBytes views s as bytes without copying; the result must not be
// written to (redactText only reads its input and builds a new output).
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

func looksJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

// mayMatch reports whether any value pattern could match b, in one pass for the
// built-in patterns: JSON bodies have many short string values, and running
// each pattern's own prefilter over each of them cost more than the scan itself.
// It may say yes when nothing matches, never no when something does.
func (r *Redactor) mayMatch(b []byte) bool {
	if len(b) < r.minPattern {
		return false
	}
	if r.userPatterns {
		return true
	}
	if !mayHoldPattern(b) {
		return false
	}
	run := 0 // digits in a row, a single space or dash allowed between two
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case '0' <= c && c <= '9':
			if run++; run >= 13 {
				return true
			}
		case (c == ' ' || c == '-') && run > 0 && i+1 < len(b) && '0' <= b[i+1] && b[i+1] <= '9':
			// the separator does not count; the next digit continues the run
		case c|0x20 == 'b':
			if len(b)-i >= 8 && bytes.EqualFold(b[i:i+6], []byte("bearer")) {
				return true
			}
			run = 0
		case c == 'e':
			if i+2 < len(b) && b[i+1] == 'y' && b[i+2] == 'J' {
				return true
			}
			run = 0
		default:
			run = 0
		}
	}
	return false
}

// mayHoldPattern reports whether b has what a built-in pattern needs: a b
// (either case, for "bearer"), a J (for "eyJ") or 13 digits, a word at a
// time. Most header values and short strings have none of them (a Date
// header has 12 digits).
func mayHoldPattern(b []byte) bool {
	var marks uint64
	digits := 0
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i : i+8])
		marks |= zeroBytes((w|lo8*0x20)^(lo8*'b')) | zeroBytes(w^(lo8*'J'))
		// A digit: high nibble 3 and low nibble below 10 (adding 0x76 to a
		// low nibble of 10 or more sets the byte's high bit).
		d := zeroBytes((w&(lo8*0xF0))^(lo8*0x30)) &^ ((w&(lo8*0x0F) + lo8*0x76) & hi8)
		digits += bits.OnesCount64(d)
	}
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case '0' <= c && c <= '9':
			digits++
		case c|0x20 == 'b', c == 'J':
			marks = 1
		}
	}
	return marks != 0 || digits >= 13
}

// redactText applies the value patterns to b; it returns nil when nothing matched.
func (r *Redactor) redactText(b []byte) []byte {
	if len(b) < r.minPattern {
		return nil
	}
	var out []byte
	for _, p := range r.patterns {
		src := b
		if out != nil {
			src = out
		}
		if len(src) < p.minLen || p.maybe != nil && !p.maybe(src) {
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

// containsFold reports whether b holds an ASCII word, ignoring case. It jumps
// between occurrences of the first letter (either case) with IndexByte, which
// is much faster than comparing at every offset.
func containsFold(word string) func([]byte) bool {
	lw := []byte(strings.ToLower(word))
	lower, upper := lw[0], lw[0]-('a'-'A')
	return func(b []byte) bool {
		for _, first := range [2]byte{lower, upper} {
			for i := 0; i+len(lw) <= len(b); i++ {
				j := bytes.IndexByte(b[i:len(b)-len(lw)+1], first)
				if j < 0 {
					break
				}
				i += j
				if bytes.EqualFold(b[i:i+len(lw)], lw) {
					return true
				}
			}
		}
		return false
	}
}

// hasDigitRun reports whether b holds n digits in a row, single spaces or dashes
// between them allowed: what a card number needs before the regexp is worth running.
func hasDigitRun(n int) func([]byte) bool {
	return func(b []byte) bool {
		run, sep := 0, false
		for _, x := range b {
			switch {
			case '0' <= x && x <= '9':
				if run++; run >= n {
					return true
				}
				sep = false
			case (x == ' ' || x == '-') && run > 0 && !sep:
				sep = true
			default:
				run, sep = 0, false
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

// runBreak[c] is all ones for a byte that ends a run of card-number bytes
// (digits, and the spaces and dashes a card number may have), zero for one
// that does not. Read-only.
var runBreak = func() (t [256]int) {
	for c := range t {
		t[c] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 0
	}
	t[' '], t['-'] = 0, 0
	return t
}()

// Word-at-a-time ("SWAR") helpers: a uint64 holds 8 body bytes, byte k of the
// body in bits 8k..8k+7 (little-endian), and a mask marks byte k by its high
// bit, bit 8k+7, so bits.TrailingZeros64(mask)>>3 is the first marked byte.
const (
	lo8 = 0x0101010101010101 // lo8 * c repeats byte c in each byte
	hi8 = 0x8080808080808080 // the high bit of each byte
)

// nonZero sets the high bit of each byte of v that is not zero, and of no
// other. Exact: the low seven bits of a byte plus 0x7f cannot carry into the
// next byte, so no byte affects another. The other bits are garbage.
func nonZero(v uint64) uint64 {
	return (v&^hi8 + ^uint64(hi8)) | v
}

// zeroBytes marks the bytes of v that are zero.
func zeroBytes(v uint64) uint64 {
	return ^nonZero(v) & hi8
}

// mayChangeJSON reports whether redactJSON could change body, in a few cheap
// passes: most API bodies carry no secret, and the full scan costs a few
// nanoseconds per byte on dense JSON. Nothing can change unless the body holds
// one of: a quoted sensitive name (any case) followed by a colon, JSON
// whitespace allowed before it (redactJSON edits the values of keys, and
// nothing else names them); a backslash (escapes can spell anything); U+0130
// or U+212A, which lower-case to ASCII i and k; "eyJ" (a JWT); "bearer" (any
// case); 13 digits in a row, spaces and dashes allowed between them (a card
// number). It may say yes when nothing changes, never no when something would.
//
// Bodies of 64 bytes or more go to the vector kernel when the machine has
// one (mayChangeJSONVector), the others a word at a time.
func (r *Redactor) mayChangeJSON(body []byte) bool {
	if !r.quickOK {
		return true
	}
	if r.quick != nil && len(body) >= 64 {
		return r.mayChangeJSONVector(body)
	}
	return r.mayChangeJSONWords(body)
}

// mayChangeJSONWords is mayChangeJSON a word at a time, for any body.
//
// The rarest byte of a backslash, "eyJ", U+0130 and U+212A is looked for
// with bytes.IndexByte (assembly, tens of bytes a nanosecond). The rest is
// read 8 bytes at a time, as a uint64 (see lo8), with the word one byte
// earlier beside it. A word's first colon is ruled out without a branch by the
// bytes before it (most words hold none or one, and a branch on which would
// mispredict all the time); the colons of a word with two, or one that may
// follow a key, are checked alone (keyBefore). The e's after a b (either case,
// for "bearer") are marked by a mask. Card-number runs are sampled every
// fourth byte: 13 card bytes in a row hold three samples, and three card
// samples in a row have their neighbourhood counted exactly. The first bytes
// and the last few, which have no whole word, are checked one at a time.
func (r *Redactor) mayChangeJSONWords(body []byte) bool {
	if bytes.IndexByte(body, '\\') >= 0 || hasEyJ(body) || leadBefore(body, 0xC4, 0xB0) || leadBefore(body, 0xE2, 0x84) {
		return true
	}
	// "bearer" at the first two bytes: the word loop starts at the third e.
	for j := 1; j < min(wordStart, len(body)); j++ {
		if r.quickHit(body, j) {
			return true
		}
	}
	pairs := r.keyPairs
	var cards uint64 // whether each sampled byte, newest lowest, is a card byte
	i := wordStart
	for ; i+8 <= len(body); i += 8 {
		w := binary.LittleEndian.Uint64(body[i : i+8])
		prev := binary.LittleEndian.Uint64(body[i-1 : i+7]) // the byte before each of w's
		// Card bytes every fourth byte: 13 in a row cover three such samples.
		cards = cards<<2 | cardByte[uint8(w)]<<1 | cardByte[uint8(w>>32)]
		if cards&(cards>>1)&(cards>>2)&3 != 0 && cardRunNear(body, i-8, i+8) {
			return true
		}
		// "be" in any case (bit 0x20 makes a letter lower case, and only B and
		// b become b): marked at the e, the b one byte before.
		for be := zeroBytes((w | lo8*0x20) ^ (lo8 * 'e') | (prev | lo8*0x20) ^ (lo8 * 'b')); be != 0; be &= be - 1 {
			if bearerAt(body, i+bits.TrailingZeros64(be)>>3-1) {
				return true
			}
		}
		// Most words hold no colon or one: the first is ruled out without a
		// branch (a branch on how many there are mispredicts all the time), by
		// the byte before it and the two before that (keyBefore). Without a
		// colon, q is the word's last byte, and what it says is not used.
		colons := zeroBytes(w ^ (lo8 * ':'))
		q := i + bits.TrailingZeros64(colons)>>3 - 1
		end, a, b := keyEnd[body[q]], body[q-1], body[q-2]
		if maybe := pairs[a][b>>6]>>(b&63)&end | end>>1 | colons&(colons-1); maybe != 0 && colons != 0 {
			for ; colons != 0; colons &= colons - 1 {
				if r.keyBefore(body, i+bits.TrailingZeros64(colons)>>3) {
					return true
				}
			}
		}
	}
	// The bytes after the last whole word (all of a body shorter than
	// wordStart+8).
	return r.tailHit(body, min(i, len(body)))
}

// tailHit checks body[i:], the bytes after the last word or block, one at a
// time (byteHit), with the card bytes in a row before them.
func (r *Redactor) tailHit(body []byte, i int) bool {
	run := 0
	for j := i - 1; j >= 0 && run < 13 && runBreak[body[j]] == 0; j-- {
		run++
	}
	for j := i; j < len(body); j++ {
		if run = (run + 1) &^ runBreak[body[j]]; run >= 13 || r.byteHit(body, j) {
			return true
		}
	}
	return false
}

// cardByte[c] is 1 for a byte a card number may have (digits, space, dash),
// 0 for the others. Read-only.
var cardByte = func() (t [256]uint64) {
	for c := range t {
		t[c] = uint64(runBreak[c] + 1)
	}
	return t
}()

// wordStart is where the word loop of mayChangeJSON starts: the first colon
// it reads has three bytes before it.
const wordStart = 3

// keyEnd[c] is 1 for a quote, the byte before the colon after a key, and 2 for
// JSON whitespace, which may come between them. Read-only.
var keyEnd = func() (t [256]uint64) {
	t['"'] = 1
	for _, c := range []byte(" \t\r\n") {
		t[c] = 2
	}
	return t
}()

// cardRunNear reports whether 13 card-number bytes in a row (digits, spaces,
// dashes) cross body[lo:hi].
func cardRunNear(body []byte, lo, hi int) bool {
	run := 0
	for j := max(lo-12, 0); j < min(hi+12, len(body)); j++ {
		if run = (run + 1) &^ runBreak[body[j]]; run >= 13 {
			return true
		}
	}
	return false
}

// bearerAt reports whether body[i:] starts with "bearer" (any case) and is
// long enough for a token after it.
func bearerAt(body []byte, i int) bool {
	return len(body)-i >= 8 && bytes.EqualFold(body[i:i+6], []byte("bearer"))
}

// hasEyJ reports whether body holds "eyJ", jumping from one J to the next.
func hasEyJ(body []byte) bool {
	for i := 2; i < len(body); i++ {
		j := bytes.IndexByte(body[i:], 'J')
		if j < 0 {
			return false
		}
		if i += j; body[i-2] == 'e' && body[i-1] == 'y' {
			return true
		}
	}
	return false
}

// leadBefore reports whether body holds byte lead followed by next, or ends
// with lead.
func leadBefore(body []byte, lead, next byte) bool {
	for i := 0; i < len(body); i++ {
		j := bytes.IndexByte(body[i:], lead)
		if j < 0 {
			return false
		}
		if i += j; i+1 == len(body) || body[i+1] == next {
			return true
		}
	}
	return false
}

// quickHit reports whether body[i] is where the word loop of mayChangeJSON
// marks a key or "bearer": at the colon, or at the e. The other things it
// looks for have passes of their own.
func (r *Redactor) quickHit(body []byte, i int) bool {
	switch body[i] {
	case ':':
		return r.keyBefore(body, i)
	case 'e', 'E':
		return i >= 1 && body[i-1]|0x20 == 'b' && bearerAt(body, i-1)
	}
	return false
}

// keyPairsFor is the table of the last two bytes of a quoted sensitive name,
// any case: bit b&63 of t[a][b>>6] is set when a name ends with b then a, or
// is a alone (b is then the opening quote).
func keyPairsFor(names []string) *[256][4]uint64 {
	t := new([256][4]uint64)
	for _, name := range names {
		before := byte('"')
		if len(name) > 1 {
			before = name[len(name)-2]
		}
		for _, a := range foldASCII(name[len(name)-1]) {
			for _, b := range foldASCII(before) {
				t[a][b>>6] |= 1 << (b & 63)
			}
		}
	}
	return t
}

// keyBefore reports whether the colon at body[colon] follows a quoted
// sensitive name (any ASCII case), JSON whitespace allowed between them.
func (r *Redactor) keyBefore(body []byte, colon int) bool {
	q := colon - 1 // the closing quote
	for q >= 0 && isJSONSpace(body[q]) {
		q--
	}
	if q < 2 || body[q] != '"' {
		return false // a name of one byte needs two quotes around it
	}
	// Most keys are ruled out by their last two bytes.
	if a, b := body[q-1], body[q-2]; r.keyPairs[a][b>>6]&(1<<(b&63)) == 0 {
		return false
	}
	last := body[q-1]
	if 'A' <= last && last <= 'Z' {
		last += 'a' - 'A'
	}
	for _, name := range r.namesByLast[last] {
		if open := q - len(name) - 1; open >= 0 && body[open] == '"' && equalFoldASCII(body[open+1:q], name) {
			return true
		}
	}
	return false
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// equalFoldASCII compares b with a lower-case ASCII name, ignoring b's case.
func equalFoldASCII(b []byte, lower string) bool {
	for i := range len(lower) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
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
			s.edits = append(s.edits, edit{s.sensStart, len(body), redactedJSON})
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
	repl       string
}

// redactedJSON replaces a whole JSON value.
const redactedJSON = `"` + Redacted + `"`

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
		if err == nil && s.quiet == 0 && (escaped || len(content) >= s.r.minPattern) {
			s.stringValue(start, content, escaped)
		}
	case c == '-' || ('0' <= c && c <= '9'):
		err = s.number()
		if n := s.d[start:s.i]; err == nil && s.quiet == 0 && len(n) >= 13 && '2' <= n[0] && n[0] <= '6' && isDigits(n) && luhn(n) {
			s.edits = append(s.edits, edit{start, s.i, redactedJSON})
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
		s.edits = append(s.edits, edit{start, s.i, redactedJSON})
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
	if !escaped && !s.r.mayMatch(text) {
		return
	}
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
	s.edits = append(s.edits, edit{start, s.i, string(bytes.TrimRight(b.Bytes(), "\n"))})
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
		var sensitive bool
		if escaped {
			key := string(content)
			_ = json.Unmarshal(s.d[keyStart:s.i], &key)
			sensitive = s.r.params[strings.ToLower(key)]
		} else {
			sensitive = s.r.sensitiveParam(content)
		}
		s.ws()
		if s.i >= len(s.d) || s.d[s.i] != ':' {
			return errJSON{}
		}
		s.i++
		if err := s.value(sensitive); err != nil {
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
		if c >= 0x20 && c != '"' && c != '\\' {
			// The common case first: a plain character.
			s.i++
			continue
		}
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
		default: // a control character
			return nil, false, errJSON{}
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
