package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/httpparse"
	"github.com/otas/otas-sniff/internal/adversarial"
	"github.com/otas/otas-sniff/internal/otasserver"
)

// secretKey is a well-formed SDK key whose every part is distinctive, so a
// leak of any part of it shows up in a grep.
const (
	secretKeyPrefix = "SecrPfx7Q2"
	secretKeySecret = "S3cretPart9Zx8Wv7Ut6"
	secretKey       = "otas_" + secretKeyPrefix + "_" + secretKeySecret
)

// leaks returns what of the key and the tokens appears in text.
func secretLeaks(text string, tokens ...string) []string {
	var out []string
	for _, s := range append([]string{secretKey, secretKeySecret}, tokens...) {
		if s != "" && strings.Contains(text, s) {
			out = append(out, s)
		}
	}
	return out
}

// secretCapture writes a capture of an agent's API call carrying a session
// token (as header, bearer token and query parameter), and, as a sniffer on
// the OTAS host would see it, an OTAS SDK upload carrying the key.
func secretCapture(t *testing.T, token string, withKeyHeader bool) string {
	t.Helper()
	var buf bytes.Buffer
	g := adversarial.New(&buf)
	g.Exchange("GET /api/items?access_token="+token+" HTTP/1.1\r\nHost: api\r\n"+
		forwarder.SessionTokenHeader+": "+token+"\r\nAuthorization: Bearer "+token+"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	g.Exchange("POST /login HTTP/1.1\r\nHost: api\r\n"+forwarder.SessionTokenHeader+": "+token+
		"\r\nContent-Type: application/json\r\nContent-Length: "+fmt.Sprint(len(`{"token":"`+token+`"}`))+"\r\n\r\n"+`{"token":"`+token+`"}`,
		"HTTP/1.1 200 OK\r\nSet-Cookie: sid="+token+"\r\nContent-Length: 0\r\n\r\n")
	if withKeyHeader {
		body := `{"path":"/x"}`
		g.Exchange("POST /api/v1/backend/log/sdk/ HTTP/1.1\r\nHost: otas\r\nX-OTAS-SDK-KEY: "+secretKey+"\r\n"+
			forwarder.SessionTokenHeader+": "+token+"\r\nContent-Type: application/json\r\nContent-Length: "+fmt.Sprint(len(body))+"\r\n\r\n"+body,
			"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
	}
	require.NoError(t, g.Close())
	path := filepath.Join(t.TempDir(), "secrets.pcap")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
	return path
}

// secretFiles reads every regular file under dir.
func secretFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[path] = string(b)
		return err
	}))
	return out
}

// TestSecretsNeverWritten runs the command through every failure path and the
// outputs that write files, with a distinctive SDK key and session token, and
// greps everything written: standard output and error (logs at debug level,
// summaries, error messages) and every output file. The spool is the one
// place the design keeps tokens (each event's token is its upload
// credential): there the files must be private (0600 in a 0700 directory)
// and still never hold the SDK key.
func TestSecretsNeverWritten(t *testing.T) {
	srv := otasserver.New(secretKey, otasserver.Project{ID: "p-secret", Name: "Secrets"})
	defer srv.Close()
	token := srv.Token("agent-secrets")
	capFile := secretCapture(t, token, false)

	tests := []struct {
		name   string
		key    string // OTAS_SDK_KEY
		file   string // --sdk-key-file content, if any
		faults otasserver.Faults
		args   []string // after "replay CAPTURE"
		code   int
		// wantErr is in stderr.
		wantErr string
		spool   bool
		stored  int // events the backend stored
	}{
		{name: "no key", args: []string{"-o", "otas"}, code: exitOTAS, wantErr: "OTAS_SDK_KEY"},
		{name: "malformed key", key: "otas_" + secretKeyPrefix + "_" + secretKeySecret + " trailing", args: []string{"-o", "otas"}, code: exitOTAS, wantErr: "spaces"},
		{name: "malformed key without prefix", key: secretKeySecret, args: []string{"-o", "otas"}, code: exitOTAS, wantErr: "malformed"},
		{name: "malformed key file", file: "key=" + secretKeySecret + "\n", args: []string{"-o", "otas"}, code: exitOTAS, wantErr: "malformed"},
		{name: "rejected key", key: secretKey, faults: otasserver.Faults{RejectKey: true}, args: []string{"-o", "otas"}, code: exitOTAS, wantErr: "reject"},
		{name: "unreachable backend", key: secretKey, faults: otasserver.Faults{Down: true}, args: []string{"-o", "otas", "--auth-timeout", "1s"}, code: exitOTAS, wantErr: "unreachable"},
		{name: "upload", key: secretKey, args: []string{"-o", "otas"}, stored: 2},
		{
			name: "backend failing: events spooled", key: secretKey, spool: true,
			faults: otasserver.Faults{Fail500Until: time.Now().Add(time.Hour)},
			args:   []string{"-o", "otas", "--drain-timeout", "1s", "--flush-interval", "50ms"},
		},
		{name: "jsonl and har files", key: secretKey, args: []string{"-o", "jsonl:OUT/events.jsonl", "-o", "har:OUT/events.har", "-o", "jsonl:-"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFaults(tt.faults)
			srv.Reset()
			t.Setenv("OTAS_SDK_KEY", tt.key)
			outDir, spoolDir := t.TempDir(), filepath.Join(t.TempDir(), "spool")
			args := []string{"replay", capFile, "--log-level", "debug", "--auth-url", srv.URL, "--ingest-url", srv.URL,
				"--include-untokened", "--spool-dir", spoolDir}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "OUT", outDir))
			}
			if tt.file != "" {
				kf := filepath.Join(outDir, "key")
				require.NoError(t, os.WriteFile(kf, []byte(tt.file), 0o600))
				args = append(args, "--sdk-key-file", kf)
			}
			r := runCmd(t, "", args...)
			assert.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			if tt.wantErr != "" {
				assert.Contains(t, strings.ToLower(r.stderr), strings.ToLower(tt.wantErr))
			}
			assert.Empty(t, secretLeaks(r.stdout, token), "stdout leaks")
			assert.Empty(t, secretLeaks(r.stderr, token), "stderr leaks: %s", r.stderr)
			for path, content := range secretFiles(t, outDir) {
				if filepath.Base(path) == "key" {
					continue
				}
				assert.Empty(t, secretLeaks(content, token), "%s leaks", path)
			}
			if strings.Contains(strings.Join(tt.args, " "), "jsonl:OUT") {
				assert.FileExists(t, filepath.Join(outDir, "events.jsonl"))
				assert.FileExists(t, filepath.Join(outDir, "events.har"))
				assert.Len(t, events(t, r.stdout), 2)
			}
			assert.Len(t, srv.Stored(), tt.stored, "events stored by the backend")
			spooled := secretFiles(t, filepath.Dir(spoolDir))
			if !tt.spool {
				return
			}
			// The spool holds the events and their tokens by design; it must be
			// private, and it never holds the key.
			fi, err := os.Stat(spoolDir)
			require.NoError(t, err, "the spool directory exists")
			assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm(), "spool directory mode")
			var segments int
			for path, content := range spooled {
				fi, err := os.Stat(path)
				require.NoError(t, err)
				assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "%s mode", path)
				assert.Empty(t, secretLeaks(content), "%s holds the SDK key", path)
				if strings.HasSuffix(path, ".spool") {
					segments++
				}
			}
			assert.Positive(t, segments, "events were spooled: %v", spooled)
		})
	}
}

// TestSecretsCapturedSDKKeyRedacted: a sniffer on a host that talks to OTAS
// (or on the loopback interface where it uploads itself: the default OTAS
// URLs are on localhost:8000 and :8002, and -p 8000 is the README's example)
// captures requests carrying X-OTAS-SDK-KEY. The key must be redacted from
// the event like any other credential header.
func TestSecretsCapturedSDKKeyRedacted(t *testing.T) {
	capFile := secretCapture(t, "tok-not-a-jwt", true)
	evs, r := replay(t, []string{capFile})
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Len(t, evs, 3)
	assert.Empty(t, secretLeaks(r.stdout), "the captured SDK key is written: %s", r.stdout)
}

// TestSecretsConfigCommand: `otas-sniff config` prints every setting, but
// never the key, from the environment, a key file or a config file.
func TestSecretsConfigCommand(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(keyFile, []byte(secretKey), 0o600))
	cfgFile := filepath.Join(dir, "otas-sniff.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("sdk-key-file: "+keyFile+"\nport: 8000\n"), 0o600))
	t.Setenv("OTAS_SDK_KEY", secretKey)
	t.Setenv("OTAS_SNIFF_SPOOL_DIR", dir)
	for _, args := range [][]string{
		{"config"},
		{"config", "replay"},
		{"config", "--log-level", "debug"},
		{"config", "--config", cfgFile},
		{"config", "replay", "--config", cfgFile},
	} {
		r := runCmd(t, "", args...)
		require.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stdout, "spool-dir", "%v prints the settings", args)
		assert.Empty(t, secretLeaks(r.stdout+r.stderr), "%v leaks: %s", args, r.stdout)
	}
}

// TestSecretsFormatting: the OTAS configuration never prints its key, in any
// fmt verb or through slog, so no log line, error or panic message carrying
// it can leak the key.
func TestSecretsFormatting(t *testing.T) {
	cfg := forwarder.OTASConfig{SDKKey: secretKey, AuthURL: "https://otas.example.com/"}
	for _, verb := range []string{"%v", "%+v", "%s", "%q"} {
		assert.Empty(t, secretLeaks(fmt.Sprintf(verb, cfg)), verb)
		assert.Empty(t, secretLeaks(fmt.Sprintf(verb, &cfg)), "pointer "+verb)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "cfg", cfg, "ptr", &cfg)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "cfg", cfg)
	assert.Empty(t, secretLeaks(buf.String()), buf.String())
	// A panic prints a Stringer's String().
	func() {
		defer func() {
			r := recover()
			assert.Empty(t, secretLeaks(fmt.Sprint(r)))
		}()
		panic(cfg)
	}()
	// The event's copy of the token is never serialised.
	ex := &httpparse.Exchange{Request: &httpparse.Message{Method: "GET", Target: "/",
		Header: httpparse.Header{{Name: forwarder.SessionTokenHeader, Value: "tok-" + secretKeySecret}}}}
	ev := forwarder.New(forwarder.Options{}).Event(ex)
	assert.Equal(t, "tok-"+secretKeySecret, ev.SessionToken, "kept for the upload header")
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	assert.Empty(t, secretLeaks(string(b)))
}

// TestSecretsLiveMetrics runs the binary capturing live on the loopback interface with the
// otas output and --metrics-addr, sends requests carrying a session token,
// scrapes /metrics, /healthz and /readyz while it runs, and greps the
// scrapes, the logs and the error output for the key and the token.
func TestSecretsLiveMetrics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: live capture on lo (run as root, as CI does)")
	}
	srv := otasserver.New(secretKey, otasserver.Project{ID: "p-secret", Name: "Secrets"})
	defer srv.Close()
	token := srv.Token("agent-live")

	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Set-Cookie", "sid="+token)
		w.Write([]byte(`{"ok":true}`))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go app.Serve(ln)
	defer app.Close()
	appPort := ln.Addr().(*net.TCPAddr).Port
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	metricsAddr := mln.Addr().String()
	mln.Close()

	// The built binary, not run(): a live capture drops every capability of
	// its process once capture is open, which would leave this test process
	// (and every later test in it) without the right to create namespaces.
	sniff := advBuild(t, t.TempDir(), "./cmd/otas-sniff")
	cmd := exec.Command(sniff, "-i", "lo", "-p", fmt.Sprint(appPort), "-o", "otas", "-o", "jsonl:-",
		"--auth-url", srv.URL, "--ingest-url", srv.URL, "--metrics-addr", metricsAddr,
		"--log-level", "debug", "--stats-interval", "200ms", "--flush-interval", "100ms")
	cmd.Env = append(os.Environ(), "OTAS_SDK_KEY="+secretKey)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	get := func(path string) string {
		resp, err := http.Get("http://" + metricsAddr + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	require.Eventually(t, func() bool { return get("/readyz") == "ready\n" }, 10*time.Second, 50*time.Millisecond, "ready: %s", stderr.String())

	client := &http.Client{Timeout: 2 * time.Second}
	for i := range 5 {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/items?token=%s&i=%d", appPort, token, i), strings.NewReader(`{"password":"`+token+`"}`))
		req.Header.Set(forwarder.SessionTokenHeader, token)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	require.NoError(t, srv.WaitStored(5, 10*time.Second), "uploaded; stderr: %s", stderr.String())
	scrapes := get("/metrics") + get("/healthz") + get("/readyz")
	assert.Contains(t, scrapes, "go_goroutines")
	assert.Empty(t, secretLeaks(scrapes, token), "metrics leak")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		assert.NoError(t, err, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("live capture did not stop")
	}
	assert.Len(t, events(t, stdout.String()), 5)
	assert.Empty(t, secretLeaks(stdout.String(), token), "events leak")
	assert.Empty(t, secretLeaks(stderr.String(), token), "logs leak: %s", stderr.String())
	// The backend gets the token as the event's upload credential (the batch
	// element's agent_session_token, by contract: README, Upload) and nowhere
	// else in the event.
	for _, s := range srv.Stored() {
		assert.Equal(t, token, s.Token)
		ev := s.Event()
		assert.Equal(t, token, ev["agent_session_token"])
		delete(ev, "agent_session_token")
		rest, err := json.Marshal(ev)
		require.NoError(t, err)
		assert.Empty(t, secretLeaks(string(rest), token), "uploaded event leaks outside agent_session_token: %s", rest)
	}
}

// TestConfigFileWithSubcommands: a --config file (or OTAS_SNIFF_CONFIG, as a
// deployment sets for every invocation) holding capture settings must not
// break the commands that do not have those flags: the config command's own
// documented example is `otas-sniff config --config /etc/otas-sniff.yaml`.
func TestConfigFileWithSubcommands(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "otas-sniff.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("port: 8000\nmax-body: 4096\n"), 0o600))
	r := runCmd(t, "", "config", "--config", cfgFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^port\s+8000\s+file`, r.stdout)
	r = runCmd(t, "", "config", "replay", "--config", cfgFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `(?m)^max-body\s+4096\s+file`, r.stdout)
	t.Setenv("OTAS_SNIFF_CONFIG", cfgFile)
	r = runCmd(t, "", "version")
	assert.Equal(t, exitOK, r.code, r.stderr)
}
