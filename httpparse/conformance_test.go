package httpparse

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/corpus"
	"github.com/otas/otas-sniff/reassembly"
)

// Conformance against other parsers' test tables, read at test time from the
// shared corpus (never copied here). Each case is fed through a real stream and
// the completed messages compared on method, target, status, header count and
// body. Where our model differs on purpose the case is classified with a reason;
// the agreement rate over the remaining cases is asserted against a floor.
//
// Measured rates are recorded in CONFORMANCE.md.

// wantMessage is one completed message as the other parser saw it.
type wantMessage struct {
	Method, URL string
	Status      int
	Headers     int
	Body        string
}

// conformanceCase is one input plus the other parser's verdict.
type conformanceCase struct {
	name     string
	response bool
	// finish: the input ends with EOF, which completes a close-delimited body.
	finish   bool
	skipBody bool
	raw      []byte
	want     []wantMessage
	// wantErr: the other parser reported an error (pauses excluded).
	wantErr bool
	// lenientFlag names the other parser's non-default leniency flag, if any.
	lenientFlag string
}

// observed is what our parser made of a case.
type observed struct {
	msgs    []wantMessage
	flagged bool // a parse error, skipped bytes or an oversized head
}

// runConformanceCase feeds the case as one side of a connection (responses get
// synthetic GET or HEAD requests to answer) and collects complete messages.
func runConformanceCase(c conformanceCase) observed {
	var preClose, all []*Exchange
	closing := false
	f := NewStreamFactory(Options{MaxBodyBytes: 1 << 20}, func(ex *Exchange) {
		all = append(all, ex)
		if !closing {
			preClose = append(preClose, ex)
		}
	})
	s := f.NewStream(testConn())
	side := reassembly.Initiator
	if c.response {
		req := "GET / HTTP/1.1\r\n\r\n"
		if c.skipBody {
			req = "HEAD / HTTP/1.1\r\n\r\n"
		}
		s.Data(reassembly.Chunk{Side: reassembly.Initiator, Bytes: []byte(strings.Repeat(req, 16)), Seen: t0, Completed: t0})
		side = reassembly.Responder
	}
	s.Data(reassembly.Chunk{Side: side, Bytes: c.raw, Seen: t0, Completed: t0})
	if c.finish {
		s.End(side, t0)
	}
	closing = true
	s.Close(reassembly.EndOfCapture, t0)

	var o observed
	st := f.Stats()
	o.flagged = st.ParseErrors+st.SkippedBytes+st.OversizedHeaders > 0
	if c.response {
		src := preClose
		if c.finish {
			src = all
		}
		for _, ex := range src {
			if r := ex.Response; r != nil && !hasAnomaly(r, anomalyIncomplete) {
				for _, im := range ex.Interim {
					o.msgs = append(o.msgs, wantMessage{Status: im.StatusCode, Headers: len(im.Header)})
				}
				o.msgs = append(o.msgs, wantMessage{Status: r.StatusCode, Headers: len(r.Header) + len(r.Trailer), Body: string(r.Body)})
			}
		}
		return o
	}
	for _, ex := range all {
		if r := ex.Request; !hasAnomaly(r, anomalyIncomplete) {
			// Trailer fields count as header fields in their event model.
			o.msgs = append(o.msgs, wantMessage{Method: r.Method, URL: r.Target, Headers: len(r.Header) + len(r.Trailer), Body: string(r.Body)})
		}
	}
	return o
}

func hasAnomaly(m *Message, a string) bool {
	for _, x := range m.Anomalies {
		if x == a {
			return true
		}
	}
	return false
}

// verdict compares one case: "" when we agree, else why not.
func verdict(c conformanceCase, o observed) string {
	n := min(len(c.want), len(o.msgs))
	for i := 0; i < n; i++ {
		if c.want[i] != o.msgs[i] {
			return fmt.Sprintf("message %d: want %+v, got %+v", i, c.want[i], o.msgs[i])
		}
	}
	switch {
	case len(o.msgs) < len(c.want):
		return fmt.Sprintf("got %d of %d messages", len(o.msgs), len(c.want))
	case c.wantErr && !o.flagged:
		return "they report an error, we accept the input"
	case !c.wantErr && o.flagged:
		return "we flag an error they do not"
	case !c.wantErr && len(o.msgs) > len(c.want):
		return fmt.Sprintf("got %d messages, want %d", len(o.msgs), len(c.want))
	}
	return ""
}

// classify names a deliberate difference between our model and theirs, or "".
func classify(c conformanceCase, o observed) string {
	raw := string(c.raw)
	line := firstLine(raw)
	switch {
	case c.lenientFlag != "":
		return "their non-default leniency flag " + c.lenientFlag + " (we have one fixed model)"
	case strings.HasPrefix(raw, "PRI * HTTP/") || strings.Contains(line, "RTSP/") || strings.Contains(line, "ICE/"):
		return "not HTTP/1.x (HTTP/2 preface, RTSP or ICE)"
	case regexp.MustCompile(`(?i)HTTP/(0\.9|[02-9]\.\d|1\.[2-9])`).MatchString(line):
		return "HTTP version other than 1.0/1.1"
	case !c.response && !strings.Contains(strings.ToUpper(line), " HTTP/"):
		return "HTTP/0.9-style request line (no version) is not parsed"
	case c.skipBody && !c.response:
		return "their skipBody callback on a request has no counterpart on the wire"
	case !c.response && strings.HasPrefix(raw, "CONNECT "):
		return "a CONNECT request's Content-Length body is read here; they hand the bytes to the tunnel"
	case c.response && len(c.want) > 0 && c.want[0].Status == 101:
		return "101 ends HTTP parsing here: bytes after it belong to the upgraded protocol"
	case c.response && len(c.want) > len(o.msgs) && len(c.want) > 0 && c.want[len(c.want)-1].Status < 200:
		return "interim (1xx) responses are handed on with their final response, which never completed"
	case c.finish && !c.wantErr && len(o.msgs) > len(c.want):
		return "we complete a close-delimited response when the connection ends"
	case c.wantErr && !o.flagged:
		return "lenient on purpose: a sniffer keeps what the peer accepted (oddities become anomalies)"
	case c.wantErr && len(o.msgs) > len(c.want):
		return "we resynchronise after an error and parse later messages; they stop"
	}
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// conformanceReport tallies verdicts and logs the agreement rate.
type conformanceReport struct {
	agree, classified int
	unclassified      []string
	reasons           map[string]int
}

func (r *conformanceReport) add(c conformanceCase, o observed) {
	why := verdict(c, o)
	if why == "" {
		r.agree++
		return
	}
	if reason := classify(c, o); reason != "" {
		r.classified++
		r.reasons[reason]++
		return
	}
	r.unclassified = append(r.unclassified, c.name+": "+why)
}

func (r *conformanceReport) log(t *testing.T, corpusName string) float64 {
	total := r.agree + r.classified + len(r.unclassified)
	rate := float64(r.agree) / float64(total)
	t.Logf("%s: %d cases, %d agree (%.1f%%), %d differ on purpose, %d differ unexplained",
		corpusName, total, r.agree, 100*rate, r.classified, len(r.unclassified))
	keys := make([]string, 0, len(r.reasons))
	for k := range r.reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("  on purpose (%d): %s", r.reasons[k], k)
	}
	for _, u := range r.unclassified {
		t.Logf("  unexplained: %s", u)
	}
	return rate
}

// --- llhttp markdown cases ---

var (
	metaRe    = regexp.MustCompile(`^<!-- meta=(\{.*\}) -->`)
	spanRe    = regexp.MustCompile(`(?s)^off=\d+ len=(\d+) span\[([a-z_]+)\]="(.*)"$`)
	spanEOLRe = regexp.MustCompile(`^off=\d+ len=(\d+) span\[([a-z_]+)\]=(crlf|cr|lf)$`)
	hdrRe     = regexp.MustCompile(`headers complete (?:method=\d+|status=(\d+))`)
	errRe     = regexp.MustCompile(`error code=\d+ reason="(.*)"`)
)

// llhttpInput applies llhttp's markdown input transform: final newline dropped,
// backslash-newline joins lines, LF becomes CRLF, then \r \n \t \f \xHH \NNN.
func llhttpInput(block string) []byte {
	block = strings.TrimSuffix(block, "\n")
	block = strings.ReplaceAll(block, "\\\n", "")
	block = strings.ReplaceAll(block, "\n", "\r\n")
	var out []byte
	for i := 0; i < len(block); i++ {
		c := block[i]
		if c != '\\' || i+1 >= len(block) {
			out = append(out, c)
			continue
		}
		switch n := block[i+1]; {
		case n == 'r':
			out, i = append(out, '\r'), i+1
		case n == 'n':
			out, i = append(out, '\n'), i+1
		case n == 't':
			out, i = append(out, '\t'), i+1
		case n == 'f':
			out, i = append(out, '\f'), i+1
		case n == 'x' && i+3 < len(block):
			v, err := strconv.ParseUint(block[i+2:i+4], 16, 8)
			if err != nil {
				out = append(out, c)
				continue
			}
			out, i = append(out, byte(v)), i+3
		case n >= '0' && n <= '7' && i+3 < len(block):
			v, err := strconv.ParseUint(block[i+1:i+4], 8, 8)
			if err != nil {
				out = append(out, c)
				continue
			}
			out, i = append(out, byte(v)), i+3
		default:
			out = append(out, c)
		}
	}
	return out
}

// logString recovers a span's bytes; the log prints most bytes as is.
func logString(s string, n int) string {
	if len(s) == n {
		return s
	}
	return string(llhttpInput(strings.ReplaceAll(s, `\"`, `"`)))
}

var spanHeadRe = regexp.MustCompile(`^off=\d+ len=(\d+) span\[[a-z_]+\]="`)

func parseLLHTTPLog(lines []string) (want []wantMessage, wantErr bool) {
	var cur *wantMessage
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		// A span holding a raw LF continues on the next log line.
		if m := spanHeadRe.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			for len(l)-len(m[0]) < n+1 && i+1 < len(lines) {
				i++
				l += "\n" + lines[i]
			}
		}
		switch {
		case strings.HasSuffix(l, "message begin"):
			cur = &wantMessage{}
		case cur != nil && strings.HasSuffix(l, "header_field complete"):
			cur.Headers++
		case cur != nil && strings.HasSuffix(l, "message complete"):
			want = append(want, *cur)
			cur = nil
		}
		m := spanRe.FindStringSubmatch(l)
		if m == nil {
			// Spans of bare line-end bytes are logged as cr, lf or crlf.
			if b := spanEOLRe.FindStringSubmatch(l); b != nil {
				m = []string{b[0], b[1], b[2], strings.NewReplacer("cr", "\r", "lf", "\n").Replace(b[3])}
			}
		}
		if m != nil && cur != nil {
			n, _ := strconv.Atoi(m[1])
			v := logString(m[3], n)
			switch m[2] {
			case "method":
				cur.Method += v
			case "url":
				cur.URL += v
			case "body":
				cur.Body += v
			}
		}
		if m := hdrRe.FindStringSubmatch(l); m != nil && cur != nil && m[1] != "" {
			cur.Status, _ = strconv.Atoi(m[1])
		}
		if m := errRe.FindStringSubmatch(l); m != nil && !strings.Contains(strings.ToLower(m[1]), "pause") {
			wantErr = true
		}
	}
	return want, wantErr
}

// loadLLHTTP reads every llhttp markdown case with an http input block.
func loadLLHTTP(t *testing.T, dir string) (cases []conformanceCase, skipped map[string]int) {
	skipped = map[string]int{}
	var files []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	}))
	sort.Strings(files)
	require.NotEmpty(t, files)
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		rel, _ := filepath.Rel(dir, file)
		var title string
		var meta map[string]any
		var block, logLines []string
		inBlock := ""
		flush := func() {
			defer func() { meta, block, logLines = nil, nil, nil }()
			if block == nil || meta == nil {
				return
			}
			typ, _ := meta["type"].(string)
			if typ == "" {
				typ = "request"
			}
			raw := strings.Join(block, "\n") + "\n"
			if strings.Contains(raw, "${") {
				skipped["input needs JavaScript evaluation"]++
				return
			}
			want, wantErr := parseLLHTTPLog(logLines)
			c := conformanceCase{
				name:     rel + " / " + title,
				response: strings.HasPrefix(typ, "response"),
				finish:   strings.HasSuffix(typ, "-finish"),
				raw:      llhttpInput(raw),
				want:     want,
				wantErr:  wantErr,
			}
			c.skipBody, _ = meta["skipBody"].(bool)
			if i := strings.Index(typ, "-lenient-"); i >= 0 {
				c.lenientFlag = typ[i+1:]
			}
			cases = append(cases, c)
		}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case inBlock != "":
				if l == "```" {
					inBlock = ""
					continue
				}
				if inBlock == "http" {
					block = append(block, l)
				} else if inBlock == "log" {
					logLines = append(logLines, l)
				}
			case strings.HasPrefix(l, "```"):
				inBlock = strings.TrimPrefix(l, "```")
				if inBlock == "" {
					inBlock = "other"
				}
				if inBlock == "http" {
					block = []string{}
				}
				if inBlock == "log" {
					logLines = []string{}
				}
			case strings.HasPrefix(l, "#"):
				flush()
				title = strings.TrimSpace(strings.TrimLeft(l, "#"))
			default:
				if m := metaRe.FindStringSubmatch(l); m != nil {
					flush()
					meta = map[string]any{}
					require.NoError(t, json.Unmarshal([]byte(m[1]), &meta), "%s: %s", rel, l)
				}
			}
		}
		flush()
	}
	return cases, skipped
}

func TestConformanceLLHTTP(t *testing.T) {
	dir := corpus.Dir(t, "llhttp")
	cases, skipped := loadLLHTTP(t, dir)
	require.Greater(t, len(cases), 200)
	for why, n := range skipped {
		t.Logf("not run (%d): %s", n, why)
	}
	rep := conformanceReport{reasons: map[string]int{}}
	for _, c := range cases {
		rep.add(c, runConformanceCase(c))
	}
	rate := rep.log(t, "llhttp")
	assert.LessOrEqual(t, len(rep.unclassified), 2, "differences need a reason")
	assert.GreaterOrEqual(t, rate, llhttpAgreementFloor, "agreement with llhttp regressed")
}

// --- http-parser test.c messages ---

type httpParserMessage struct {
	Name                 string     `json:"name"`
	Type                 string     `json:"type"`
	Raw                  string     `json:"raw"`
	Method               string     `json:"method"`
	RequestURL           string     `json:"request_url"`
	StatusCode           int        `json:"status_code"`
	NumHeaders           int        `json:"num_headers"`
	Headers              [][]string `json:"headers"`
	Body                 string     `json:"body"`
	HTTPMajor            int        `json:"http_major"`
	HTTPMinor            int        `json:"http_minor"`
	MessageCompleteOnEOF int        `json:"message_complete_on_eof"`
	Upgrade              *string    `json:"upgrade"`
	AllowChunkedLength   int        `json:"allow_chunked_length"`
}

// latin1 turns a JSON string whose runes are bytes back into those bytes.
func latin1(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 256 {
			out = append(out, byte(r))
		} else {
			out = append(out, string(r)...)
		}
	}
	return out
}

func TestConformanceHTTPParser(t *testing.T) {
	dir := corpus.Dir(t, "http-parser")
	data, err := os.ReadFile(filepath.Join(dir, "DERIVED-test.c-messages.json"))
	require.NoError(t, err)
	var tables struct {
		Requests  []httpParserMessage `json:"requests"`
		Responses []httpParserMessage `json:"responses"`
	}
	require.NoError(t, json.Unmarshal(data, &tables))
	require.NotEmpty(t, tables.Requests)
	require.NotEmpty(t, tables.Responses)

	rep := conformanceReport{reasons: map[string]int{}}
	for _, m := range append(tables.Requests, tables.Responses...) {
		raw := latin1(m.Raw)
		if m.Upgrade != nil {
			// Bytes after an upgrade are another protocol; compare the HTTP part.
			raw = raw[:len(raw)-len(latin1(*m.Upgrade))]
		}
		c := conformanceCase{
			name:     m.Type + " / " + m.Name,
			response: m.Type == "response",
			finish:   m.MessageCompleteOnEOF == 1,
			raw:      raw,
			want: []wantMessage{{
				Method: m.Method, URL: m.RequestURL, Status: m.StatusCode,
				Headers: m.NumHeaders, Body: string(latin1(m.Body)),
			}},
		}
		if c.response {
			c.want[0].Method, c.want[0].URL = "", ""
		} else {
			c.want[0].Status = 0
		}
		if m.AllowChunkedLength == 1 {
			c.lenientFlag = "allow_chunked_length"
		}
		if m.HTTPMajor != 1 {
			c.lenientFlag = fmt.Sprintf("HTTP/%d.%d", m.HTTPMajor, m.HTTPMinor)
		}
		rep.add(c, runConformanceCase(c))
	}
	rate := rep.log(t, "http-parser")
	assert.LessOrEqual(t, len(rep.unclassified), 2, "differences need a reason")
	assert.GreaterOrEqual(t, rate, httpParserAgreementFloor, "agreement with http-parser regressed")
}

// Floors: the measured rates (CONFORMANCE.md) minus a little slack.
const (
	llhttpAgreementFloor     = 0.68 // measured 176/251 = 70.1%
	httpParserAgreementFloor = 0.90 // measured 68/74 = 91.9%
)
