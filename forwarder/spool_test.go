package forwarder

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func records(n, size int) []spoolRecord {
	out := make([]spoolRecord, n)
	for i := range out {
		out[i] = spoolRecord{attempts: uint8(i % 3), token: fmt.Sprintf("tok-%d", i), data: []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", size)))}
	}
	return out
}

func TestSpoolRoundTrip(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20, nil, nil)
	require.NoError(t, err)
	want := records(50, 10)
	n, err := sp.append(want)
	require.NoError(t, err)
	require.Equal(t, 50, n)
	ev, b := sp.backlog()
	assert.EqualValues(t, 50, ev)
	assert.Positive(t, b)

	_, err = openSpool(dir, 1<<20, nil, nil)
	assert.ErrorContains(t, err, "in use", "one process per spool")

	seg, got, err := sp.take()
	require.NoError(t, err)
	require.NotNil(t, seg)
	assert.Equal(t, want, got)
	fi, err := os.Stat(seg.path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "spool files hold session tokens")
	sp.done(seg)
	ev, _ = sp.backlog()
	assert.Zero(t, ev)
	require.NoError(t, sp.close())
	files, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	assert.Empty(t, files)
}

func TestSpoolCapDropsOldest(t *testing.T) {
	dir := t.TempDir()
	var dropped int
	sp, err := openSpool(dir, 256<<10, func(n int) { dropped += n }, nil)
	require.NoError(t, err)
	defer sp.close()
	total := 0
	for range 40 {
		n, err := sp.append(records(10, 1000))
		require.NoError(t, err)
		total += n
	}
	ev, b := sp.backlog()
	assert.LessOrEqual(t, b, int64(256<<10), "under the cap")
	assert.Positive(t, dropped)
	assert.EqualValues(t, total, int(ev)+dropped, "every record held or counted")
	seg, recs, err := sp.take()
	require.NoError(t, err)
	require.NotNil(t, seg)
	assert.NotEqual(t, `{"i":0,`, string(recs[0].data[:7]), "the oldest went first")
}

func TestSpoolSurvivesRestartAndTornTail(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20, nil, nil)
	require.NoError(t, err)
	_, err = sp.append(records(5, 10))
	require.NoError(t, err)
	rec := encodeRecord(nil, records(1, 10)[0])
	_, err = sp.cur.Write(rec[:5])
	require.NoError(t, err)
	require.NoError(t, sp.close())

	var corrupt int
	sp, err = openSpool(dir, 1<<20, nil, func(n int) { corrupt += n })
	require.NoError(t, err)
	defer sp.close()
	assert.Equal(t, 1, corrupt)
	ev, _ := sp.backlog()
	assert.EqualValues(t, 5, ev)
	_, err = sp.append(records(2, 10))
	require.NoError(t, err)
	var got int
	for {
		seg, recs, err := sp.take()
		require.NoError(t, err)
		if seg == nil {
			break
		}
		got += len(recs)
		sp.done(seg)
	}
	assert.Equal(t, 7, got)
}
