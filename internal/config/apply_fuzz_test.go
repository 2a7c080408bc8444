package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// fuzzFlags is a flag set of every kind the commands use.
func fuzzFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
	fs.String(FileFlag, "", "")
	fs.String("port", "", "")
	fs.Int("max-body", 100, "")
	fs.Int64("spool-max-bytes", 1<<20, "")
	fs.Bool("promisc", true, "")
	fs.Duration("idle-timeout", time.Minute, "")
	fs.StringSlice("interface", nil, "")
	fs.StringArray("output", nil, "")
	fs.String("sdk-key-file", "", "")
	return fs
}

// FuzzApply: internal/config.Apply on arbitrary YAML (and an arbitrary
// environment value) must not panic or hang, must name the file in every
// error, and must leave the flags given on the command line alone.
func FuzzApply(f *testing.F) {
	for _, s := range []string{
		"port: 8000\nmax-body: 65536\n",
		"interface: [eth0, lo]\noutput:\n  - jsonl:-\n  - otas\n",
		"idle-timeout: 30s\npromisc: false\n",
		"a: &x [1, 2]\ninterface: *x\n",
		"max-body: {a: 1}\n",
		"- not a mapping\n",
		"port: 1\nport: 2\n",
		"config: other.yaml\n",
		"max_body: 10\nspool-max-bytes: 99999999999999999999\n",
		"\t\x00: [\n",
		"? [a]\n: b\n",
	} {
		f.Add(s, "")
	}
	f.Add("port: 1\n", "8080")
	f.Fuzz(func(t *testing.T, yaml, env string) {
		if len(yaml) > 64<<10 {
			return
		}
		file := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		fs := fuzzFlags()
		if err := fs.Parse([]string{"--max-body", "7"}); err != nil {
			t.Fatal(err)
		}
		getenv := func(name string) string {
			if name == EnvName("port") {
				return env
			}
			return ""
		}
		err := Apply(fs, file, getenv)
		if err != nil && !strings.Contains(err.Error(), file) && !strings.Contains(err.Error(), EnvName("port")) {
			t.Fatalf("error does not name the file or variable: %v", err)
		}
		if v, _ := fs.GetInt("max-body"); v != 7 {
			t.Fatalf("command-line --max-body 7 became %d", v)
		}
		// The table of effective settings is always writable.
		var sb strings.Builder
		if werr := WriteTable(&sb, Effective(fs, SecretName)); werr != nil {
			t.Fatal(werr)
		}
	})
}
