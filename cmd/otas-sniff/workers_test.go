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

// TestPlacement checks how connections are placed on workers: a slot keeps
// its worker while its connections may be open, whatever the load says, and
// is placed anew only after the idle timeout (plus the reorder wait and the
// scan's second) without a segment.
func TestPlacement(t *testing.T) {
	opts := reassembly.Options{IdleTimeout: 10 * time.Second, ReorderWait: 2 * time.Second}
	base := time.Unix(0, 0) // a capture whose clock starts at 0 still counts as seen
	type step struct {
		hash   uint64
		at     time.Duration // capture time since base
		pick   int           // what the load would choose now
		want   int
		picked bool // whether the load was asked
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a connection stays on its first worker", []step{
			{hash: 7, at: 0, pick: 1, want: 1, picked: true},
			{hash: 7, at: time.Second, pick: 0, want: 1},
			{hash: 7, at: 13 * time.Second, pick: 0, want: 1}, // 12 s after its last segment
			{hash: 7, at: 27 * time.Second, pick: 0, want: 1}, // 14 s after: the limit itself
		}},
		{"an idle slot is placed anew", []step{
			{hash: 7, at: 0, pick: 1, want: 1, picked: true},
			{hash: 7, at: 14*time.Second + 1, pick: 0, want: 0, picked: true},
			{hash: 7, at: 15 * time.Second, pick: 1, want: 0},
		}},
		{"connections in one slot share a worker", []step{
			{hash: 3, at: 0, pick: 2, want: 2, picked: true},
			{hash: 3 + placementSlots, at: time.Second, pick: 0, want: 2},
			{hash: 4, at: time.Second, pick: 0, want: 0, picked: true},
		}},
		{"any segment keeps a slot alive", []step{
			{hash: 9, at: 0, pick: 1, want: 1, picked: true},
			{hash: 9 + 5*placementSlots, at: 10 * time.Second, pick: 0, want: 1},
			{hash: 9, at: 20 * time.Second, pick: 0, want: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl := newPlacement(opts)
			for i, s := range tc.steps {
				picked := false
				got := pl.worker(s.hash, base.Add(s.at), func() int { picked = true; return s.pick })
				assert.Equal(t, s.want, got, "step %d", i)
				assert.Equal(t, s.picked, picked, "step %d: whether the load was asked", i)
			}
		})
	}
}

// TestLeastLoaded checks the choice of worker for a new connection: the one
// with the fewest items handed to it and not yet worked through, counting the
// round being filled; ties go round in turn.
func TestLeastLoaded(t *testing.T) {
	p := &pipeline{}
	for range 3 {
		p.workers = append(p.workers, &worker{filling: &batch{}})
	}
	load := func(handed, filling, done []int) {
		for i, w := range p.workers {
			w.handed = uint64(handed[i])
			w.filling.items = make([]workItem, filling[i])
			w.done.Store(uint64(done[i]))
		}
	}
	load([]int{0, 0, 0}, []int{0, 0, 0}, []int{0, 0, 0})
	assert.Equal(t, []int{1, 2, 0, 1}, []int{p.leastLoaded(), p.leastLoaded(), p.leastLoaded(), p.leastLoaded()}, "ties in turn")
	load([]int{3000, 1000, 2000}, []int{0, 0, 0}, []int{2500, 0, 1000})
	assert.Equal(t, 0, p.leastLoaded(), "500 queued against 1,000 and 1,000")
	load([]int{3000, 1000, 2000}, []int{600, 0, 0}, []int{2500, 0, 1000})
	assert.Equal(t, 1, p.leastLoaded(), "the round being filled counts")
}

// TestHandOrder checks that each round is handed out from the next worker,
// so that no worker always starts its round first (see nextFirst).
func TestHandOrder(t *testing.T) {
	p := &pipeline{}
	for range 3 {
		p.workers = append(p.workers, &worker{})
	}
	var got [][]int
	for range 4 {
		first := p.nextFirst()
		var order []int
		for k := range p.workers {
			order = append(order, (first+k)%len(p.workers))
		}
		got = append(got, order)
	}
	assert.Equal(t, [][]int{{0, 1, 2}, {1, 2, 0}, {2, 0, 1}, {0, 1, 2}}, got)
}

// TestPlacementAcrossIdleTimeout replays a connection that goes quiet past
// the idle timeout and then sends again (its stream was closed, so the rest is
// a new stream picked up mid-connection), among others: with two workers its
// slot may move to the other worker, and the events must be those of one
// worker.
func TestPlacementAcrossIdleTimeout(t *testing.T) {
	w := pcapgen.New(pcapgen.Options{Step: time.Millisecond, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	server := netip.MustParseAddrPort("10.2.0.1:8000")
	quiet := w.Conn(netip.MustParseAddrPort("10.1.0.1:40000"), server)
	quiet.Handshake()
	quiet.Client([]byte("GET /before HTTP/1.1\r\nHost: a\r\n\r\n"))
	for i := range 20 {
		c := w.Conn(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 1, byte(i)}), 41000), server)
		c.Handshake()
		c.Client(fmt.Appendf(nil, "GET /busy/%d HTTP/1.1\r\nHost: a\r\n\r\n", i))
		c.Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		c.Close()
	}
	w.Advance(20 * time.Second) // past --idle-timeout 5s + 2 s + 2 s
	quiet.Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	quiet.Client([]byte("GET /after HTTP/1.1\r\nHost: a\r\n\r\n"))
	quiet.Server([]byte("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"))
	quiet.Close()
	path := filepath.Join(t.TempDir(), "quiet.pcap")
	require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))

	summary := func(evs []forwarder.Event) []string {
		var s []string
		for _, ev := range evs {
			s = append(s, fmt.Sprintf("%s %d %q", ev.Path, ev.StatusCode, ev.Error))
		}
		return s
	}
	one, r := replay(t, []string{path}, "-q", "--workers", "1", "--idle-timeout", "5s")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, summary(one), `/before 0 "no response"`)
	require.Contains(t, summary(one), `/after 201 ""`)
	for range 5 { // the placement depends on the workers' progress
		two, r := replay(t, []string{path}, "-q", "--workers", "2", "--idle-timeout", "5s")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, summary(one), summary(two))
	}
}

// A request answered after longer than --idle-timeout, on a connection kept
// alive meanwhile by ACKs alone, is paired with its answer: most of those ACKs
// are dropped before reassembly (reassembly.ACKFilter), but enough of them
// reach it to keep the connection open. Without them it times out.
func TestACKsKeepSlowAnswerPaired(t *testing.T) {
	for _, tt := range []struct {
		name  string
		every time.Duration // between the client's ACKs; 0: none
		want  string
	}{
		{"no ACKs", 0, `/slow 0 "no response"`},
		{"an ACK every 100 ms", 100 * time.Millisecond, `/slow 200 ""`},
		{"an ACK every 2 s", 2 * time.Second, `/slow 200 ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := pcapgen.New(pcapgen.Options{Step: time.Millisecond, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
			c := w.Conn(netip.MustParseAddrPort("10.1.0.1:40000"), netip.MustParseAddrPort("10.2.0.1:8000"))
			c.Handshake()
			c.Client([]byte("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"))
			// 12 s of waiting for the answer, past --idle-timeout 5s.
			const wait = 12 * time.Second
			if tt.every == 0 {
				w.Advance(wait)
			}
			for waited := time.Duration(0); tt.every > 0 && waited < wait; waited += tt.every {
				w.Advance(tt.every)
				c.Emit(pcapgen.Segment{Seq: c.ClientSeq(), Ack: c.ServerSeq(), ACK: true})
			}
			c.Server([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			c.Close()
			path := filepath.Join(t.TempDir(), "slow.pcap")
			require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))
			for _, workers := range []string{"1", "2"} {
				evs, r := replay(t, []string{path}, "-q", "--workers", workers, "--idle-timeout", "5s")
				require.Equal(t, 0, r.code, r.stderr)
				require.Len(t, evs, 1, r.stderr)
				assert.Equal(t, tt.want, fmt.Sprintf("%s %d %q", evs[0].Path, evs[0].StatusCode, evs[0].Error), "%s workers", workers)
			}
		})
	}
}
