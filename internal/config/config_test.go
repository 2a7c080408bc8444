package config

import (
	"bytes"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testFlags is a FlagSet shaped like otas-sniff's: one of each kind of flag.
func testFlags(t *testing.T) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("otas-sniff", pflag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	fs.StringP("port", "p", "", "ports")
	fs.StringArrayP("output", "o", nil, "outputs")
	fs.StringSlice("redact-header", nil, "extra headers")
	fs.Int("max-body", 100<<10, "body bytes")
	fs.Duration("idle-timeout", 2*time.Minute, "idle")
	fs.Bool("quiet", false, "no progress")
	fs.String("otas-key", "", "API key")
	fs.String(FileFlag, "", "config file")
	return fs
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "otas-sniff.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnvName(t *testing.T) {
	tests := map[string]string{
		"port":                        "OTAS_SNIFF_PORT",
		"max-body":                    "OTAS_SNIFF_MAX_BODY",
		"max-buffered-bytes-per-conn": "OTAS_SNIFF_MAX_BUFFERED_BYTES_PER_CONN",
	}
	for flag, want := range tests {
		t.Run(flag, func(t *testing.T) {
			assert.Equal(t, want, EnvName(flag))
		})
	}
}

func TestApplyPrecedence(t *testing.T) {
	file := writeFile(t, `
port: "9000"
max-body: 2048
idle-timeout: 30s
quiet: true
output:
  - jsonl:file.jsonl
  - har:file.har
`)
	env := envMap(map[string]string{
		"OTAS_SNIFF_PORT":     "8000",
		"OTAS_SNIFF_MAX_BODY": "4096",
		"OTAS_SNIFF_OUTPUT":   "jsonl:-, otas",
		"OTAS_SNIFF_OTAS_KEY": "sk-env",
	})
	tests := []struct {
		name     string
		args     []string
		flag     string
		want     string
		source   string
		where    string
		fileless bool
	}{
		{"flag beats env and file", []string{"--port", "7000"}, "port", "7000", SourceFlag, "", false},
		{"env beats file", nil, "port", "8000", SourceEnv, "OTAS_SNIFF_PORT", false},
		{"env int", nil, "max-body", "4096", SourceEnv, "OTAS_SNIFF_MAX_BODY", false},
		{"file when no env", nil, "idle-timeout", "30s", SourceFile, "otas-sniff.yaml:4", false},
		{"file bool", nil, "quiet", "true", SourceFile, "otas-sniff.yaml:5", false},
		{"default when nothing", nil, "redact-header", "", SourceDefault, "", false},
		{"default duration", nil, "idle-timeout", "2m0s", SourceDefault, "", true},
		{"env list split on commas", nil, "output", "jsonl:-,otas", SourceEnv, "OTAS_SNIFF_OUTPUT", false},
		{"flag list beats env list", []string{"-o", "har:x.har", "-o", "jsonl:y"}, "output", "har:x.har,jsonl:y", SourceFlag, "", false},
		{"shorthand counts as flag", []string{"-p", "1"}, "port", "1", SourceFlag, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := testFlags(t)
			require.NoError(t, fs.Parse(tt.args))
			f := file
			if tt.fileless {
				f = ""
			}
			require.NoError(t, Apply(fs, f, env))
			var got Setting
			for _, s := range Effective(fs, nil) {
				if s.Name == tt.flag {
					got = s
				}
			}
			assert.Equal(t, tt.want, got.Value)
			assert.Equal(t, tt.source, got.Source)
			assert.Equal(t, tt.where, strings.TrimPrefix(got.Where, filepath.Dir(file)+string(filepath.Separator)))
			assert.Equal(t, tt.source != SourceDefault, fs.Changed(tt.flag), "set flags count as changed")
		})
	}
}

func TestApplyListsFromFile(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		flag string
		want []string
	}{
		{"array from list", "output: [jsonl:-, otas]", "output", []string{"jsonl:-", "otas"}},
		{"array item with comma kept whole", "output: ['jsonl:a,b.jsonl']", "output", []string{"jsonl:a,b.jsonl"}},
		{"array from one value", "output: otas", "output", []string{"otas"}},
		{"slice from block list", "redact-header:\n  - X-Secret\n  - X-Other\n", "redact-header", []string{"X-Secret", "X-Other"}},
		{"empty list", "output: []", "output", []string{}},
		{"underscore key", "redact_header: [A]", "redact-header", []string{"A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := testFlags(t)
			require.NoError(t, fs.Parse(nil))
			require.NoError(t, Apply(fs, writeFile(t, tt.yaml), envMap(nil)))
			var got []string
			var err error
			if tt.flag == "output" {
				got, err = fs.GetStringArray(tt.flag)
			} else {
				got, err = fs.GetStringSlice(tt.flag)
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestApplyFileErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"syntax error names the line", "port: 80\nmax-body: 1\n  idle-timeout: [\n", []string{"otas-sniff.yaml:3: not valid YAML"}},
		{"tab indentation", "port: 80\n\tquiet: true\n", []string{"otas-sniff.yaml:2: not valid YAML"}},
		{"unknown key suggests close names", "port: 80\nmax-bdy: 10\n", []string{`otas-sniff.yaml:2: unknown setting "max-bdy"; did you mean max-body?`}},
		{"unknown key lists all when none close", "colour: blue\n", []string{`otas-sniff.yaml:1: unknown setting "colour"; valid settings: idle-timeout, max-body, otas-key, output, port, quiet, redact-header`}},
		{"help is not a setting", "help: true\n", []string{`unknown setting "help"`}},
		{"config in config", "config: other.yaml\n", []string{`otas-sniff.yaml:1: "config" cannot be set in the config file itself`}},
		{"wrong scalar type names the key", "quiet: true\nmax-body: lots\n", []string{`otas-sniff.yaml:2: max-body: want an integer, got "lots"`}},
		{"bad duration", "idle-timeout: 5 minutes\n", []string{`otas-sniff.yaml:1: idle-timeout: want a duration like 30s or 2m, got "5 minutes"`}},
		{"list for a scalar", "port:\n  - 80\n  - 81\n", []string{"otas-sniff.yaml:2: port: want a string, got a list"}},
		{"mapping for a list", "output:\n  kind: jsonl\n", []string{"otas-sniff.yaml:2: output: want a list, got a mapping"}},
		{"nested list item", "output:\n  - [a, b]\n", []string{"otas-sniff.yaml:2: output: list items must be single values, not a list (line 2)"}},
		{"duplicate key", "port: 80\nport: 81\n", []string{`otas-sniff.yaml:2: "port" is set again (first set at line 1)`}},
		{"duplicate through underscore", "max-body: 1\nmax_body: 2\n", []string{`otas-sniff.yaml:2: "max_body" is set again (first set at line 1)`}},
		{"not a mapping", "- port\n- 80\n", []string{"otas-sniff.yaml:1: expected a mapping of flag names to values"}},
		{"every problem reported", "max-bdy: 1\nquiet: maybe\n", []string{`otas-sniff.yaml:1: unknown setting "max-bdy"`, `otas-sniff.yaml:2: quiet: want true or false, got "maybe"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := testFlags(t)
			require.NoError(t, fs.Parse(nil))
			err := Apply(fs, writeFile(t, tt.yaml), envMap(nil))
			require.Error(t, err)
			for _, want := range tt.want {
				assert.Contains(t, trimDir(err.Error()), want)
			}
			var fe *FileError
			assert.ErrorAs(t, err, &fe)
		})
	}
}

// trimDir drops the temporary directory from file paths in messages.
func trimDir(msg string) string {
	var lines []string
	for _, line := range strings.Split(msg, "\n") {
		if i := strings.Index(line, "otas-sniff.yaml"); i >= 0 {
			line = line[i:]
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func TestApplyFileErrorHasFullPath(t *testing.T) {
	fs := testFlags(t)
	require.NoError(t, fs.Parse(nil))
	path := writeFile(t, "max-body: x\n")
	err := Apply(fs, path, envMap(nil))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), path+":1: "), err.Error())
}

func TestApplyMissingFile(t *testing.T) {
	fs := testFlags(t)
	require.NoError(t, fs.Parse(nil))
	err := Apply(fs, filepath.Join(t.TempDir(), "nope.yaml"), envMap(nil))
	require.Error(t, err)
	assert.ErrorIs(t, err, iofs.ErrNotExist)
	assert.Contains(t, err.Error(), "nope.yaml")
}

func TestApplyEmptyFile(t *testing.T) {
	fs := testFlags(t)
	require.NoError(t, fs.Parse(nil))
	require.NoError(t, Apply(fs, writeFile(t, "# only a comment\n"), envMap(nil)))
	assert.False(t, fs.Changed("port"))
}

func TestApplyNullLeavesDefault(t *testing.T) {
	fs := testFlags(t)
	require.NoError(t, fs.Parse(nil))
	require.NoError(t, Apply(fs, writeFile(t, "max-body:\nport: ~\n"), envMap(nil)))
	v, err := fs.GetInt("max-body")
	require.NoError(t, err)
	assert.Equal(t, 100<<10, v)
	assert.False(t, fs.Changed("max-body"))
}

func TestApplyEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad int", map[string]string{"OTAS_SNIFF_MAX_BODY": "big"}, `environment variable OTAS_SNIFF_MAX_BODY: invalid argument "big" for "--max-body" flag`},
		{"bad bool", map[string]string{"OTAS_SNIFF_QUIET": "perhaps"}, "environment variable OTAS_SNIFF_QUIET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := testFlags(t)
			require.NoError(t, fs.Parse(nil))
			err := Apply(fs, "", envMap(tt.env))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestApplyEnvConfigIgnored(t *testing.T) {
	fs := testFlags(t)
	require.NoError(t, fs.Parse(nil))
	require.NoError(t, Apply(fs, "", envMap(map[string]string{"OTAS_SNIFF_CONFIG": "x.yaml"})))
	assert.False(t, fs.Changed(FileFlag), "the config file is chosen by File, not set as a setting")
}

func TestFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"none", nil, nil, ""},
		{"env", nil, map[string]string{"OTAS_SNIFF_CONFIG": "/etc/otas-sniff.yaml"}, "/etc/otas-sniff.yaml"},
		{"flag beats env", []string{"--config", "mine.yaml"}, map[string]string{"OTAS_SNIFF_CONFIG": "/etc/otas-sniff.yaml"}, "mine.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := testFlags(t)
			require.NoError(t, fs.Parse(tt.args))
			assert.Equal(t, tt.want, File(fs, envMap(tt.env)))
		})
	}
}

func TestEffectiveMasksSecrets(t *testing.T) {
	fs := testFlags(t)
	require.NoError(t, fs.Parse([]string{"--port", "8000"}))
	file := writeFile(t, "otas-key: sk-from-file\n")
	require.NoError(t, Apply(fs, file, envMap(map[string]string{"OTAS_SNIFF_OUTPUT": "otas"})))

	got := Effective(fs, SecretName)
	names := make([]string, len(got))
	for i, s := range got {
		names[i] = s.Name
	}
	assert.Equal(t, []string{"config", "idle-timeout", "max-body", "otas-key", "output", "port", "quiet", "redact-header"}, names)
	byName := map[string]Setting{}
	for _, s := range got {
		byName[s.Name] = s
	}
	assert.Equal(t, Setting{Name: "otas-key", Value: Masked, Source: SourceFile, Where: file + ":1", Secret: true}, byName["otas-key"])
	assert.Equal(t, Setting{Name: "port", Value: "8000", Source: SourceFlag}, byName["port"])
	assert.Equal(t, Setting{Name: "output", Value: "otas", Source: SourceEnv, Where: "OTAS_SNIFF_OUTPUT"}, byName["output"])
	assert.Equal(t, Setting{Name: "max-body", Value: "102400", Source: SourceDefault}, byName["max-body"])

	unset := testFlags(t)
	require.NoError(t, unset.Parse(nil))
	for _, s := range Effective(unset, SecretName) {
		if s.Name == "otas-key" {
			assert.Equal(t, "", s.Value, "an empty secret shows as empty, so 'not set' is visible")
			assert.False(t, s.Secret)
		}
	}
}

func TestSecretName(t *testing.T) {
	tests := map[string]bool{"otas-key": true, "api-token": true, "client-secret": true, "password": true, "port": false, "max-body": false}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, want, SecretName(name))
		})
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteTable(&buf, []Setting{
		{Name: "max-body", Value: "102400", Source: SourceDefault},
		{Name: "otas-key", Value: Masked, Source: SourceEnv, Where: "OTAS_SNIFF_OTAS_KEY", Secret: true},
		{Name: "port", Value: "", Source: SourceDefault},
	}))
	assert.Equal(t, ""+
		"NAME      VALUE     SOURCE\n"+
		"max-body  102400    default\n"+
		"otas-key  ********  env (OTAS_SNIFF_OTAS_KEY)\n"+
		"port      \"\"        default\n", buf.String())
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"max-bdy", "max-body", 1}, {"kitten", "sitting", 3}, {"port", "port", 0},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			assert.Equal(t, tt.want, editDistance(tt.a, tt.b))
		})
	}
}
