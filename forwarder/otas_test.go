package forwarder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/otasserver"
)

const testKey = "otas_PocKPi56xDI_9f8e7d6c5b4a39281706f5e4d3c2b1a0"

// outageTime is how long the backend stays down in the outage scenarios.
const outageTime = 3 * time.Second

var testProject = otasserver.Project{ID: "6118d2b5-34f7-4ba3-a70c-2b09f9051b71", Name: "Git Bash Project", Description: "test"}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is one server, a log capture and the secrets that must never show.
type harness struct {
	t       *testing.T
	srv     *otasserver.Server
	logs    *syncBuffer
	secrets []string
	errs    []error
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, srv: otasserver.New(testKey, testProject), logs: &syncBuffer{}, secrets: []string{testKey}}
	t.Cleanup(func() {
		h.srv.Close()
		h.assertNoSecrets()
	})
	return h
}

func (h *harness) assertNoSecrets() {
	h.t.Helper()
	text := h.logs.String()
	for _, e := range h.errs {
		if e != nil {
			text += "\n" + e.Error()
		}
	}
	for _, sec := range h.secrets {
		assert.NotContains(h.t, text, sec, "a secret reached a log line or an error")
	}
}

// note keeps an error for the secret check.
func (h *harness) note(err error) error {
	h.errs = append(h.errs, err)
	return err
}

func (h *harness) token(agent string) string {
	tok := h.srv.Token(agent)
	h.secrets = append(h.secrets, tok)
	return tok
}

func (h *harness) config() OTASConfig {
	return OTASConfig{
		AuthURL: h.srv.URL, IngestURL: h.srv.URL, SDKKey: testKey,
		FlushInterval: 20 * time.Millisecond, RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		AuthTimeout: 2 * time.Second, DrainTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (h *harness) sink(cfg OTASConfig) *OTASSink {
	h.t.Helper()
	s, err := NewOTASSink(context.Background(), cfg)
	require.NoError(h.t, h.note(err))
	return s
}

func testEvent(i int, token string) *Event {
	return &Event{
		Path: fmt.Sprintf("/api/items/%d", i), Method: "GET", StatusCode: 200, LatencyMS: 1.5,
		RequestHeaders: `{"Host":"api.test"}`, ResponseHeaders: `{"Content-Type":"application/json"}`,
		ResponseBody: `{"id":1,"name":"x"}`, QueryParams: "{}", PostData: "{}",
		CustomProperties: map[string]any{}, SessionToken: token,
		Metadata: Metadata{EventID: fmt.Sprintf("ev-%06d", i), Client: "10.0.0.1:4000", Server: "10.0.0.2:8000"},
	}
}

// writeN writes n events with the token and returns their ids.
func writeN(t *testing.T, s *OTASSink, from, n int, token string) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := from; i < from+n; i++ {
		ev := testEvent(i, token)
		require.NoError(t, s.Write(context.Background(), ev))
		ids = append(ids, ev.Metadata.EventID)
	}
	return ids
}

// assertAllStored checks every id arrived at least once with project and token.
func assertAllStored(t *testing.T, srv *otasserver.Server, ids []string, token string) {
	t.Helper()
	got := map[string]int{}
	for _, st := range srv.Stored() {
		got[st.EventID()]++
		assert.Equal(t, testProject.ID, st.ProjectID)
		if token != "" {
			assert.Equal(t, token, st.Token)
		}
	}
	missing := 0
	for _, id := range ids {
		if got[id] == 0 {
			missing++
		}
	}
	assert.Zero(t, missing, "events lost: %d of %d", missing, len(ids))
}

func TestLoadSDKKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(good, []byte(testKey+"\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == SDKKeyEnv {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		env     string
		file    string
		want    string
		wantErr string
	}{
		{name: "from env", env: testKey, want: testKey},
		{name: "from file wins", env: "otas_other_key", file: good, want: testKey},
		{name: "missing", wantErr: "export OTAS_SDK_KEY='otas_...'"},
		{name: "malformed", env: "not-a-key-at-all", wantErr: "otas_<prefix>_<secret>"},
		{name: "two parts", env: "otas_onlyprefix", wantErr: "malformed"},
		{name: "wrong scheme", env: "sk_abc_def", wantErr: "malformed"},
		{name: "empty file", file: empty, wantErr: "is empty"},
		{name: "no file", file: filepath.Join(dir, "nope"), wantErr: "read --sdk-key-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSDKKey(env(tt.env), tt.file)
			if tt.wantErr != "" {
				require.Error(t, err)
				var ce *OTASConfigError
				require.ErrorAs(t, err, &ce)
				assert.Contains(t, err.Error(), tt.wantErr)
				if tt.env != "" {
					assert.NotContains(t, err.Error(), tt.env, "the key is never echoed")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestConfigStringMasksKey(t *testing.T) {
	cfg := OTASConfig{SDKKey: testKey, AuthURL: "https://a/"}
	assert.NotContains(t, cfg.String(), testKey)
	assert.NotContains(t, fmt.Sprintf("%v %+v", cfg, cfg.LogValue()), testKey)
	var b bytes.Buffer
	slog.New(slog.NewJSONHandler(&b, nil)).Info("cfg", "config", cfg)
	assert.NotContains(t, b.String(), testKey)
}

func TestAuthenticate(t *testing.T) {
	h := newHarness(t)
	cfg := h.config()

	p, err := Authenticate(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, testProject.ID, p.ID)
	assert.Equal(t, testProject.Name, p.Name)

	t.Run("capitalised keys", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, `{"Status":1,"status_description":"authenticated","Response":{"project":{"id":"p-1","name":"N"}}}`)
		}))
		defer srv.Close()
		c := cfg
		c.AuthURL = srv.URL
		p, err := Authenticate(context.Background(), c)
		require.NoError(t, err)
		assert.Equal(t, "p-1", p.ID)
	})

	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	tests := []struct {
		name     string
		mutate   func(*OTASConfig)
		faults   otasserver.Faults
		status   int
		rejected bool
		wantErr  string
	}{
		{name: "unknown key", mutate: func(c *OTASConfig) { c.SDKKey = "otas_PocKPi56xDI_wrongsecret" }, status: 403, rejected: true, wantErr: "Invalid SDK Key"},
		{name: "revoked key", faults: otasserver.Faults{RejectKey: true}, status: 403, rejected: true, wantErr: "rejected"},
		{name: "server fault", faults: otasserver.Faults{AuthFail500: true}, status: 500, wantErr: "HTTP 500"},
		{name: "unreachable", mutate: func(c *OTASConfig) { c.AuthURL = downURL }, wantErr: "unreachable"},
		{name: "down", faults: otasserver.Faults{Down: true}, wantErr: "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.srv.SetFaults(tt.faults)
			defer h.srv.SetFaults(otasserver.Faults{})
			c := cfg
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			_, err := Authenticate(context.Background(), c)
			h.note(err)
			var ae *OTASAuthError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tt.status, ae.Status)
			assert.Equal(t, tt.rejected, ae.Rejected())
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.NotContains(t, err.Error(), c.SDKKey)
		})
	}
}

func TestURLPolicy(t *testing.T) {
	tests := []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"http://localhost:8000/", false, true},
		{"http://127.0.0.1:8000/", false, true},
		{"http://[::1]:8000/", false, true},
		{"https://otas.example.com/", false, true},
		{"http://otas.example.com/", false, false},
		{"http://10.1.2.3:8000/", false, false},
		{"http://otas.example.com/", true, true},
		{"ftp://otas.example.com/", true, false},
		{"otas.example.com", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := checkBaseURL("auth", tt.url, tt.insecure)
			if tt.ok {
				assert.NoError(t, err)
				return
			}
			var ce *OTASConfigError
			assert.ErrorAs(t, err, &ce)
		})
	}
}

func TestHTTPSWithCAFile(t *testing.T) {
	srv := otasserver.New(testKey, testProject, otasserver.WithTLS())
	defer srv.Close()
	cfg := OTASConfig{AuthURL: srv.URL, IngestURL: srv.URL, SDKKey: testKey}

	_, err := Authenticate(context.Background(), cfg)
	var ae *OTASAuthError
	require.ErrorAs(t, err, &ae, "an unknown CA is refused")
	assert.Contains(t, err.Error(), "certificate")

	cfg.Insecure = true
	_, err = Authenticate(context.Background(), cfg)
	require.Error(t, err, "--insecure never turns off certificate checks")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, srv.CertificatePEM(), 0o600))
	cfg.CAFile = ca
	p, err := Authenticate(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, testProject.ID, p.ID)
}

func TestUploadBatches(t *testing.T) {
	for _, gz := range []bool{true, false} {
		t.Run(fmt.Sprintf("gzip=%t", gz), func(t *testing.T) {
			h := newHarness(t)
			cfg := h.config()
			cfg.DisableGzip = !gz
			s := h.sink(cfg)
			tok := h.token("agent-1")
			ids := writeN(t, s, 0, 250, tok)
			require.NoError(t, h.note(s.Close(context.Background())))
			assertAllStored(t, h.srv, ids, tok)
			st := s.Stats()
			assert.EqualValues(t, 250, st.Uploaded)
			assert.Zero(t, st.DroppedTotal())
			assert.False(t, st.PerEventMode)
			assert.LessOrEqual(t, st.BatchRequests, uint64(4), "250 events in batches of 100")
			assert.Zero(t, st.EventRequests)
			assert.Positive(t, st.WireBytes)
			assert.Zero(t, st.QueueWait, "250 events fit the queue: Write never waited")
			for _, e := range h.srv.Stored() {
				assert.True(t, e.Batch)
				ev := e.Event()
				assert.Equal(t, "GET", ev["method"])
				assert.NotEmpty(t, ev["metadata"].(map[string]any)["event_id"])
			}
		})
	}
}

func TestUntokenedEvents(t *testing.T) {
	h := newHarness(t)
	s := h.sink(h.config())
	writeN(t, s, 0, 5, "")
	require.NoError(t, s.Close(context.Background()))
	assert.EqualValues(t, 5, s.Stats().SkippedUntokened)
	assert.Empty(t, h.srv.Stored())
	assert.Zero(t, s.Stats().BatchRequests)

	cfg := h.config()
	cfg.IncludeUntokened = true
	s = h.sink(cfg)
	writeN(t, s, 0, 5, "")
	require.NoError(t, s.Close(context.Background()))
	st := s.Stats()
	assert.Zero(t, st.SkippedUntokened)
	assert.EqualValues(t, 5, st.Dropped[DropMissingToken], "the backend refuses them; counted")
}

func TestNoBatchEndpointFallsBack(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(otasserver.Faults{NoBatch: true})
	s := h.sink(h.config())
	tok := h.token("agent-1")
	ids := writeN(t, s, 0, 150, tok)
	require.NoError(t, s.Close(context.Background()))
	assertAllStored(t, h.srv, ids, tok)
	st := s.Stats()
	assert.True(t, st.PerEventMode)
	assert.EqualValues(t, 150, st.EventRequests)
	assert.LessOrEqual(t, st.BatchRequests, uint64(DefaultWorkers), "the batch endpoint is tried once per worker at most")
	assert.Equal(t, 1, strings.Count(h.logs.String(), "no batch endpoint"), "said once")
}

func TestTokenProblemsDropAndCount(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("noBatch=%t", noBatch), func(t *testing.T) {
			h := newHarness(t)
			h.srv.SetFaults(otasserver.Faults{NoBatch: noBatch})
			cfg := h.config()
			cfg.IncludeUntokened = true
			s := h.sink(cfg)
			good := h.token("agent-1")
			expired := h.srv.ExpiredToken("agent-2")
			h.secrets = append(h.secrets, expired)
			ids := writeN(t, s, 0, 10, good)
			writeN(t, s, 100, 3, expired)
			writeN(t, s, 200, 2, "")
			writeN(t, s, 300, 1, "not-a-jwt")
			require.NoError(t, s.Close(context.Background()))
			assertAllStored(t, h.srv, ids, good)
			st := s.Stats()
			assert.EqualValues(t, 10, st.Uploaded)
			assert.EqualValues(t, 4, st.Dropped[DropInvalidToken])
			assert.EqualValues(t, 2, st.Dropped[DropMissingToken])
		})
	}
}

func TestPoisonEventNeverBlocks(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("noBatch=%t", noBatch), func(t *testing.T) {
			h := newHarness(t)
			h.srv.SetFaults(otasserver.Faults{NoBatch: noBatch, PoisonPath: "/api/items/7"})
			cfg := h.config()
			cfg.MaxServerErrors = 3
			s := h.sink(cfg)
			tok := h.token("agent-1")
			var ids []string
			for i := range 60 {
				ids = append(ids, writeN(t, s, i, 1, tok)...)
				time.Sleep(2 * time.Millisecond)
			}
			require.NoError(t, s.Close(context.Background()))
			st := s.Stats()
			assert.EqualValues(t, 1, st.Dropped[DropServerError])
			assert.EqualValues(t, 59, st.Uploaded)
			var rest []string
			for _, id := range ids {
				if id != "ev-000007" {
					rest = append(rest, id)
				}
			}
			assertAllStored(t, h.srv, rest, tok)
		})
	}
}

func TestTransientFaultsLoseNothing(t *testing.T) {
	tests := []struct {
		name    string
		faults  func() otasserver.Faults
		noBatch bool
		minTime time.Duration
	}{
		{name: "500 for a while", faults: func() otasserver.Faults {
			return otasserver.Faults{Fail500Until: time.Now().Add(400 * time.Millisecond)}
		}},
		{name: "500 for a while per event", noBatch: true, faults: func() otasserver.Faults {
			return otasserver.Faults{NoBatch: true, Fail500Until: time.Now().Add(400 * time.Millisecond)}
		}},
		{name: "connection resets", faults: func() otasserver.Faults { return otasserver.Faults{ResetNext: 3} }},
		{name: "429 retry-after seconds", minTime: time.Second, faults: func() otasserver.Faults {
			return otasserver.Faults{RateLimitNext: 1, RetryAfter: "1"}
		}},
		{name: "429 retry-after date", minTime: 500 * time.Millisecond, faults: func() otasserver.Faults {
			return otasserver.Faults{RateLimitNext: 1, RetryAfter: time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}
		}},
		{name: "slow answers", faults: func() otasserver.Faults { return otasserver.Faults{Delay: 150 * time.Millisecond} }},
		{name: "brain cannot reach uasam", faults: func() otasserver.Faults { return otasserver.Faults{BrainKeyFailNext: 2} }},
		{name: "down for a while", faults: func() otasserver.Faults {
			return otasserver.Faults{DownUntil: time.Now().Add(500 * time.Millisecond)}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			s := h.sink(h.config())
			h.srv.SetFaults(tt.faults())
			tok := h.token("agent-1")
			start := time.Now()
			ids := writeN(t, s, 0, 120, tok)
			require.NoError(t, h.note(s.Close(context.Background())))
			assertAllStored(t, h.srv, ids, tok)
			st := s.Stats()
			assert.Zero(t, st.DroppedTotal(), "%v", st.Dropped)
			assert.False(t, st.KeyRejected)
			assert.GreaterOrEqual(t, time.Since(start), tt.minTime, "Retry-After honoured")
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"-3", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"86400", 10 * time.Minute},
		{"soon", 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, parseRetryAfter(tt.in, now), tt.in)
	}
}

func TestBatchTooLargeSplits(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(otasserver.Faults{MaxBatchBytes: 8 << 10})
	s := h.sink(h.config())
	tok := h.token("agent-1")
	ids := writeN(t, s, 0, 100, tok)
	big := testEvent(999, tok)
	big.ResponseBody = strings.Repeat("x", 20<<10)
	require.NoError(t, s.Write(context.Background(), big))
	require.NoError(t, s.Close(context.Background()))
	assertAllStored(t, h.srv, ids, tok)
	st := s.Stats()
	assert.EqualValues(t, 100, st.Uploaded)
	assert.EqualValues(t, 1, st.Dropped[DropTooLarge])
	assert.Greater(t, st.BatchRequests, uint64(2), "split")
}

func TestKeyRejected(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		h := newHarness(t)
		h.srv.SetFaults(otasserver.Faults{RejectKey: true})
		_, err := NewOTASSink(context.Background(), h.config())
		h.note(err)
		var ae *OTASAuthError
		require.ErrorAs(t, err, &ae)
		assert.True(t, ae.Rejected())
		assert.Contains(t, err.Error(), "Invalid SDK Key")
	})
	t.Run("while running, with spool", func(t *testing.T) {
		h := newHarness(t)
		cfg := h.config()
		cfg.Live = true
		cfg.SpoolDir = t.TempDir()
		s := h.sink(cfg)
		tok := h.token("agent-1")
		writeN(t, s, 0, 10, tok)
		require.NoError(t, h.srv.WaitStored(10, 5*time.Second))
		h.srv.SetFaults(otasserver.Faults{RejectKey: true})
		writeN(t, s, 10, 20, tok)
		require.Eventually(t, func() bool { return s.Ready() != nil }, 5*time.Second, 10*time.Millisecond)
		writeN(t, s, 30, 5, tok) // capture goes on
		err := h.note(s.Close(context.Background()))
		var ae *OTASAuthError
		require.ErrorAs(t, err, &ae)
		st := s.Stats()
		assert.True(t, st.KeyRejected)
		assert.EqualValues(t, 25, st.Spooled, "kept for after the key is fixed")
		assert.Contains(t, h.logs.String(), "OTAS REJECTED THE SDK KEY")

		// With the key fixed the spool is sent on the next start.
		h.srv.SetFaults(otasserver.Faults{})
		s2 := h.sink(cfg)
		require.NoError(t, h.srv.WaitStored(35, 5*time.Second))
		require.NoError(t, s2.Close(context.Background()))
	})
}

func TestBackendDownAtStart(t *testing.T) {
	t.Run("replay fails after auth timeout", func(t *testing.T) {
		h := newHarness(t)
		h.srv.SetFaults(otasserver.Faults{Down: true})
		cfg := h.config()
		cfg.AuthTimeout = 300 * time.Millisecond
		start := time.Now()
		_, err := NewOTASSink(context.Background(), cfg)
		h.note(err)
		var ae *OTASAuthError
		require.ErrorAs(t, err, &ae)
		assert.False(t, ae.Rejected())
		assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		assert.Contains(t, err.Error(), "unreachable")
	})
	for _, spool := range []bool{false, true} {
		t.Run(fmt.Sprintf("live keeps capturing spool=%t", spool), func(t *testing.T) {
			h := newHarness(t)
			h.srv.SetFaults(otasserver.Faults{Down: true})
			cfg := h.config()
			cfg.Live = true
			if spool {
				cfg.SpoolDir = t.TempDir()
			}
			s := h.sink(cfg)
			require.Error(t, s.Ready())
			tok := h.token("agent-1")
			ids := writeN(t, s, 0, 50, tok)
			time.Sleep(100 * time.Millisecond)
			assert.Error(t, s.Ready(), "not ready while the backend is away")
			h.srv.SetFaults(otasserver.Faults{})
			require.Eventually(t, func() bool { return s.Ready() == nil }, 5*time.Second, 10*time.Millisecond)
			ids = append(ids, writeN(t, s, 50, 50, tok)...)
			require.NoError(t, h.srv.WaitStored(100, 10*time.Second))
			require.NoError(t, s.Close(context.Background()))
			assertAllStored(t, h.srv, ids, tok)
		})
	}
}

// TestOutageWithSpoolLosesNothing: the backend goes away for outageTime while a
// live capture keeps writing; everything arrives once it is back.
func TestOutageWithSpoolLosesNothing(t *testing.T) {
	h := newHarness(t)
	cfg := h.config()
	cfg.Live = true
	cfg.SpoolDir = t.TempDir()
	cfg.QueueSize = 64
	s := h.sink(cfg)
	tok := h.token("agent-1")
	var ids []string
	ids = append(ids, writeN(t, s, 0, 100, tok)...)
	h.srv.SetFaults(otasserver.Faults{DownUntil: time.Now().Add(outageTime)})
	deadline := time.Now().Add(outageTime + 500*time.Millisecond)
	for i := 100; time.Now().Before(deadline); i += 50 {
		ids = append(ids, writeN(t, s, i, 50, tok)...)
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, h.srv.WaitStored(len(ids), 15*time.Second))
	require.NoError(t, s.Close(context.Background()))
	assertAllStored(t, h.srv, ids, tok)
	st := s.Stats()
	assert.Positive(t, st.Spooled, "the outage went to disk")
	assert.Zero(t, st.DroppedTotal(), "%v", st.Dropped)
	assert.Zero(t, st.SpoolEvents, "spool emptied")
	t.Logf("events=%d spooled=%d requests=%d failed=%d", len(ids), st.Spooled, st.Requests, st.FailedRequests)
}

func TestLiveQueueFullNeverBlocks(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(otasserver.Faults{Delay: 500 * time.Millisecond})
	cfg := h.config()
	cfg.Live = true
	cfg.QueueSize = 10
	cfg.Workers = 1
	cfg.BatchSize = 5
	cfg.DrainTimeout = 100 * time.Millisecond
	s := h.sink(cfg)
	tok := h.token("agent-1")
	start := time.Now()
	writeN(t, s, 0, 500, tok)
	assert.Less(t, time.Since(start), 300*time.Millisecond, "Write never waits for the backend")
	st := s.Stats()
	assert.Positive(t, st.Dropped[DropQueueFull])
	_ = h.note(s.Close(context.Background()))
	st = s.Stats()
	assert.EqualValues(t, 500, st.Uploaded+st.DroppedTotal(), "every event accounted for")
}

func TestReplayBlocksInsteadOfDropping(t *testing.T) {
	h := newHarness(t)
	h.srv.SetFaults(otasserver.Faults{Delay: 30 * time.Millisecond})
	cfg := h.config()
	cfg.QueueSize = 4
	cfg.Workers = 1
	cfg.BatchSize = 10
	s := h.sink(cfg)
	tok := h.token("agent-1")
	ids := writeN(t, s, 0, 200, tok)
	require.NoError(t, s.Close(context.Background()))
	assertAllStored(t, h.srv, ids, tok)
	st := s.Stats()
	assert.Zero(t, st.DroppedTotal())
	// 200 events through a queue of 4 and one slow upload at a time: the
	// writer waited, at least for the 30 ms answers it could not get ahead of.
	assert.Greater(t, st.QueueWait, 30*time.Millisecond)
}

func TestDrainTimeout(t *testing.T) {
	t.Run("no spool: dropped and reported", func(t *testing.T) {
		h := newHarness(t)
		s := h.sink(h.config())
		h.srv.SetFaults(otasserver.Faults{Down: true})
		cfg := s.cfg
		_ = cfg
		s.cfg.DrainTimeout = 200 * time.Millisecond
		writeN(t, s, 0, 30, h.token("a"))
		start := time.Now()
		err := h.note(s.Close(context.Background()))
		assert.Less(t, time.Since(start), 2*time.Second)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "30 events not delivered")
		assert.EqualValues(t, 30, s.Stats().Dropped[DropShutdown])
	})
	t.Run("spool: kept and sent on the next start", func(t *testing.T) {
		h := newHarness(t)
		cfg := h.config()
		cfg.SpoolDir = t.TempDir()
		cfg.DrainTimeout = 200 * time.Millisecond
		s := h.sink(cfg)
		h.srv.SetFaults(otasserver.Faults{Down: true})
		tok := h.token("a")
		ids := writeN(t, s, 0, 30, tok)
		require.NoError(t, h.note(s.Close(context.Background())))
		assert.EqualValues(t, 30, s.Stats().SpoolEvents)
		h.srv.SetFaults(otasserver.Faults{})
		s2 := h.sink(cfg)
		require.NoError(t, h.srv.WaitStored(30, 5*time.Second))
		require.NoError(t, s2.Close(context.Background()))
		assertAllStored(t, h.srv, ids, tok)
		assert.Zero(t, s2.Stats().SpoolEvents)
	})
}

// TestSpoolAfterKill: a process died leaving a spool whose last record is torn;
// the next start sends every whole record.
func TestSpoolAfterKill(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	tok := h.token("agent-1")
	var ids []string
	var recs []spoolRecord
	for i := range 40 {
		ev := testEvent(i, tok)
		data, err := encodeEvent(ev)
		require.NoError(t, err)
		recs = append(recs, spoolRecord{token: tok, data: data})
		ids = append(ids, ev.Metadata.EventID)
	}
	sp, err := openSpool(dir, 1<<20, nil, nil)
	require.NoError(t, err)
	n, err := sp.append(recs)
	require.NoError(t, err)
	require.Equal(t, 40, n)
	// The kill: a record half written, and no orderly close.
	data, _ := encodeEvent(testEvent(99, tok))
	torn := encodeRecord(nil, spoolRecord{token: tok, data: data})
	_, err = sp.cur.Write(torn[:len(torn)/2])
	require.NoError(t, err)
	unlockDir(sp.lock)
	sp.cur.Close()

	cfg := h.config()
	cfg.Live = true
	cfg.SpoolDir = dir
	s := h.sink(cfg)
	require.NoError(t, h.srv.WaitStored(40, 5*time.Second))
	require.NoError(t, s.Close(context.Background()))
	assertAllStored(t, h.srv, ids, tok)
	st := s.Stats()
	assert.EqualValues(t, 1, st.Dropped[DropSpoolCorrupt], "the torn record is skipped and counted")
	assert.Zero(t, st.SpoolEvents)
	files, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	assert.Empty(t, files, "sent segments are deleted")
}

func TestStatsCountRequests(t *testing.T) {
	h := newHarness(t)
	s := h.sink(h.config())
	writeN(t, s, 0, 10, h.token("a"))
	require.NoError(t, s.Close(context.Background()))
	st := s.Stats()
	c := h.srv.Counts()
	assert.EqualValues(t, c.AuthRequests, st.AuthRequests)
	assert.EqualValues(t, c.BatchRequests, st.BatchRequests)
	assert.Equal(t, st.AuthRequests+st.BatchRequests+st.EventRequests, st.Requests)
	assert.True(t, st.Authenticated)
	assert.Equal(t, 0, st.QueueDepth)
	assert.Positive(t, st.QueueCapacity)
}

func TestWriteAfterClose(t *testing.T) {
	h := newHarness(t)
	s := h.sink(h.config())
	require.NoError(t, s.Close(context.Background()))
	err := s.Write(context.Background(), testEvent(1, h.token("a")))
	assert.True(t, errors.Is(err, ErrSinkClosed))
	assert.NoError(t, s.Close(context.Background()), "Close twice is fine")
}
