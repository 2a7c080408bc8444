package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRealCapture records a real Go HTTP server and client on 127.0.0.1 with
// tcpdump and checks the reader finds their segments and bytes: on lo
// (Ethernet framing on Linux) and on any (Linux cooked v2 with libpcap 1.10+).
func TestRealCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("recording a real capture needs root (tcpdump -i lo); run the tests as root to include it")
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("recording a real capture needs tcpdump on PATH")
	}
	for _, iface := range []string{"lo", "any"} {
		t.Run(iface, func(t *testing.T) {
			const body = "hello from the real server, with enough bytes to notice"
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			require.NoError(t, err)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, body)
			})}
			go srv.Serve(ln)
			defer srv.Close()
			port := ln.Addr().(*net.TCPAddr).Port

			path := filepath.Join(t.TempDir(), "real.pcap")
			// -Z root: tcpdump would otherwise drop to a user that cannot write
			// into the test's temporary directory.
			cmd := exec.Command(tcpdump, "-i", iface, "-w", path, "-U", "--immediate-mode", "-Z", "root", "-n",
				// In immediate mode each packet takes a snap-length slot of the
				// ring: a smaller snap length and a larger buffer keep tcpdump
				// from dropping the burst of a whole exchange.
				"-s", "2048", "-B", "8192",
				"tcp port "+strconv.Itoa(port))
			stderr, err := cmd.StderrPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			defer cmd.Process.Kill()
			listening := make(chan string, 1)
			var log bytes.Buffer
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					log.WriteString(sc.Text() + "\n")
					if strings.Contains(sc.Text(), "listening on") {
						listening <- sc.Text()
					}
				}
			}()
			select {
			case <-listening:
			case <-time.After(10 * time.Second):
				t.Fatalf("tcpdump did not start listening on %s", iface)
			}

			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/real/path")
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, body, string(got))

			// Wait until tcpdump has written the response (a loaded machine can
			// take a while), let the closing segments follow, then stop it as
			// Ctrl-C does.
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(body)) {
					break
				}
			}
			time.Sleep(300 * time.Millisecond)
			require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			require.NoError(t, cmd.Wait(), "tcpdump: %s", log.String())

			data, err := os.ReadFile(path)
			require.NoError(t, err)
			require.GreaterOrEqual(t, len(data), 24)
			linkType := layers.LinkType(binary.LittleEndian.Uint32(data[20:24]))
			if iface == "any" {
				assert.Equal(t, layers.LinkTypeLinuxSLL2, linkType, "tcpdump -i any with libpcap 1.10 or later writes Linux cooked v2")
			}

			src := openOne(t, path)
			segs, err := readAll(t, src)
			require.NoError(t, err)
			require.NotEmpty(t, segs, "tcpdump: %s", log.String())
			server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			var toServer, fromServer bytes.Buffer
			for _, s := range segs {
				assert.True(t, s.Src == server || s.Dst == server, "segment %v -> %v is not the test's", s.Src, s.Dst)
				// tcpdump -i any sees loopback packets once; -i lo too.
				if s.Dst == server {
					toServer.WriteString(s.Payload)
				} else {
					fromServer.WriteString(s.Payload)
				}
			}
			assert.True(t, strings.HasPrefix(toServer.String(), "GET /real/path HTTP/1.1\r\n"), "client bytes: %q", toServer.String())
			assert.True(t, strings.HasPrefix(fromServer.String(), "HTTP/1.1 200 OK\r\n"), "server bytes: %q", fromServer.String())
			assert.True(t, strings.HasSuffix(fromServer.String(), body))
			assert.True(t, segs[0].SYN, "the capture starts with the SYN")
			assert.Zero(t, src.Stats().DecodeErrors)
		})
	}
}
