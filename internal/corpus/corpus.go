// Package corpus finds the third-party conformance material (Zeek's HTTP traces,
// llhttp's and http-parser's parser cases) that lives beside the repository in
// ../shared/corpus, for tests that measure themselves against it.
package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns ../shared/corpus/sub relative to the repository root, or skips
// the test with a message saying where the corpus was expected.
func Dir(t testing.TB, sub string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Skipf("conformance corpus not found: %v", err)
	}
	dir := filepath.Join(root, "..", "shared", "corpus", sub)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("conformance corpus absent: expected %s (the shared corpus beside the repository); skipping", dir)
	}
	return dir
}

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
