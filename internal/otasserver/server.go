// Package otasserver is an in-process OTAS backend for tests: it serves uasam's key
// authentication and brain's event ingestion (single events and the sniffer's batch
// endpoint) over real HTTP on loopback, enforces the wire contract (headers, key,
// agent session token, required fields and their types, status codes and bodies),
// records what it stored, and injects faults on demand: answers 500 for a while,
// answers slowly, resets connections, rate-limits with Retry-After, is down, rejects
// the key, or has no batch endpoint.
package otasserver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/otas/otas-sniff/internal/sizedread"
)

// Endpoint paths, as in the contract.
const (
	AuthPath  = "/api/project/v1/sdk/backend/key/authenticate/"
	EventPath = "/api/v1/backend/log/sdk/"
	BatchPath = "/api/v1/backend/log/sdk/batch/"
)

// Project is what a key authenticates to.
type Project struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Stored is one event the server accepted.
type Stored struct {
	// Token is the agent session token it came with.
	Token string
	// Raw is the event body as received (for a batch, the element).
	Raw json.RawMessage
	// ID is metadata.event_id, ProjectID project_id.
	ID, ProjectID string
	// Batch is true when it came through the batch endpoint.
	Batch bool
}

// EventID returns metadata.event_id, or "".
func (s Stored) EventID() string { return s.ID }

// Event decodes the stored body.
func (s Stored) Event() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(s.Raw, &m)
	return m
}

// Faults are the failures the server injects; change them with Server.SetFaults or
// Server.UpdateFaults at any time.
type Faults struct {
	// Down resets every new connection at once, like a backend that is not there.
	Down bool
	// DownUntil keeps the server down until this time.
	DownUntil time.Time
	// Fail500Until makes ingestion answer 500 event_capture_failed until this time.
	Fail500Until time.Time
	// Delay slows every answer.
	Delay time.Duration
	// ResetNext resets the next n ingestion requests after reading them.
	ResetNext int
	// RateLimitNext answers the next n ingestion requests 429 with RetryAfter.
	RateLimitNext int
	RetryAfter    string
	// RejectKey makes uasam answer 403 Invalid SDK Key and brain 401 invalid_sdk_key.
	RejectKey bool
	// BrainKeyFailNext makes brain answer 401 invalid_sdk_key for the next n
	// requests while uasam still accepts the key (brain could not reach uasam).
	BrainKeyFailNext int
	// AuthFail500 makes uasam answer 500.
	AuthFail500 bool
	// NoBatch answers 404 on the batch endpoint, like the real backend today.
	NoBatch bool
	// PoisonPath makes events with this path fail with 500 event_capture_failed,
	// like an event whose field has the wrong type.
	PoisonPath string
	// MaxBatchBytes answers 413 to batch bodies (decompressed) larger than this.
	MaxBatchBytes int
}

// Counts are what the server saw.
type Counts struct {
	AuthRequests  int64
	EventRequests int64
	BatchRequests int64
	// BodyBytes is request body bytes as received (compressed or not).
	BodyBytes int64
	Resets    int64
	Stored    int64
}

// Server is the in-process backend. Both services share one listener: use URL as
// both the auth and the ingest base URL.
type Server struct {
	URL     string
	srv     *httptest.Server
	secret  []byte
	project Project

	tls    bool
	tokens sync.Map // verified token -> exp

	mu     sync.Mutex
	keys   map[string]bool
	faults Faults
	stored []Stored
	hook   func(Stored)
	counts Counts
}

// Option configures a new Server.
type Option func(*Server)

// WithTLS serves HTTPS with httptest's self-signed certificate.
func WithTLS() Option { return func(s *Server) { s.srv.TLS = nil; s.tls = true } }

// New starts a server that accepts key and serves project.
func New(key string, project Project, opts ...Option) *Server {
	s := &Server{
		secret:  []byte("otasserver-test-secret"),
		project: project,
		keys:    map[string]bool{key: true},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Refused handshakes are what the TLS tests are about; keep them quiet.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	for _, o := range opts {
		o(s)
	}
	s.srv.Listener = &faultListener{Listener: s.srv.Listener, s: s}
	if s.tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL + "/"
	return s
}

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Certificate returns the PEM of the server's TLS certificate (WithTLS only).
func (s *Server) CertificatePEM() []byte {
	c := s.srv.Certificate()
	if c == nil {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	enc := base64.StdEncoding.EncodeToString(c.Raw)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n-----END CERTIFICATE-----\n")
	return b.Bytes()
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// UpdateFaults changes the injected faults under the server's lock.
func (s *Server) UpdateFaults(fn func(*Faults)) {
	s.mu.Lock()
	fn(&s.faults)
	s.mu.Unlock()
}

// OnStore calls fn (under no lock) for every event stored from now on.
func (s *Server) OnStore(fn func(Stored)) {
	s.mu.Lock()
	s.hook = fn
	s.mu.Unlock()
}

// Stored returns a copy of every accepted event.
func (s *Server) Stored() []Stored {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Stored(nil), s.stored...)
}

// Counts returns what the server saw so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Reset forgets stored events and counts.
func (s *Server) Reset() {
	s.mu.Lock()
	s.stored = nil
	s.counts = Counts{}
	s.mu.Unlock()
}

// Token returns a valid agent session token (an HS256 JWT) for agent.
func (s *Server) Token(agent string) string {
	return s.sign(agent, time.Now().Add(time.Hour))
}

// ExpiredToken returns a token whose exp has passed.
func (s *Server) ExpiredToken(agent string) string {
	return s.sign(agent, time.Now().Add(-time.Hour))
}

func (s *Server) sign(agent string, exp time.Time) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"agent_id": agent, "agent_session_id": agent + "-session", "exp": exp.Unix()})
	body := head + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(body))
	return body + "." + enc.EncodeToString(mac.Sum(nil))
}

// tokenOK verifies a session token's signature and expiry, remembering verified
// tokens so a batch of one session pays for one check.
func (s *Server) tokenOK(tok string) bool {
	if exp, ok := s.tokens.Load(tok); ok {
		return time.Now().Unix() < exp.(int64)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	mac := hmac.New(sha256.New, s.secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return false
	}
	s.tokens.Store(tok, c.Exp)
	return time.Now().Unix() < c.Exp
}

// keyStatus checks a key as uasam does: "" when good, else the 4xx error text.
func (s *Server) keyStatus(key string) (int, string) {
	if key == "" {
		return http.StatusUnauthorized, "SDK Key missing"
	}
	if parts := strings.SplitN(key, "_", 3); len(parts) != 3 || parts[0] != "otas" || parts[1] == "" || parts[2] == "" {
		return http.StatusForbidden, "Invalid Key Format"
	}
	if s.faults.RejectKey || !s.keys[key] {
		return http.StatusForbidden, "Invalid SDK Key"
	}
	return 0, ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) down() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.Down || time.Now().Before(s.faults.DownUntil)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.down() {
		// Connections kept alive from before the outage fail too.
		s.mu.Lock()
		s.counts.Resets++
		s.mu.Unlock()
		resetRequest(w)
		return
	}
	s.mu.Lock()
	delay := s.faults.Delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch r.URL.Path {
	case AuthPath:
		s.serveAuth(w, r)
	case EventPath:
		s.serveEvent(w, r)
	case BatchPath:
		s.serveBatch(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) serveAuth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.AuthRequests++
	fail := s.faults.AuthFail500
	code, msg := s.keyStatus(r.Header.Get("X-OTAS-SDK-KEY"))
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	if fail {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "database unavailable"})
		return
	}
	if code != 0 {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": 1, "status_description": "authenticated",
		"response": map[string]any{"project": s.project},
	})
}

// ingestFault applies the faults common to both ingestion endpoints; it reports
// whether it answered.
func (s *Server) ingestFault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f := &s.faults
	var reset, limited bool
	var retryAfter string
	switch {
	case f.ResetNext > 0:
		f.ResetNext--
		reset = true
		s.counts.Resets++
	case f.RateLimitNext > 0:
		f.RateLimitNext--
		limited, retryAfter = true, f.RetryAfter
	}
	fail := time.Now().Before(f.Fail500Until)
	s.mu.Unlock()
	switch {
	case reset:
		_, _ = io.Copy(io.Discard, r.Body)
		resetRequest(w)
		return true
	case limited:
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"status": 0, "status_description": "rate_limited"})
		return true
	case fail:
		writeJSON(w, http.StatusInternalServerError, map[string]any{"status": 0, "status_description": "event_capture_failed"})
		return true
	}
	return false
}

// resetRequest drops the connection with a TCP reset.
func resetRequest(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := underlyingTCP(conn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func underlyingTCP(c net.Conn) (*net.TCPConn, bool) {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, true
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil, false
		}
	}
}

// brainKey is brain's key check: "" when the key is good, else the status
// description of the 401.
func (s *Server) brainKey(r *http.Request) string {
	key := r.Header.Get("X-OTAS-SDK-KEY")
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == "" {
		return "missing_sdk_key"
	}
	if s.faults.BrainKeyFailNext > 0 {
		s.faults.BrainKeyFailNext--
		return "invalid_sdk_key"
	}
	if code, _ := s.keyStatus(key); code != 0 {
		return "invalid_sdk_key"
	}
	return ""
}

func readBody(r *http.Request) ([]byte, int64, error) {
	raw, err := sizedread.ReadAll(r.Body, r.ContentLength)
	if err != nil {
		return nil, 0, err
	}
	n := int64(len(raw))
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, n, err
		}
		// The gzip trailer's ISIZE is the decoded size (mod 2^32): a hint only.
		size := int64(-1)
		if len(raw) >= 18 {
			size = int64(binary.LittleEndian.Uint32(raw[len(raw)-4:]))
		}
		raw, err = sizedread.ReadAll(zr, size)
		if err != nil {
			return nil, n, err
		}
	}
	return raw, n, nil
}

func (s *Server) serveEvent(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.EventRequests++
	s.mu.Unlock()
	if s.ingestFault(w, r) {
		return
	}
	body, n, err := readBody(r)
	s.mu.Lock()
	s.counts.BodyBytes += n
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 0, "status_description": "invalid_json"})
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"status": 0, "status_description": "method_not_allowed"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 0, "status_description": "invalid_json"})
		return
	}
	if d := s.brainKey(r); d != "" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 0, "status_description": d})
		return
	}
	tok := r.Header.Get("X-OTAS-AGENT-SESSION-TOKEN")
	ev := eventText{raw: bytes.TrimSpace(body), err: errors.New("invalid JSON")}
	if json.Valid(ev.raw) {
		ev.members, ev.err = splitObject(ev.raw)
	}
	code, res := s.accept(ev, tok, false)
	if code == http.StatusInternalServerError && res.Description == "html" {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		_, _ = io.WriteString(w, "<html><body><h1>Server Error (500)</h1></body></html>")
		return
	}
	out := map[string]any{"status": res.Status, "status_description": res.Description}
	if len(res.MissingFields) > 0 {
		out["missing_fields"] = res.MissingFields
	}
	writeJSON(w, code, out)
}

// Result is one entry of a batch answer.
type Result struct {
	Index         int      `json:"index"`
	Status        int      `json:"status"`
	Description   string   `json:"status_description,omitempty"`
	HTTPStatus    int      `json:"http_status,omitempty"`
	MissingFields []string `json:"missing_fields,omitempty"`
}

func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.BatchRequests++
	noBatch, maxBytes := s.faults.NoBatch, s.faults.MaxBatchBytes
	s.mu.Unlock()
	if noBatch {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"status": 0, "status_description": "method_not_allowed"})
		return
	}
	if s.ingestFault(w, r) {
		return
	}
	body, n, err := readBody(r)
	s.mu.Lock()
	s.counts.BodyBytes += n
	s.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 0, "status_description": "invalid_json"})
		return
	}
	if d := s.brainKey(r); d != "" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 0, "status_description": d})
		return
	}
	if maxBytes > 0 && len(body) > maxBytes {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"status": 0, "status_description": "batch_too_large"})
		return
	}
	events, err := batchEvents(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 0, "status_description": "invalid_json"})
		return
	}
	results := make([]Result, len(events))
	failed := false
	for i, ev := range events {
		code, res := s.accept(ev, "", true)
		res.Index = i
		if code >= 300 {
			res.HTTPStatus = code
			if res.Description == "html" {
				res.Description = "event_capture_failed"
			}
			failed = true
		}
		results[i] = res
	}
	code := http.StatusOK
	if failed {
		code = http.StatusMultiStatus
	}
	writeJSON(w, code, map[string]any{"status": 1, "results": results})
}

// fieldKinds are the contract's field types: s string, i integer, f number, o object.
var fieldKinds = map[string]byte{
	"project_id": 's', "path": 's', "method": 's', "status_code": 'i', "latency_ms": 'f',
	"request_size_bytes": 'i', "response_size_bytes": 'i', "request_headers": 's',
	"request_body": 's', "query_params": 's', "post_data": 's', "response_headers": 's',
	"response_body": 's', "request_content_type": 's', "response_content_type": 's',
	"custom_properties": 'o', "error": 's', "metadata": 'o', "agent_session_token": 's',
}

var required = []string{"project_id", "path", "method", "status_code", "latency_ms"}

// batchEvents returns the raw events of a batch body {"events":[...]}.
func batchEvents(body []byte) ([]eventText, error) {
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	// The members of {"events":[...]}, splitting the array in the same pass.
	var events []eventText
	_, err := walkMembers(body, skipSpace(body, 0), func(name string, at int) (int, error) {
		if name != "events" {
			return skipValue(body, at), nil
		}
		var end int
		var err error
		events, end, err = splitEventsAt(body, at)
		return end, err
	})
	if err != nil {
		return nil, err
	}
	if events == nil {
		return nil, errors.New("no events array")
	}
	return events, nil
}

// accept validates one event as brain does and stores it. A batch element
// carries its token in the agent_session_token field.
func (s *Server) accept(ev eventText, token string, batch bool) (int, Result) {
	if bytes.Equal(ev.raw, []byte("null")) {
		return http.StatusInternalServerError, Result{Description: "html"}
	}
	if ev.err != nil {
		return http.StatusBadRequest, Result{Description: "invalid_json"}
	}
	members, trimmed := ev.members, ev.raw
	// field is the raw value of a member; a later duplicate wins, as it does
	// for encoding/json decoding into a map.
	field := func(name string) ([]byte, bool) {
		for i := len(members) - 1; i >= 0; i-- {
			if members[i].name == name {
				return members[i].raw, true
			}
		}
		return nil, false
	}
	if batch {
		token = ""
		if raw, ok := field("agent_session_token"); ok {
			token, _ = unquote(raw)
		}
	}
	if token == "" {
		return http.StatusUnauthorized, Result{Description: "missing_agent_session_token"}
	}
	if !s.tokenOK(token) {
		return http.StatusUnauthorized, Result{Description: "invalid_or_expired_token"}
	}
	var missing []string
	for _, f := range required {
		if _, ok := field(f); !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return http.StatusBadRequest, Result{Description: "missing_required_fields", MissingFields: missing}
	}
	for _, m := range members {
		if k, ok := fieldKinds[m.name]; ok && !kindOK(k, m.raw) {
			// The real backend fails deep inside with a 500 on a wrong type.
			return http.StatusInternalServerError, Result{Description: "event_capture_failed"}
		}
	}
	// Raw shares the request body's buffer, which is never reused.
	st := Stored{Token: token, Raw: trimmed, Batch: batch}
	pid, _ := field("project_id")
	st.ProjectID, _ = unquote(pid)
	rawPath, _ := field("path")
	path, _ := unquote(rawPath)
	if raw, ok := field("metadata"); ok {
		if id, ok := memberValue(raw, "event_id"); ok {
			st.ID, _ = unquote(id)
		}
	}
	s.mu.Lock()
	if p := s.faults.PoisonPath; p != "" && path == p {
		s.mu.Unlock()
		return http.StatusInternalServerError, Result{Description: "event_capture_failed"}
	}
	s.stored = append(s.stored, st)
	s.counts.Stored++
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(st)
	}
	return http.StatusCreated, Result{Status: 1, Description: "event_captured"}
}

func kindOK(k byte, raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	switch k {
	case 's':
		return raw[0] == '"'
	case 'o':
		return raw[0] == '{'
	case 'i':
		_, err := strconv.ParseInt(string(raw), 10, 64)
		return err == nil
	case 'f':
		_, err := strconv.ParseFloat(string(raw), 64)
		return err == nil
	}
	return false
}

// faultListener resets connections while the server is down.
type faultListener struct {
	net.Listener
	s *Server
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.s.down() {
			return c, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		l.s.mu.Lock()
		l.s.counts.Resets++
		l.s.mu.Unlock()
	}
}

// ErrNotStored is returned by WaitStored when the events did not all arrive.
var ErrNotStored = errors.New("otasserver: events not stored in time")

// WaitStored waits until at least n events are stored or timeout passes.
func (s *Server) WaitStored(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		got := len(s.stored)
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d", ErrNotStored, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
