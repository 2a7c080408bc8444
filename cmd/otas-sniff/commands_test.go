package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommandsHaveExamples: every command's --help shows at least one example.
func TestCommandsHaveExamples(t *testing.T) {
	root := newRootCmd(nil, nil, nil)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" && c.Name() != "completion" && !c.Hidden {
			assert.NotEmpty(t, strings.TrimSpace(c.Example), "%q has no example in its --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func TestCompletionAndVersion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runCmd(t, "", "completion", shell)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Contains(t, r.stdout, "otas-sniff", shell)
	}
	r := runCmd(t, "", "version")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, want := range []string{"otas-sniff ", "commit:", "go:", "libpcap version"} {
		assert.Contains(t, r.stdout, want)
	}
}

func TestLogFlags(t *testing.T) {
	r := runCmd(t, "", "--log-format", "xml", "version")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--log-format must be text or json")
	r = runCmd(t, "", "--log-level", "loud", "version")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "--log-level")
}

// TestConfigSources runs `otas-sniff config` with a flag, an environment
// variable and a file, and checks precedence and where each value came from.
func TestConfigSources(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/otas-sniff.yaml"
	require.NoError(t, writeFile(file, "port: 7000\nmax-body: 2048\nidle-timeout: 30s\n"))
	t.Setenv("OTAS_SNIFF_MAX_BODY", "4096")
	t.Setenv("OTAS_SDK_KEY", "otas_secretprefix_secretvalue")
	r := runCmd(t, "", "config", "replay", "--config", file)
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			lines[f[0]] = strings.Join(f[1:], " ")
		}
	}
	assert.Contains(t, lines["port"], "7000")
	assert.Contains(t, lines["port"], "file")
	assert.Contains(t, lines["max-body"], "4096", "the environment wins over the file")
	assert.Contains(t, lines["max-body"], "env (OTAS_SNIFF_MAX_BODY)")
	assert.Contains(t, lines["idle-timeout"], "30s")
	assert.NotContains(t, r.stdout, "secretvalue", "no secret in the config output")

	require.NoError(t, writeFile(file, "port: 7000\nmax-bdy: 1\n"))
	r = runCmd(t, "", "config", "replay", "--config", file)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "otas-sniff.yaml:2")
	assert.Contains(t, r.stderr, "max-body", "suggests the closest flag")

	require.NoError(t, writeFile(file, "port: [7000\n"))
	r = runCmd(t, "", "replay", fixturePath("go-api"), "-o", "jsonl:-", "--config", file)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "otas-sniff.yaml:")
	var out bytes.Buffer
	out.WriteString(r.stdout)
	assert.Empty(t, out.String(), "nothing runs with a broken config")
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}
