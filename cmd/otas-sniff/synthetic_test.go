package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/pcapgen"
)

var (
	synClient = netip.MustParseAddrPort("10.9.0.1:40000")
	synServer = netip.MustParseAddrPort("10.9.0.2:8000")
)

func get(path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: api.test\r\n\r\n")
}

func ok(body string) []byte {
	return []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

// TestSyntheticCaptures replays captures built by the pcap writer for the cases
// real captures rarely show, through the whole pipeline, and checks the events.
func TestSyntheticCaptures(t *testing.T) {
	type want struct {
		triple string // "METHOD PATH STATUS"
		check  func(t *testing.T, ev forwarder.Event)
	}
	tests := []struct {
		name  string
		opts  pcapgen.Options
		build func(w *pcapgen.Writer)
		want  []want
	}{
		{
			name: "reordered segments",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client(get("/reordered"))
				segs := c.ServerSegments(ok(strings.Repeat("r", 3000)), 700)
				slices.Reverse(segs)
				c.Emit(segs...)
				c.Close()
			},
			want: []want{{triple: "GET /reordered 200", check: func(t *testing.T, ev forwarder.Event) {
				assert.Equal(t, strings.Repeat("r", 3000), ev.ResponseBody)
			}}},
		},
		{
			name: "duplicated and overlapping segments with conflicting bytes: the first copy wins",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client(get("/dup"))
				segs := c.ServerSegments(ok("0123456789abcdef"), 20)
				forged := segs[1]
				forged.Payload = bytes.ToUpper(forged.Payload)
				c.Emit(segs[0], segs[0], segs[1], forged)
				c.Emit(segs[2:]...)
				c.Close()
			},
			want: []want{{triple: "GET /dup 200", check: func(t *testing.T, ev forwarder.Event) {
				assert.Equal(t, "0123456789abcdef", ev.ResponseBody)
			}}},
		},
		{
			name: "a lost segment in a body keeps the pairing: the body is marked",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client(get("/gap"))
				segs := c.ServerSegments(ok(strings.Repeat("g", 4000)), 1000)
				c.Emit(segs[0], segs[2], segs[3], segs[4])
				w.Advance(3_000_000_000) // past the reorder wait
				c.Client(get("/after"))
				c.Server(ok("fine"))
				c.Close()
			},
			want: []want{
				{triple: "GET /gap 200", check: func(t *testing.T, ev forwarder.Event) {
					assert.Contains(t, ev.Metadata.Anomalies, "gap_in_body")
					assert.EqualValues(t, 4000, ev.ResponseSizeBytes)
				}},
				{triple: "GET /after 200", check: func(t *testing.T, ev forwarder.Event) { assert.Equal(t, "fine", ev.ResponseBody) }},
			},
		},
		{
			name: "capture started mid-connection, in the middle of a response",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer, pcapgen.ISN(1_000_000, 2_000_000))
				// The tail of a response whose start was never captured.
				c.Emit(c.ServerSegments([]byte("ail of an earlier body that was cut\r\n"), 0)...)
				c.Client(get("/next"))
				c.Server(ok("next"))
			},
			want: []want{{triple: "GET /next 200"}},
		},
		{
			name: "pipelined requests with a HEAD among them",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client(append(append(get("/p1"), []byte("HEAD /p2 HTTP/1.1\r\nHost: api.test\r\n\r\n")...), get("/p3")...))
				c.Server(append(append(ok("one"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n")...), ok("three")...))
				c.Close()
			},
			want: []want{{triple: "GET /p1 200"}, {triple: "HEAD /p2 200", check: func(t *testing.T, ev forwarder.Event) {
				assert.Empty(t, ev.ResponseBody)
			}}, {triple: "GET /p3 200", check: func(t *testing.T, ev forwarder.Event) { assert.Equal(t, "three", ev.ResponseBody) }}},
		},
		{
			name: "chunked gzip response with trailers, 100-continue, 204 and 304",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client(get("/chunked"))
				z := gzipped(`{"compressed":true}`)
				c.Server([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n%x;ext=1\r\n%s\r\n0\r\nX-Checksum: abc\r\n\r\n", len(z), z)))
				c.Client([]byte("POST /upload HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"))
				c.Server([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
				c.Client([]byte("hello"))
				c.Server([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
				c.Client([]byte("GET /cached HTTP/1.1\r\nHost: api.test\r\nIf-None-Match: \"x\"\r\n\r\n"))
				c.Server([]byte("HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n"))
				c.Close()
			},
			want: []want{
				{triple: "GET /chunked 200", check: func(t *testing.T, ev forwarder.Event) {
					assert.Equal(t, `{"compressed":true}`, ev.ResponseBody)
					assert.EqualValues(t, len(gzipped(`{"compressed":true}`)), ev.ResponseSizeBytes, "size as transferred, before decoding")
				}},
				{triple: "POST /upload 204", check: func(t *testing.T, ev forwarder.Event) {
					assert.Equal(t, []int{100}, ev.Metadata.InterimStatuses)
					assert.Equal(t, "hello", ev.RequestBody)
				}},
				{triple: "GET /cached 304"},
			},
		},
		{
			name: "close-delimited HTTP/1.0 response and an unanswered request",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client([]byte("GET /old HTTP/1.0\r\n\r\n"))
				c.Server([]byte("HTTP/1.0 200 OK\r\n\r\nuntil the end"))
				c.Close()
				d := w.Conn(netip.MustParseAddrPort("10.9.0.1:40001"), synServer)
				d.Handshake()
				d.Client(get("/never"))
			},
			want: []want{
				{triple: "GET /old 200", check: func(t *testing.T, ev forwarder.Event) { assert.Equal(t, "until the end", ev.ResponseBody) }},
				{triple: "GET /never 0", check: func(t *testing.T, ev forwarder.Event) { assert.Equal(t, "no response", ev.Error) }},
			},
		},
		{
			name: "upgrade to websocket stops parsing the stream",
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client([]byte("GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
				c.Server([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
				c.Client([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'})
				c.Server([]byte("GET /not-http HTTP/1.1\r\n\r\n"))
				c.Close()
			},
			want: []want{{triple: "GET /ws 101", check: func(t *testing.T, ev forwarder.Event) { assert.True(t, ev.Metadata.Upgraded) }}},
		},
		{
			name: "IPv6 in Linux cooked capture v2 with fragments",
			opts: pcapgen.Options{LinkType: layers.LinkTypeLinuxSLL2},
			build: func(w *pcapgen.Writer) {
				c := w.Conn(netip.MustParseAddrPort("[fd00::1]:40000"), netip.MustParseAddrPort("[fd00::2]:8000"))
				c.Handshake()
				c.Client(get("/v6"))
				segs := c.ServerSegments(ok(strings.Repeat("6", 1200)), 0)
				for _, s := range segs {
					c.EmitFragmented(s, 512, 2, 0, 1)
				}
				c.Close()
			},
			want: []want{{triple: "GET /v6 200", check: func(t *testing.T, ev forwarder.Event) {
				assert.Len(t, ev.ResponseBody, 1200)
				assert.Equal(t, "[fd00::2]:8000", ev.Metadata.Server)
			}}},
		},
		{
			name: "802.1Q QinQ tags in pcapng",
			opts: pcapgen.Options{VLANs: []uint16{100, 200}, Format: pcapgen.PCAPNG},
			build: func(w *pcapgen.Writer) {
				c := w.Conn(synClient, synServer)
				c.Handshake()
				c.Client(get("/vlan"))
				c.Server(ok("tagged"))
				c.Close()
			},
			want: []want{{triple: "GET /vlan 200"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := pcapgen.New(tt.opts)
			tt.build(w)
			require.NoError(t, w.Err())
			path := filepath.Join(t.TempDir(), "synthetic.pcap")
			require.NoError(t, os.WriteFile(path, w.Bytes(), 0o644))
			evs, r := replay(t, []string{path}, "-q")
			require.Equal(t, exitOK, r.code, r.stderr)
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s %s %d", ev.Method, ev.Path, ev.StatusCode))
			}
			var wantTriples []string
			for _, w := range tt.want {
				wantTriples = append(wantTriples, w.triple)
			}
			require.Equal(t, wantTriples, got, r.stderr)
			for i, w := range tt.want {
				if w.check != nil {
					w.check(t, evs[i])
				}
			}
		})
	}
}
