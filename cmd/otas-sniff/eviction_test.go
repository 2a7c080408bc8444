package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/pcapgen"
)

// TestMaxStreamsEvictsIdlest opens 50 connections, each with a request left
// waiting, under --max-streams 10: the idle longest are evicted (their
// requests come out with the eviction error, and the summary counts them), and
// an evicted connection that speaks again is parsed again.
func TestMaxStreamsEvictsIdlest(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{})
	server := netip.MustParseAddrPort("10.9.0.1:8000")
	var conns []*pcapgen.Conn
	for i := range 50 {
		c := w.Conn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 1, byte(i)}), 40000), server)
		c.Handshake()
		c.Client([]byte(fmt.Sprintf("GET /wait/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)))
		conns = append(conns, c)
	}
	// The first connection, long evicted, gets its answer and asks again.
	conns[0].Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	conns[0].Client([]byte("GET /again HTTP/1.1\r\nHost: h\r\n\r\n"))
	conns[0].Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain"))
	path := filepath.Join(t.TempDir(), "many.pcap")
	require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))

	for _, workers := range []string{"1", "2"} {
		t.Run("workers="+workers, func(t *testing.T) {
			evs, r := replay(t, []string{path}, "-q", "--max-streams", "10", "--workers", workers)
			require.Equal(t, 0, r.code, r.stderr)
			byErr := map[string]int{}
			var again bool
			for _, ev := range evs {
				byErr[ev.Error]++
				if ev.Path == "/again" {
					again = ev.StatusCode == 200 && ev.ResponseBody == "again"
				}
			}
			evicted := byErr["connection evicted (--max-streams)"]
			// 50 waiting requests: those still open at the end have no response.
			assert.Equal(t, 50, evicted+byErr["no response"], "%v", byErr)
			if workers == "1" {
				// 40 evicted as the others open, and one more when the first
				// connection comes back.
				assert.Equal(t, 41, evicted, "%v", byErr)
			} else {
				// Each of the two workers keeps at most 5.
				assert.GreaterOrEqual(t, evicted, 41, "%v", byErr)
			}
			assert.True(t, again, "an evicted connection that sends again is parsed again")
			assert.Contains(t, r.stderr, fmt.Sprintf(", %d streams evicted (--max-streams)", evicted))
		})
	}
}
