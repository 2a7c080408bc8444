package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/netns"
)

// sniffBin is the otas-sniff binary TestMain builds for the live tests (root
// only); empty otherwise.
var sniffBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 || testing.Short() {
		os.Exit(m.Run())
	}
	// World-readable, so the binary also runs as nobody.
	dir, err := os.MkdirTemp("", "otas-live-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "live tests:", err)
		os.Exit(1)
	}
	sniffBin = filepath.Join(dir, "otas-sniff")
	if out, err := exec.Command("go", "build", "-o", sniffBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "live tests: building otas-sniff: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needLive(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: live capture in network namespaces (run as root, as CI does)")
	}
	if testing.Short() || sniffBin == "" {
		t.Skip("live capture tests are skipped with -short")
	}
	t.Parallel()
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sniffer is one run of the otas-sniff binary inside a namespace.
type sniffer struct {
	cmd    *exec.Cmd
	out    string
	stderr *syncBuffer
	done   chan struct{}
	code   int
}

// startSniffer runs the binary in ns with events to a JSONL file and waits
// until it captures.
func startSniffer(t *testing.T, ns *netns.NS, args ...string) *sniffer {
	t.Helper()
	s := &sniffer{out: filepath.Join(t.TempDir(), "events.jsonl"), stderr: &syncBuffer{}, done: make(chan struct{})}
	args = append(args, "-o", "jsonl:"+s.out)
	s.cmd = ns.Command(context.Background(), sniffBin, args...)
	s.cmd.Stderr = s.stderr
	require.NoError(t, s.cmd.Start())
	go func() {
		s.cmd.Wait()
		s.code = s.cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.After(10 * time.Second)
	for !strings.Contains(s.stderr.String(), "msg=capturing") {
		select {
		case <-s.done:
			t.Fatalf("otas-sniff %s exited with %d before capturing:\n%s", strings.Join(args, " "), s.code, s.stderr)
		case <-deadline:
			t.Fatalf("otas-sniff did not start capturing:\n%s", s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return s
}

// wait waits for the sniffer to exit and returns its exit code.
func (s *sniffer) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(timeout):
		t.Fatalf("otas-sniff still running after %v:\n%s", timeout, s.stderr)
	}
	return -1
}

// stop sends SIGTERM and waits for a clean exit.
func (s *sniffer) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, s.wait(t, 10*time.Second), "stderr:\n%s", s.stderr)
	t.Log(s.stderr)
}

func (s *sniffer) events(t *testing.T) []forwarder.Event {
	t.Helper()
	b, err := os.ReadFile(s.out)
	require.NoError(t, err)
	return events(t, string(b))
}

// testServer serves the test handler on every address given, inside ns:
// ?size=N answers N bytes, ?status=N with that status, ?sleep=MS after a
// pause, ?close=1 closes the connection after the response.
func testServer(t *testing.T, ns *netns.NS, addrs ...string) {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		q := r.URL.Query()
		if ms, _ := strconv.Atoi(q.Get("sleep")); ms > 0 {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if q.Get("close") == "1" {
			w.Header().Set("Connection", "close")
		}
		size, _ := strconv.Atoi(q.Get("size"))
		status := http.StatusOK
		if s, _ := strconv.Atoi(q.Get("status")); s != 0 {
			status = s
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(status)
		w.Write(bytes.Repeat([]byte("x"), size))
	})
	for _, a := range addrs {
		l, err := ns.Listen("tcp", a)
		require.NoError(t, err)
		srv := &http.Server{Handler: h}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}
}

// call is one exchange as the client saw it.
type call struct {
	method, path     string
	status           int
	reqSize, resSize int
	latency          time.Duration
	done             time.Time // when the client had the whole response
	err              error
}

// client makes requests from inside a namespace on keep-alive connections.
type client struct {
	http *http.Client
}

func newClient(ns *netns.NS) *client {
	return &client{http: &http.Client{
		Transport: &http.Transport{DialContext: ns.DialContext, MaxIdleConnsPerHost: 8},
		Timeout:   30 * time.Second,
	}}
}

// do makes one request; latency runs from having a connection to having read
// the whole response, which is what the sniffer sees from the wire.
func (c *client) do(ctx context.Context, method, url string, body int) call {
	r := call{method: method, reqSize: body}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(bytes.Repeat([]byte("b"), body)))
	if err != nil {
		r.err = err
		return r
	}
	r.path = req.URL.Path
	var start time.Time
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { start = time.Now() },
	}))
	resp, err := c.http.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.done = time.Now()
	r.latency = r.done.Sub(start)
	r.status, r.resSize, r.err = resp.StatusCode, int(n), err
	return r
}

// curl makes requests with curl from inside ns on one connection and
// returns what it measured.
func curlCalls(t *testing.T, ns *netns.NS, urls ...string) []call {
	t.Helper()
	args := []string{"-s", "--max-time", "20", "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total} %{time_connect}\n"}
	for _, u := range urls {
		args = append(args, "-o", "/dev/null", u)
	}
	out := ns.MustRun(t, "curl", args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, len(urls), "curl output: %s", out)
	var calls []call
	for i, l := range lines {
		var status, size int
		var ttfb, total, connect float64
		_, err := fmt.Sscanf(l, "%d %d %f %f %f", &status, &size, &ttfb, &total, &connect)
		require.NoError(t, err, l)
		u, err := url.Parse(urls[i])
		require.NoError(t, err)
		calls = append(calls, call{method: "GET", path: u.Path, status: status, resSize: size,
			latency: time.Duration((total - connect) * float64(time.Second)), done: time.Now()})
	}
	return calls
}

// matchCalls checks that every call appears exactly once among the events,
// with the right method, status, sizes and a latency within tol of what the
// client measured (tol 0: latency not checked), and that no other event is
// there.
func matchCalls(t *testing.T, evs []forwarder.Event, calls []call, tol time.Duration) {
	t.Helper()
	byPath := map[string][]forwarder.Event{}
	outliers := 0
	for _, ev := range evs {
		byPath[ev.Path] = append(byPath[ev.Path], ev)
	}
	for _, c := range calls {
		require.NoError(t, c.err)
		got := byPath[c.path]
		if !assert.Len(t, got, 1, "events for %s %s", c.method, c.path) || len(got) == 0 {
			continue
		}
		ev := got[0]
		assert.Equal(t, c.method, ev.Method, c.path)
		assert.Equal(t, c.status, ev.StatusCode, c.path)
		assert.Equal(t, int64(c.reqSize), ev.RequestSizeBytes, c.path)
		assert.Equal(t, int64(c.resSize), ev.ResponseSizeBytes, c.path)
		assert.Empty(t, ev.Error, c.path)
		if tol > 0 {
			// The wire cannot take longer than the client saw (1 ms for clock
			// reading); the client's own scheduling may add to its figure.
			client := float64(c.latency) / float64(time.Millisecond)
			assert.LessOrEqual(t, ev.LatencyMS, client+1, "%s: latency on the wire above the client's", c.path)
			if client-ev.LatencyMS > float64(tol)/float64(time.Millisecond) {
				outliers++
				t.Logf("%s: latency %.3f ms on the wire, %.3f ms at the client", c.path, ev.LatencyMS, client)
			}
		}
		delete(byPath, c.path)
	}
	// A GC pause or preemption in the test process delays some clients: go
	// test runs the other packages' tests on the same CPUs at once, and 5 of
	// 31 clients were late by more than tol under that load. A sniffer that
	// timed the wrong span of an exchange would be off on every call.
	assert.LessOrEqual(t, outliers, len(calls)/3, "latencies more than %v below the client's", tol)
	for path, evs := range byPath {
		t.Errorf("unexpected events for %s: %d", path, len(evs))
	}
}

// concurrentCalls runs workers clients in ns at once, each making n calls with
// do, and returns every call.
func concurrentCalls(ns *netns.NS, workers, n int, do func(c *client, w, i int) call) []call {
	var mu sync.Mutex
	var calls []call
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(ns)
			for i := range n {
				cl := do(c, w, i)
				mu.Lock()
				calls = append(calls, cl)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return calls
}

// settle gives the sniffer a moment to read the last packets before it is
// stopped; events must come out within a second on an idle link.
func settle() { time.Sleep(300 * time.Millisecond) }

// latencyTol is how far the latency on the wire may be from the client's.
const latencyTol = 5 * time.Millisecond

// TestLiveIPv4 sniffs a veth: a Go keep-alive client and curl, several
// methods, bodies and statuses, and -w writes a pcap that replays to the same
// exchanges.
func TestLiveIPv4(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	base := "http://" + p.ServerV4.String() + ":8000"
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	pcapFile := filepath.Join(t.TempDir(), "debug.pcap")
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000", "-w", pcapFile)

	c := newClient(p.Client)
	var calls []call
	methods := []string{"GET", "POST", "PUT", "DELETE", "PATCH"}
	for i := range 40 {
		m := methods[i%len(methods)]
		body := 0
		if m == "POST" || m == "PUT" {
			body = i * 997
		}
		status := []int{200, 201, 404, 500}[i%4]
		calls = append(calls, c.do(context.Background(), m, fmt.Sprintf("%s/go/%d?size=%d&status=%d", base, i, i*1531, status), body))
	}
	var urls []string
	for i := range 5 {
		urls = append(urls, fmt.Sprintf("%s/curl/%d?size=%d", base, i, i*40000))
	}
	calls = append(calls, curlCalls(t, p.Client, urls...)...)
	settle()
	s.stop(t)
	evs := s.events(t)
	matchCalls(t, evs, calls, latencyTol)
	for _, ev := range evs {
		assert.Equal(t, p.ServerDev, ev.Metadata.Source)
		assert.Equal(t, p.ServerV4.String()+":8000", ev.Metadata.Server)
	}
	require.Contains(t, s.stderr.String(), fmt.Sprintf("%d exchanges", len(calls)))

	// The written capture replays to the same exchanges.
	r := runCmd(t, "", "replay", pcapFile, "-o", "jsonl:-")
	require.Equal(t, 0, r.code, r.stderr)
	matchCalls(t, events(t, r.stdout), calls, latencyTol)
}

// TestLiveAnyIPv6 captures with -i any over IPv6, and on two interfaces at
// once (the veth and loopback) merged into one run.
func TestLiveAnyIPv6(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	addr := "[" + p.ServerV6.String() + "]:8000"
	p.Client.WaitReachable(t, addr)
	for _, iface := range [][]string{{"-i", "any"}, {"-i", p.ServerDev + ",lo"}} {
		s := startSniffer(t, p.Server, append(iface, "-p", "8000")...)
		c := newClient(p.Client)
		var calls []call
		for i := range 20 {
			calls = append(calls, c.do(context.Background(), "GET", fmt.Sprintf("http://%s/v6/%d?size=%d", addr, i, i*3000), 0))
		}
		calls = append(calls, curlCalls(t, p.Client, "http://"+addr+"/v6/curl?size=100000")...)
		// Loopback traffic inside the server namespace.
		local := newClient(p.Server)
		for i := range 5 {
			calls = append(calls, local.do(context.Background(), "GET", fmt.Sprintf("http://[::1]:8000/lo/%d?size=10", i), 0))
		}
		settle()
		s.stop(t)
		matchCalls(t, s.events(t), calls, latencyTol)
	}
}

// TestLiveAFPacket runs the AF_PACKET engine with two fanout sockets: on a
// veth over IPv4 (with -w, whose raw-IP capture replays to the same
// exchanges), and on -i any over IPv6 with loopback traffic, which AF_PACKET
// sees twice unless the duplicate is filtered.
func TestLiveAFPacket(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	engine := []string{"--engine", "afpacket", "--fanout", "2"}

	pcapFile := filepath.Join(t.TempDir(), "debug.pcap")
	s := startSniffer(t, p.Server, append(engine, "-i", p.ServerDev, "-p", "8000", "-w", pcapFile)...)
	c := newClient(p.Client)
	var calls []call
	for i := range 30 {
		calls = append(calls, c.do(context.Background(), "POST", fmt.Sprintf("http://%s:8000/af/%d?size=%d", p.ServerV4, i, i*2531), i*1013))
	}
	calls = append(calls, curlCalls(t, p.Client, fmt.Sprintf("http://%s:8000/af/curl?size=200000", p.ServerV4))...)
	settle()
	s.stop(t)
	matchCalls(t, s.events(t), calls, latencyTol)
	require.Contains(t, s.stderr.String(), "engine=afpacket")
	r := runCmd(t, "", "replay", pcapFile, "-o", "jsonl:-")
	require.Equal(t, 0, r.code, r.stderr)
	matchCalls(t, events(t, r.stdout), calls, latencyTol)

	addr := "[" + p.ServerV6.String() + "]:8000"
	s = startSniffer(t, p.Server, append(engine, "-i", "any", "-p", "8000")...)
	calls = nil
	for i := range 10 {
		calls = append(calls, c.do(context.Background(), "GET", fmt.Sprintf("http://%s/af6/%d?size=%d", addr, i, i*3000), 0))
	}
	local := newClient(p.Server)
	for i := range 5 {
		calls = append(calls, local.do(context.Background(), "GET", fmt.Sprintf("http://[::1]:8000/aflo/%d?size=10", i), 0))
	}
	settle()
	s.stop(t)
	matchCalls(t, s.events(t), calls, latencyTol)
}

// TestLivePorts: a list and a range given with -p are captured; other ports
// are not.
func TestLivePorts(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000", ":8081", ":8089", ":9000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000,8080-8089")
	c := newClient(p.Client)
	var calls []call
	for i := range 10 {
		for _, port := range []int{8000, 8081, 8089, 9000} {
			cl := c.do(context.Background(), "GET", fmt.Sprintf("http://%s:%d/p%d/%d?size=%d", p.ServerV4, port, port, i, 100+i), 0)
			if port != 9000 {
				calls = append(calls, cl)
			}
		}
	}
	settle()
	s.stop(t)
	matchCalls(t, s.events(t), calls, latencyTol)
}

// TestLivePacketLoss drops 3% of TCP packets on both sides with nftables; the
// kernel retransmits and every exchange still comes out whole.
func TestLivePacketLoss(t *testing.T) {
	needLive(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	p := netns.NewPair(t)
	for _, ns := range []*netns.NS{p.Client, p.Server} {
		ns.MustRun(t, "nft", "add", "table", "inet", "loss")
		ns.MustRun(t, "nft", "add", "chain", "inet", "loss", "c", "{ type filter hook output priority 0; }")
		ns.MustRun(t, "nft", "add", "rule", "inet", "loss", "c", "meta", "l4proto", "tcp", "numgen", "random", "mod", "100", "<", "3", "drop")
	}
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000")
	calls := concurrentCalls(p.Client, 4, 40, func(c *client, w, i int) call {
		return c.do(context.Background(), "POST", fmt.Sprintf("http://%s:8000/loss/%d/%d?size=%d", p.ServerV4, w, i, (i%5)*20000), (i%3)*5000)
	})
	// A lost last segment is retransmitted after 200 ms or more.
	time.Sleep(time.Second)
	s.stop(t)
	// Retransmissions stretch latencies both ways; the count, statuses and
	// sizes are what must survive.
	matchCalls(t, s.events(t), calls, 0)
}

// TestLiveReorderDuplicate sends every frame through a user-space forwarder
// that swaps and duplicates frames.
func TestLiveReorderDuplicate(t *testing.T) {
	needLive(t)
	r := netns.NewRouted(t, netns.Impairment{SwapPercent: 10, DupPercent: 5})
	testServer(t, r.Server, ":8000")
	r.Client.WaitReachable(t, r.ServerV4.String()+":8000")
	s := startSniffer(t, r.Server, "-i", r.ServerDev, "-p", "8000")
	calls := concurrentCalls(r.Client, 3, 30, func(c *client, w, i int) call {
		return c.do(context.Background(), "PUT", fmt.Sprintf("http://%s:8000/ro/%d/%d?size=%d", r.ServerV4, w, i, (i%4)*15000), (i%2)*12000)
	})
	settle()
	s.stop(t)
	t.Logf("forwarder: %d frames, %d swapped, %d duplicated", r.Stats.Frames.Load(), r.Stats.Swapped.Load(), r.Stats.Duplicated.Load())
	require.NotZero(t, r.Stats.Swapped.Load())
	require.NotZero(t, r.Stats.Duplicated.Load())
	matchCalls(t, s.events(t), calls, 0)
}

// TestLiveServerCloses: the server closes the connection after each response.
func TestLiveServerCloses(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000")
	c := newClient(p.Client)
	var calls []call
	for i := range 15 {
		calls = append(calls, c.do(context.Background(), "GET", fmt.Sprintf("http://%s:8000/close/%d?close=1&size=%d", p.ServerV4, i, i*2000), 0))
	}
	settle()
	s.stop(t)
	matchCalls(t, s.events(t), calls, latencyTol)
	require.Contains(t, s.stderr.String(), "15 exchanges, 0 unmatched requests, 0 unmatched responses")
}

// TestLiveSIGTERM stops the sniffer in the middle of traffic: every exchange
// the clients completed before the signal appears exactly once, and requests
// still waiting for their response appear with the error "capture stopped".
func TestLiveSIGTERM(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000", "--stats-interval", "200ms")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var calls []call
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(p.Client)
			for i := 0; ctx.Err() == nil; i++ {
				cl := c.do(ctx, "GET", fmt.Sprintf("http://%s:8000/busy/%d/%d?size=%d", p.ServerV4, w, i, i%7*1000), 0)
				mu.Lock()
				calls = append(calls, cl)
				mu.Unlock()
				// Steady traffic, about 1,000 requests/s in all: this is about
				// stopping, not throughput.
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	// Requests the server answers only after the stop.
	slow := newClient(p.Client)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slow.do(ctx, "GET", fmt.Sprintf("http://%s:8000/slow/%d?sleep=5000", p.ServerV4, i), 0)
		}()
	}
	time.Sleep(700 * time.Millisecond)
	sentAt := time.Now()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, s.wait(t, 10*time.Second), s.stderr.String())
	cancel()
	wg.Wait()
	t.Log(s.stderr)

	evs := s.events(t)
	seen := map[string]forwarder.Event{}
	for _, ev := range evs {
		_, dup := seen[ev.Path]
		require.False(t, dup, "%s emitted twice", ev.Path)
		seen[ev.Path] = ev
	}
	completed := 0
	for _, c := range calls {
		if c.err != nil || !c.done.Before(sentAt) {
			continue
		}
		completed++
		ev, ok := seen[c.path]
		if assert.True(t, ok, "%s completed before SIGTERM but was not emitted", c.path) {
			assert.Empty(t, ev.Error, c.path)
			assert.Equal(t, c.status, ev.StatusCode, c.path)
			assert.Equal(t, int64(c.resSize), ev.ResponseSizeBytes, c.path)
		}
	}
	require.Greater(t, completed, 20)
	for i := range 3 {
		ev, ok := seen[fmt.Sprintf("/slow/%d", i)]
		if assert.True(t, ok, "pending /slow/%d not emitted", i) {
			assert.Equal(t, "capture stopped", ev.Error)
			assert.Zero(t, ev.StatusCode)
		}
	}
}

// TestLiveDurationAndCount: --duration and --count end a run by themselves
// with exit 0.
func TestLiveDurationAndCount(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	c := newClient(p.Client)

	start := time.Now()
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000", "--duration", "1500ms")
	var calls []call
	for i := range 5 {
		calls = append(calls, c.do(context.Background(), "GET", fmt.Sprintf("http://%s:8000/d/%d", p.ServerV4, i), 0))
	}
	require.Equal(t, 0, s.wait(t, 5*time.Second), s.stderr.String())
	require.Less(t, time.Since(start), 4*time.Second)
	matchCalls(t, s.events(t), calls, latencyTol)

	s = startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000", "--count", "5")
	calls = nil
	for i := 0; i < 20 && !exited(s); i++ {
		calls = append(calls, c.do(context.Background(), "GET", fmt.Sprintf("http://%s:8000/c/%d", p.ServerV4, i), 0))
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, 0, s.wait(t, 5*time.Second), s.stderr.String())
	matchCalls(t, s.events(t), calls[:5], latencyTol)
}

func exited(s *sniffer) bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// TestLiveBadInput: each mistake gives one clear line and its exit code.
func TestLiveBadInput(t *testing.T) {
	needLive(t)
	ns := netns.New(t, "otx")
	run := func(args ...string) (int, string) {
		var stderr bytes.Buffer
		cmd := ns.Command(context.Background(), sniffBin, append(args, "-o", "jsonl:-")...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, stderr.String()
	}
	code, msg := run("-i", "nosuch0", "-p", "8000")
	assert.Equal(t, exitInterface, code, msg)
	assert.Contains(t, msg, "nosuch0")
	assert.Contains(t, msg, "these exist: ")
	assert.Contains(t, msg, "lo")

	code, msg = run("-i", "lo", "-f", "tcp port 8000 and hots 10.0.0.5")
	assert.Equal(t, exitUsage, code, msg)
	assert.Contains(t, msg, "unknown port 'hots'", "libpcap's own message")

	for _, bad := range []string{"70000", "0", "8090-8080", "http"} {
		code, msg = run("-i", "lo", "-p", bad)
		assert.Equal(t, exitUsage, code, "-p %s: %s", bad, msg)
		assert.Contains(t, msg, "--port", bad)
	}

	code, msg = run("-p", "8000")
	assert.Equal(t, exitUsage, code, msg)
	assert.Contains(t, msg, "-i")

	for args, want := range map[string]string{
		"--engine dpdk":                "--engine must be libpcap or afpacket",
		"--fanout 2":                   "--fanout needs --engine afpacket",
		"--engine afpacket --fanout 0": "--fanout must be from 1 to 64",
	} {
		code, msg = run(append([]string{"-i", "lo"}, strings.Fields(args)...)...)
		assert.Equal(t, exitUsage, code, "%s: %s", args, msg)
		assert.Contains(t, msg, want, args)
	}
	code, msg = run("-i", "nosuch0", "--engine", "afpacket")
	assert.Equal(t, exitInterface, code, msg)
	assert.Contains(t, msg, "nosuch0")

	// No privileges: the binary run as nobody.
	var stderr bytes.Buffer
	cmd := ns.Command(context.Background(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sniffBin, "-i", "lo", "-p", "8000", "-o", "jsonl:-")
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	require.True(t, ok, "as nobody: %v %s", err, stderr.String())
	assert.Equal(t, exitPermission, ee.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "sudo")
	assert.Contains(t, stderr.String(), "setcap cap_net_raw,cap_net_admin+eip")
	for _, out := range []string{msg, stderr.String()} {
		assert.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one line: %q", out)
	}
}

// TestLiveInterfaceDeleted removes the interface mid-run: exit 6, and what was
// captured before is emitted.
func TestLiveInterfaceDeleted(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	s := startSniffer(t, p.Server, "-i", p.ServerDev, "-p", "8000")
	c := newClient(p.Client)
	var calls []call
	for i := range 10 {
		calls = append(calls, c.do(context.Background(), "GET", fmt.Sprintf("http://%s:8000/gone/%d?size=500", p.ServerV4, i), 0))
	}
	settle()
	p.Server.MustIP(t, "link", "del", p.ServerDev)
	require.Equal(t, exitInterface, s.wait(t, 5*time.Second), s.stderr.String())
	require.Contains(t, s.stderr.String(), p.ServerDev+": interface is down")
	matchCalls(t, s.events(t), calls, latencyTol)
}

// TestLivePrivilegesDropped reads the running sniffer's /proc status: no
// capability left in any thread, with and without --user.
func TestLivePrivilegesDropped(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	for _, tc := range []struct {
		args []string
		uid  string
	}{{nil, "0"}, {[]string{"--user", "nobody"}, "65534"}} {
		s := startSniffer(t, p.Server, append([]string{"-i", p.ServerDev, "-p", "8000"}, tc.args...)...)
		pid := s.cmd.Process.Pid
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		require.NoError(t, err)
		require.NotEmpty(t, tasks)
		for _, path := range append([]string{fmt.Sprintf("/proc/%d/status", pid)}, tasks...) {
			st := procStatus(t, path)
			for _, k := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"} {
				assert.Equal(t, "0000000000000000", st[k], "%s %s (args %v)", path, k, tc.args)
			}
			assert.Equal(t, "1", st["NoNewPrivs"], path)
			assert.Equal(t, tc.uid, strings.Fields(st["Uid"])[0], path)
		}
		// Capture goes on without them.
		c := newClient(p.Client)
		calls := []call{c.do(context.Background(), "GET", fmt.Sprintf("http://%s:8000/priv/%s", p.ServerV4, tc.uid), 0)}
		settle()
		s.stop(t)
		matchCalls(t, s.events(t), calls, latencyTol)
	}
}

func procStatus(t *testing.T, path string) map[string]string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestInterfacesCommand lists a namespace's interfaces with their addresses.
func TestInterfacesCommand(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	out := p.Server.MustRun(t, sniffBin, "interfaces")
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, p.ServerDev+" ") {
			line = l
		}
	}
	require.NotEmpty(t, line, out)
	assert.Contains(t, line, "up,running")
	assert.Contains(t, line, p.ServerV4.String()+"/24")
	assert.Contains(t, line, p.ServerV6.String()+"/64")
	assert.Regexp(t, `(?m)^lo\s+up,running,loopback\s.*127\.0\.0\.1/8.*local traffic only`, out)
	assert.Regexp(t, `(?m)^any\s`, out)
}
