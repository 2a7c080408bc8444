package main

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/trafficgen"
)

// TestWorkersKeepOrder replays generated keep-alive traffic with one worker and
// with several: connections are sharded across workers, and the merge puts the
// events back in the one-worker order, so the outputs are the same event for
// event (event ids aside) and in particular in response order per connection.
func TestWorkersKeepOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.pcap")
	f, err := os.Create(path)
	require.NoError(t, err)
	bw := bufio.NewWriter(f)
	_, err = trafficgen.Write(bw, trafficgen.Options{Exchanges: 3000, Concurrent: 40, Seed: 7})
	require.NoError(t, err)
	require.NoError(t, bw.Flush())
	require.NoError(t, f.Close())

	one, r := replay(t, []string{path}, "-q", "--workers", "1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Len(t, one, 3000)
	for _, workers := range []string{"2", "3"} {
		many, r := replay(t, []string{path}, "-q", "--workers", workers)
		require.Equal(t, 0, r.code, r.stderr)
		require.Len(t, many, len(one))
		for i := range one {
			a, b := one[i], many[i]
			a.Metadata.EventID, b.Metadata.EventID = "", ""
			if !assert.Equal(t, a, b, "event %d with %s workers", i, workers) {
				break
			}
		}
	}
}
