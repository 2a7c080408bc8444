// Package corpus locates the third-party conformance corpus that tests measure
// the project against. The corpus lives next to the repository, in
// ../shared/corpus, and is not part of it; tests skip when it is absent.
package corpus

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns ../shared/corpus/<sub> relative to the repository root (the
// nearest directory above the test's working directory holding go.mod). It
// skips the test when that directory does not exist.
func Dir(t testing.TB, sub string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Skipf("conformance corpus is absent: cannot read working directory: %v", err)
	}
	root, ok := repoRoot(wd)
	if !ok {
		t.Skipf("conformance corpus is absent: no go.mod above %s, so ../shared/corpus/%s cannot be located", wd, sub)
	}
	dir := filepath.Join(filepath.Dir(root), "shared", "corpus", sub)
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		t.Skipf("conformance corpus is absent: expected it at %s (../shared/corpus/%s next to the repository)", dir, sub)
	}
	return dir
}

// repoRoot walks up from dir to the first directory containing go.mod.
func repoRoot(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
