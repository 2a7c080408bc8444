package forwarder

import (
	"math"
	"strings"
)

// IDPlaceholder replaces a path segment (or a file name's stem) that holds an
// identifier rather than a name.
const IDPlaceholder = "{id}"

// PathTemplate turns a request path into the endpoint it calls by replacing the
// segments that are values with {id}:
//
//	/api/users/42/orders/9f1c0e4a-77b2-4c1e-9a0b-2d9e1f3c5a77 → /api/users/{id}/orders/{id}
//
// A segment is a value when it is a number, a UUID, a long hexadecimal string
// (object ids, hashes), a digit-heavy code (INV-2024-0001, dates), an e-mail
// address, or a long token of mixed letters and digits (base64 and base32 ids,
// ULIDs, Stripe-style cus_… ids). Words, versions (v1, v2.1, 1.0), and file
// names keep their text; a file name whose stem is a value keeps its extension
// (/img/1234.png → /img/{id}.png). The query, if any, is dropped: a template names
// an endpoint, not a call.
func PathTemplate(path string) string {
	path = withoutQuery(path)
	var buf [256]byte
	t, changed := appendPathTemplate(buf[:0], path)
	if !changed {
		return path
	}
	return string(t)
}

// withoutQuery is path up to its query or fragment.
func withoutQuery(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

// appendPathTemplate appends the template of path (without a query) to dst and
// reports true, or returns dst as it is and false when the template is path
// itself: most paths then cost no allocation.
func appendPathTemplate(dst []byte, path string) ([]byte, bool) {
	if !strings.HasPrefix(path, "/") {
		// "*" (OPTIONS) or an authority (CONNECT) is no path to template.
		return dst, false
	}
	copied := 0 // path[:copied] is in dst
	for start := 0; start <= len(path); {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		if keep := templateSegment(path[start:end]); keep >= 0 {
			dst = append(dst, path[copied:start]...)
			dst = append(dst, IDPlaceholder...)
			dst = append(dst, path[end-keep:end]...)
			copied = end
		}
		start = end + 1
	}
	if copied == 0 {
		return dst, false
	}
	return append(dst, path[copied:]...), true
}

// SetPathTemplate fills ev.Metadata.PathTemplate from ev.Path; it fits
// Options.Enrich.
func SetPathTemplate(ev *Event) {
	ev.Metadata.PathTemplate = PathTemplate(ev.Path)
}

// templateSegment says how seg is templated: -1 when it is kept, else how many
// of its last bytes follow the placeholder (a file name's extension, or 0).
func templateSegment(seg string) int {
	if seg == "" {
		return -1
	}
	// A file name: template the stem, keep the extension.
	if dot := strings.LastIndexByte(seg, '.'); dot > 0 && isExtension(seg[dot+1:]) && isIDValue(seg[:dot]) {
		return len(seg) - dot
	}
	if isIDValue(seg) {
		return 0
	}
	return -1
}

// isExtension reports whether s looks like a file extension: 1 to 5 letters or
// digits, at least one a letter (json, png, mp4, but not the 21 of 4.17.21).
func isExtension(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isLetter(c):
			letter = true
		case isDigit(c):
		default:
			return false
		}
	}
	return letter
}

func isIDValue(s string) bool {
	switch {
	case isVersion(s):
		return false
	case isNumber(s), isUUID(s), isLongHex(s), isDigitHeavyCode(s), isEmail(s), isHighEntropyToken(s):
		return true
	}
	return false
}

// isVersion matches v1, v2, V10, v1.2.3, 1.0, 2.1.4: API and package versions
// name an endpoint's family rather than a record.
func isVersion(s string) bool {
	rest := s
	if len(rest) > 1 && (rest[0] == 'v' || rest[0] == 'V') {
		rest = rest[1:]
		return isDottedNumber(rest, 0)
	}
	// Bare numbers need a dot to count as versions; 42 is an id.
	return isDottedNumber(rest, 1)
}

// isDottedNumber reports whether s is digits separated by single dots, with at
// least minDots dots and at most three parts.
func isDottedNumber(s string, minDots int) bool {
	dots, part := 0, 0 // part: digits since the last dot
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' && part > 0:
			dots, part = dots+1, 0
		case isDigit(c) && part < 4:
			part++
		default:
			return false
		}
	}
	return part > 0 && minDots <= dots && dots <= 2
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// isUUID matches the 8-4-4-4-12 hexadecimal form in either case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// isLongHex matches hexadecimal strings of 8 or more characters with at least
// one digit (ObjectIds, SHA digests, short commit hashes), or of 16 or more
// without: "deadbeef" and "facade" stay words.
func isLongHex(s string) bool {
	if len(s) < 8 {
		return false
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
		if isDigit(s[i]) {
			digits++
		}
	}
	return digits > 0 || len(s) >= 16
}

// isDigitHeavyCode matches codes such as INV-2024-0001, 2024-01-15 or
// order_123456: at least five digits making up at least half of the letters
// and digits. Five keeps x86_64, sha256 and 1080p as words.
func isDigitHeavyCode(s string) bool {
	digits, alnum := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			digits++
			alnum++
		case isLetter(c):
			alnum++
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '+':
		default:
			return false
		}
	}
	return digits >= 5 && 2*digits >= alnum
}

// isEmail matches local@domain.tld, the form user records are often keyed by.
func isEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 {
		// Percent-encoded @.
		if i := strings.Index(s, "%40"); i > 0 {
			s = s[:i] + "@" + s[i+3:]
			at = i
		} else {
			return false
		}
	}
	domain := s[at+1:]
	dot := strings.LastIndexByte(domain, '.')
	return dot > 0 && dot < len(domain)-1 && !strings.ContainsAny(domain, "@/")
}

// isHighEntropyToken matches long random-looking tokens: base64 or base32 ids,
// ULIDs, prefixed ids like cus_J4kd82Kd9LmnQ2. It needs 16 or more characters
// from the base64url alphabet, both letters and digits, frequent switches
// between upper case, lower case and digits (random text switches on about two
// characters in three; camelCase and hyphenated words rarely do), and a spread of
// distinct characters (Shannon entropy of at least 3 bits a character).
func isHighEntropyToken(s string) bool {
	if len(s) < 16 {
		return false
	}
	var counts [256]int
	letters, digits, switches := 0, 0, 0
	prevClass := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		class := 0
		switch {
		case isDigit(c):
			digits++
			class = 1
		case 'a' <= c && c <= 'z':
			letters++
			class = 2
		case 'A' <= c && c <= 'Z':
			letters++
			class = 3
		case c == '-' || c == '_':
		case c == '=' && i >= len(s)-2:
		default:
			return false
		}
		if class != 0 {
			if prevClass != 0 && class != prevClass {
				switches++
			}
			prevClass = class
		}
		counts[c]++
	}
	if letters == 0 || digits == 0 {
		return false
	}
	if float64(switches) < 0.3*float64(letters+digits-1) {
		return false
	}
	return shannonEntropy(counts[:], len(s)) >= 3.0
}

// shannonEntropy is the entropy in bits per character of a string of n
// characters with the given character counts.
func shannonEntropy(counts []int, n int) float64 {
	h := 0.0
	for _, c := range counts {
		if c == 0 {
			continue
		}
		p := float64(c) / float64(n)
		h -= p * math.Log2(p)
	}
	return h
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isHex(c byte) bool    { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
