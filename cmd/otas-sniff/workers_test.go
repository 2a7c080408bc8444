package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/pcapgen"
	"github.com/otas/otas-sniff/internal/trafficgen"
	"github.com/otas/otas-sniff/reassembly"
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

// TestFlushHandsOnEvents ends a capture with 5,000 connections each waiting for
// a response, on two workers: each flushes ~2,500 streams at once, and hands
// their events to the merge maxHeldEvents at a time instead of holding all of
// them (what made the end of such a replay the peak of its memory). Every
// waiting request still comes out, once, as with one worker.
func TestFlushHandsOnEvents(t *testing.T) {
	const conns = 5000
	w := pcapgen.New(pcapgen.Options{Step: time.Microsecond, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	server := netip.MustParseAddrPort("10.2.0.1:8000")
	for i := range conns {
		c := w.Conn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 40000), server)
		c.Handshake()
		c.Client(fmt.Appendf(nil, "GET /jobs/%d HTTP/1.1\r\nHost: api.test\r\n\r\n", i))
	}
	path := filepath.Join(t.TempDir(), "pending.pcap")
	require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))

	paths := func(workers int) ([]string, uint64) {
		var out bytes.Buffer
		var flags commonFlags
		flags.register(&cobra.Command{})
		flags.workers = workers
		cfg, err := flags.pipelineConfig()
		require.NoError(t, err)
		cfg.fwd = forwarder.New(forwarder.Options{}, forwarder.NewJSONLWriter("test", &out))
		src, err := capture.OpenFiles([]string{path}, capture.FileOptions{})
		require.NoError(t, err)
		defer src.Close()
		p := newPipeline(context.Background(), cfg)
		require.NoError(t, p.drain(context.Background(), src, reassembly.EndOfCapture))
		require.NoError(t, cfg.fwd.Close(context.Background()))
		var got []string
		for _, ev := range events(t, out.String()) {
			assert.Equal(t, "no response", ev.Error)
			got = append(got, ev.Path)
		}
		slices.Sort(got)
		return got, p.early
	}
	one, _ := paths(1)
	require.Len(t, one, conns)
	two, early := paths(2)
	assert.Equal(t, one, two)
	// ~2,500 streams per worker, 1,024 events per early batch: two each.
	assert.GreaterOrEqual(t, early, uint64(3), "batches handed on before the flush round ended")
}

// TestWorkersHeavyRounds replays a capture whose rounds each complete more
// than maxHeldEvents exchanges on one worker (one keep-alive connection, a
// request and a response segment each): the worker hands events on early in
// the middle of the capture, while the reader is rounds ahead, and the replay
// must still end, with every exchange, in order.
func TestWorkersHeavyRounds(t *testing.T) {
	const exchanges = 12000
	w := pcapgen.New(pcapgen.Options{Step: time.Microsecond, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	c := w.Conn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:8000"))
	c.Handshake()
	for i := range exchanges {
		c.Client(fmt.Appendf(nil, "GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n", i))
		c.Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	}
	path := filepath.Join(t.TempDir(), "heavy.pcap")
	require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))

	done := make(chan struct{})
	var got []forwarder.Event
	var r result
	go func() {
		defer close(done)
		got, r = replay(t, []string{path}, "-q", "--workers", "2")
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the replay with two workers did not end: the pipeline is stuck")
	}
	require.Equal(t, 0, r.code, r.stderr)
	require.Len(t, got, exchanges)
	for i, ev := range got {
		require.Equal(t, fmt.Sprintf("/n/%d", i), ev.Path)
	}
}
