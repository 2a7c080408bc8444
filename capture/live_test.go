package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/netns"
)

// openIn opens a live source from inside a namespace: the capture socket
// belongs to the namespace of the thread that creates it.
func openIn(t *testing.T, ns *netns.NS, opts LiveOptions) (*LiveSource, error) {
	t.Helper()
	var src *LiveSource
	err := ns.Do(func() (err error) {
		src, err = OpenLive(opts)
		return err
	})
	if err == nil {
		t.Cleanup(func() { src.Close() })
	}
	return src, err
}

// serveIn runs an HTTP server on loopback inside ns and returns its address.
func serveIn(t *testing.T, ns *netns.NS) string {
	t.Helper()
	l, err := ns.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func get(t *testing.T, ns *netns.NS, url string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext}, Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
}

// engines are the capture engines every live test runs with.
var engines = []string{EngineLibpcap, EngineAFPacket}

// TestLiveLoopbackImmediate captures one exchange on an otherwise idle
// loopback and checks every packet arrives within a second, decoded.
func TestLiveLoopbackImmediate(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) { testLiveLoopbackImmediate(t, engine) })
	}
}

func testLiveLoopbackImmediate(t *testing.T, engine string) {
	ns := netns.New(t, "otl")
	addr := serveIn(t, ns)
	_, port, _ := net.SplitHostPort(addr)
	src, err := openIn(t, ns, LiveOptions{Interfaces: []string{"lo"}, Filter: "tcp port " + port, Immediate: true, Engine: engine})
	require.NoError(t, err)
	require.Equal(t, []LiveInterface{{Name: "lo", LinkType: src.Interfaces()[0].LinkType, SnapLen: DefaultSnapLen}}, src.Interfaces())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.Start(ctx)

	sent := time.Now()
	get(t, ns, "http://"+addr+"/first")
	var req, resp bool
	deadline := time.After(time.Second)
	for !(req && resp) {
		select {
		case p := <-src.Packets():
			seg, ok := src.Decode(p)
			if ok {
				require.Equal(t, "lo", seg.Source)
				pl := string(seg.TCP.Payload)
				req = req || strings.HasPrefix(pl, "GET /first ")
				resp = resp || strings.Contains(pl, "hello /first")
				require.WithinDuration(t, sent, seg.CaptureInfo.Timestamp, time.Second)
			}
			src.Release(p)
		case <-deadline:
			t.Fatalf("request seen %v, response seen %v after 1s: packets are held back (immediate mode off?)", req, resp)
		}
	}
	cancel()
	for range src.Packets() {
		// Packets closes once the capture goroutine has seen the stop.
	}
	st := src.Stats()
	require.NotZero(t, st.TCPSegments)
	require.Zero(t, st.KernelDrops)
	require.Zero(t, st.QueueDrops)
	require.NoError(t, src.Err())
}

// TestLiveQueueBounded fills a tiny queue nobody reads: capture waits, the
// queue never holds more than its cap, the small kernel ring overflows and the
// kernel's drops are counted (refreshed while capture waits); Close still
// returns. A queue byte cap below the packet size drops and counts instead.
func TestLiveQueueBounded(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ns := netns.New(t, "otq")
			addr := serveIn(t, ns)
			src, err := openIn(t, ns, LiveOptions{Interfaces: []string{"lo"}, Filter: "tcp", Immediate: true, QueuePackets: 4,
				BufferSize: 1 << 20, Engine: engine})
			require.NoError(t, err)
			src.Start(context.Background())
			for i := range 300 {
				get(t, ns, fmt.Sprintf("http://%s/%d", addr, i))
			}
			require.Eventually(t, func() bool { return src.Stats().KernelDrops > 0 }, 3*time.Second, 10*time.Millisecond)
			require.LessOrEqual(t, len(src.Packets()), 4)
			require.Zero(t, src.Stats().QueueDrops)
			closed := make(chan struct{})
			go func() {
				src.Close()
				close(closed)
			}()
			select {
			case <-closed:
			case <-time.After(3 * time.Second):
				t.Fatal("Close hung on a capture goroutine waiting for queue room")
			}

			src, err = openIn(t, ns, LiveOptions{Interfaces: []string{"lo"}, Filter: "tcp", Immediate: true, QueueBytes: 40, Engine: engine})
			require.NoError(t, err)
			src.Start(context.Background())
			get(t, ns, "http://"+addr+"/big")
			require.Eventually(t, func() bool { return src.Stats().QueueDrops > 0 }, 2*time.Second, 10*time.Millisecond)
		})
	}
}

// TestLiveNext reads through the Source interface.
func TestLiveNext(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) { testLiveNext(t, engine) })
	}
}

func testLiveNext(t *testing.T, engine string) {
	ns := netns.New(t, "otn")
	addr := serveIn(t, ns)
	src, err := openIn(t, ns, LiveOptions{Interfaces: []string{"lo", "lo"}, Filter: "tcp", Immediate: true, Engine: engine})
	require.NoError(t, err)
	require.Len(t, src.Interfaces(), 1, "a repeated interface is opened once")
	var s Source = src
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go get(t, ns, "http://"+addr+"/next")
	for {
		seg, err := s.Next(ctx)
		require.NoError(t, err)
		if strings.HasPrefix(string(seg.TCP.Payload), "GET /next ") {
			break
		}
	}
	cancel()
	for {
		if _, err := s.Next(context.Background()); err != nil {
			require.ErrorIs(t, err, io.EOF)
			break
		}
	}
}

func TestLiveOpenErrors(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ns := netns.New(t, "ote")
			_, err := openIn(t, ns, LiveOptions{Interfaces: []string{"nosuch0"}, Immediate: true, Engine: engine})
			require.ErrorIs(t, err, ErrNoSuchInterface)
			require.Contains(t, err.Error(), "nosuch0")

			_, err = openIn(t, ns, LiveOptions{Interfaces: []string{"lo"}, Filter: "tcp port 99999", Immediate: true, Engine: engine})
			require.ErrorIs(t, err, ErrBadFilter)
			require.Contains(t, err.Error(), "99999")

			// A veth pair is created down.
			ns.MustIP(t, "link", "add", "vdown", "type", "veth", "peer", "name", "vdown2")
			_, err = openIn(t, ns, LiveOptions{Interfaces: []string{"vdown"}, Immediate: true, Engine: engine})
			require.ErrorIs(t, err, ErrInterfaceDown)
		})
	}
	_, err := OpenLive(LiveOptions{Interfaces: []string{"lo"}, Engine: "dpdk"})
	require.ErrorContains(t, err, `unknown capture engine "dpdk"`)
	_, err = OpenLive(LiveOptions{Interfaces: []string{"lo"}, Fanout: 2})
	require.ErrorContains(t, err, "fanout needs the afpacket engine")
}

// TestLiveInterfaceRemoved deletes the captured interface: capture stops with
// ErrInterfaceDown and what was queued stays readable.
func TestLiveInterfaceRemoved(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) { testLiveInterfaceRemoved(t, engine) })
	}
}

func testLiveInterfaceRemoved(t *testing.T, engine string) {
	a, b := netns.New(t, "ota"), netns.New(t, "otb")
	netns.Veth(t, a, "va", b, "vb")
	src, err := openIn(t, a, LiveOptions{Interfaces: []string{"va"}, Immediate: true, Engine: engine})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.Start(ctx)
	a.MustIP(t, "link", "del", "va")
	done := make(chan struct{})
	go func() {
		for p := range src.Packets() {
			src.Release(p)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("capture did not notice the interface was removed")
	}
	require.True(t, errors.Is(src.Err(), ErrInterfaceDown), "err = %v", src.Err())
	t.Log(src.Err())
}

// TestLiveAFPacketFanout spreads loopback traffic over four AF_PACKET sockets:
// every request is seen exactly once, and each connection's packets all come
// from one socket (so stay in order).
func TestLiveAFPacketFanout(t *testing.T) {
	ns := netns.New(t, "otf")
	addr := serveIn(t, ns)
	_, port, _ := net.SplitHostPort(addr)
	src, err := openIn(t, ns, LiveOptions{Interfaces: []string{"lo"}, Filter: "tcp port " + port, Immediate: true, Engine: EngineAFPacket, Fanout: 4})
	require.NoError(t, err)
	require.Len(t, src.Interfaces(), 1, "the fanout sockets are one interface")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src.Start(ctx)
	const n = 40
	for i := range n {
		get(t, ns, fmt.Sprintf("http://%s/fan/%d", addr, i))
	}
	seen := map[string]int{}
	deadline := time.After(3 * time.Second)
	for len(seen) < n {
		select {
		case p := <-src.Packets():
			if seg, ok := src.Decode(p); ok {
				if pl := string(seg.TCP.Payload); strings.HasPrefix(pl, "GET /fan/") {
					seen[strings.Fields(pl)[1]]++
				}
			}
			src.Release(p)
		case <-deadline:
			t.Fatalf("saw %d of %d requests", len(seen), n)
		}
	}
	cancel()
	for p := range src.Packets() {
		if seg, ok := src.Decode(p); ok {
			if pl := string(seg.TCP.Payload); strings.HasPrefix(pl, "GET /fan/") {
				seen[strings.Fields(pl)[1]]++
			}
		}
		src.Release(p)
	}
	for path, k := range seen {
		require.Equal(t, 1, k, path)
	}
	require.NoError(t, src.Err())
}
