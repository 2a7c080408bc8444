package corpus

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRepoRoot(t *testing.T) {
	tmp := t.TempDir()
	repo := filepath.Join(tmp, "repo")
	deep := filepath.Join(repo, "a", "b")
	require.NoError(t, os.MkdirAll(deep, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module x\n"), 0o644))

	root, ok := repoRoot(deep)
	require.True(t, ok)
	assert.Equal(t, repo, root)

	_, ok = repoRoot(filepath.Join(tmp))
	assert.False(t, ok, "no go.mod above the temp dir")
}

func TestDirFindsSharedCorpus(t *testing.T) {
	dir := Dir(t, "") // skips when the corpus is absent
	_, err := os.Stat(filepath.Join(dir, "README.md"))
	assert.NoError(t, err)
}

func TestDirSkipsWhenAbsent(t *testing.T) {
	ok := t.Run("missing", func(t *testing.T) {
		Dir(t, "no-such-corpus-folder")
		t.Error("Dir should have skipped")
	})
	assert.True(t, ok)
}
