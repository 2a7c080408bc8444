package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/otasserver"
)

const otasTestKey = "otas_PocKPi56xDI_cmdtestsecret0123456789"

// runAuth runs `otas-sniff auth` built on its own.
func runAuth(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newAuthCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errb.String(), err
}

func exitCode(err error) int {
	if ee, ok := err.(*exitError); ok {
		return ee.code
	}
	return -1
}

func TestAuthCommand(t *testing.T) {
	srv := otasserver.New(otasTestKey, otasserver.Project{ID: "p-42", Name: "Demo"})
	defer srv.Close()
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte(otasTestKey), 0o600))

	tests := []struct {
		name    string
		env     string
		args    []string
		faults  otasserver.Faults
		wantOut string
		wantErr string
		code    int
	}{
		{name: "ok from env", env: otasTestKey, wantOut: `project "Demo" (id p-42)`},
		{name: "ok from file", args: []string{"--sdk-key-file", keyFile}, wantOut: "p-42"},
		{name: "no key", wantErr: "export OTAS_SDK_KEY='otas_...'", code: exitOTAS},
		{name: "malformed", env: "hello", wantErr: "otas_<prefix>_<secret>", code: exitOTAS},
		{name: "rejected", env: otasTestKey, faults: otasserver.Faults{RejectKey: true}, wantErr: "rejected (HTTP 403: Invalid SDK Key)", code: exitOTAS},
		{name: "unreachable", env: otasTestKey, faults: otasserver.Faults{Down: true}, wantErr: "unreachable", code: exitOTAS},
		{name: "plain http off loopback", env: otasTestKey, args: []string{"--auth-url", "http://otas.example.com/"}, wantErr: "--insecure", code: exitOTAS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTAS_SDK_KEY", tt.env)
			srv.SetFaults(tt.faults)
			args := append([]string{"--auth-url", srv.URL, "--timeout", "2s"}, tt.args...)
			out, err := runAuth(t, args...)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Equal(t, tt.code, exitCode(err))
				assert.NotContains(t, err.Error(), otasTestKey)
				return
			}
			require.NoError(t, err)
			assert.Contains(t, out, tt.wantOut)
			assert.NotContains(t, out, otasTestKey)
		})
	}
}

func TestOTASFlags(t *testing.T) {
	t.Run("env defaults, flags win", func(t *testing.T) {
		t.Setenv("OTAS_AUTH_URL", "https://auth.example.com/")
		t.Setenv("OTAS_INGEST_URL", "https://ingest.example.com/")
		var cfg forwarder.OTASConfig
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		addOTASFlags(fs, &cfg)
		require.NoError(t, fs.Parse([]string{"--ingest-url", "https://other.example.com/", "--batch-size", "50", "--flush-interval", "250ms", "--spool-dir", "/tmp/s"}))
		assert.Equal(t, "https://auth.example.com/", cfg.AuthURL)
		assert.Equal(t, "https://other.example.com/", cfg.IngestURL)
		assert.Equal(t, 50, cfg.BatchSize)
		assert.Equal(t, 250*time.Millisecond, cfg.FlushInterval)
		assert.Equal(t, "/tmp/s", cfg.SpoolDir)
		assert.NoError(t, checkOTASFlags(&cfg))
	})
	t.Run("sdk defaults", func(t *testing.T) {
		t.Setenv("OTAS_AUTH_URL", "")
		t.Setenv("OTAS_INGEST_URL", "")
		var cfg forwarder.OTASConfig
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		addOTASFlags(fs, &cfg)
		require.NoError(t, fs.Parse(nil))
		assert.Equal(t, "http://localhost:8000/", cfg.AuthURL)
		assert.Equal(t, "http://localhost:8002/", cfg.IngestURL)
		assert.Equal(t, 100, cfg.BatchSize)
		assert.Equal(t, time.Second, cfg.FlushInterval)
		assert.Nil(t, fs.Lookup("sdk-key"), "the key is never a flag value")
	})
	t.Run("bad values", func(t *testing.T) {
		for _, args := range [][]string{{"--batch-size", "0"}, {"--upload-workers", "0"}, {"--flush-interval", "0s"}, {"--spool-max-bytes", "10"}} {
			var cfg forwarder.OTASConfig
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			addOTASFlags(fs, &cfg)
			require.NoError(t, fs.Parse(args))
			err := checkOTASFlags(&cfg)
			require.Error(t, err, args)
			assert.Equal(t, exitUsage, exitCode(err))
		}
	})
}

func TestRedactorFlags(t *testing.T) {
	var r redactorFlags
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	r.register(fs)
	require.NoError(t, fs.Parse([]string{"--redact-header", "X-A,X-B", "--redact-param", "pin", "--redact-pattern", `ACME-\d+`}))
	env := func(k string) string {
		if k == "OTAS_SENSITIVE_HEADERS" {
			return "Authorization, X-Internal-Token ,"
		}
		return ""
	}
	opts, err := r.options(env)
	require.NoError(t, err)
	assert.Equal(t, []string{"X-A", "X-B", "Authorization", "X-Internal-Token"}, opts.Headers)
	assert.Equal(t, []string{"pin"}, opts.Params)
	require.Len(t, opts.Patterns, 1)
	assert.Equal(t, "id [REDACTED]", string(forwarder.NewRedactor(opts).RedactBody("text/plain", []byte("id ACME-7"))))

	for _, bad := range []string{"(", "x*"} {
		r := redactorFlags{patterns: []string{bad}}
		_, err := r.options(nil)
		require.Error(t, err, bad)
		assert.Equal(t, exitUsage, exitCode(err))
	}
}
