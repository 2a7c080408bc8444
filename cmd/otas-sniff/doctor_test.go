package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/doctor"
	"github.com/otas/otas-sniff/internal/netns"
	"github.com/otas/otas-sniff/internal/otasserver"
	"github.com/otas/otas-sniff/internal/pcapgen"
)

const doctorKey = "otas_doc_s3cr3t"

// doctorRun is one doctor report with its exit code and output.
type doctorRun struct {
	code   int
	report doctor.Report
	stdout string
	stderr string
}

// status returns the named check's status, failing the test when it is absent.
func (d *doctorRun) check(t *testing.T, name string) doctor.Check {
	t.Helper()
	c := d.report.Check(name)
	require.NotNil(t, c, "no check %q in:\n%s", name, d.stdout)
	return *c
}

// requireStatus checks a check's status and that warnings and failures say
// what to do next.
func (d *doctorRun) requireStatus(t *testing.T, name string, want doctor.Status) doctor.Check {
	t.Helper()
	c := d.check(t, name)
	require.Equal(t, want, c.Status, "check %s: %s\nreport:\n%s\nstderr:\n%s", name, c.Reason, d.stdout, d.stderr)
	if want == doctor.Warn || want == doctor.Fail {
		require.NotEmpty(t, c.Next, "check %s has no next step", name)
	}
	return c
}

func decodeReport(t *testing.T, r *doctorRun) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &r.report), "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	want := 0
	if r.report.Failed() {
		want = 1
	}
	require.Equal(t, want, r.code, "exit code; stderr:\n%s", r.stderr)
}

// runDoctorFile runs `doctor --json` in-process (for files; no privileges).
func runDoctorFile(t *testing.T, args ...string) *doctorRun {
	t.Helper()
	res := runCmd(t, "", append([]string{"doctor", "--json"}, args...)...)
	r := &doctorRun{code: res.code, stdout: res.stdout, stderr: res.stderr}
	decodeReport(t, r)
	return r
}

// liveDoctor is the doctor binary running in a namespace.
type liveDoctor struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
}

// startDoctor runs `doctor --json` in ns and waits until it watches (or has
// already finished, when the interface could not be opened).
func startDoctor(t *testing.T, ns *netns.NS, env []string, args ...string) *liveDoctor {
	t.Helper()
	d := &liveDoctor{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = ns.Command(context.Background(), sniffBin, append([]string{"doctor", "--json"}, args...)...)
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	d.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	require.NoError(t, d.cmd.Start())
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	deadline := time.After(10 * time.Second)
	for !strings.Contains(d.stderr.String(), "msg=watching") {
		select {
		case <-d.done:
			return d
		case <-deadline:
			t.Fatalf("doctor did not start watching:\n%s", d.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return d
}

func (d *liveDoctor) wait(t *testing.T) *doctorRun {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("doctor still running:\n%s", d.stderr)
	}
	r := &doctorRun{code: d.cmd.ProcessState.ExitCode(), stdout: d.stdout.String(), stderr: d.stderr.String()}
	decodeReport(t, r)
	t.Logf("%s:\n%s", strings.Join(d.cmd.Args[4:], " "), r.stdout)
	return r
}

// doctorKeepCalling makes requests with fn until ctx ends, so traffic flows for
// the whole watch.
func doctorKeepCalling(ctx context.Context, fn func(ctx context.Context)) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fn(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return done
}

// doctorGet makes one request through c and reads the answer.
func doctorGet(ctx context.Context, c *http.Client, url string, header http.Header) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	req.Header = header
	resp, err := c.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// doctorTraffic runs the doctor in the server namespace while a client
// calls url every 50 ms, and returns its report.
func doctorTraffic(t *testing.T, p *netns.Pair, c *http.Client, url string, header http.Header, env []string, args ...string) *doctorRun {
	t.Helper()
	d := startDoctor(t, p.Server, env, args...)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := doctorKeepCalling(ctx, func(ctx context.Context) { doctorGet(ctx, c, url, header) })
	r := d.wait(t)
	cancel()
	<-stopped
	return r
}

func TestDoctorNoSuchInterface(t *testing.T) {
	needLive(t)
	ns := netns.New(t, "otd")
	r := startDoctor(t, ns, nil, "-i", "nosuch0", "-p", "8000", "--for", "1s", "-o", "jsonl:-").wait(t)
	c := r.requireStatus(t, "interface", doctor.Fail)
	assert.Contains(t, c.Reason, "nosuch0 does not exist")
	assert.Contains(t, c.Reason, "lo")
	assert.Contains(t, c.Next, "otas-sniff interfaces")
	r.requireStatus(t, "privileges", doctor.OK)
	r.requireStatus(t, "traffic", doctor.Skip)
	assert.Equal(t, "interface", r.report.VerdictCheck)
}

func TestDoctorInterfaceDown(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	p.Server.MustIP(t, "link", "set", p.ServerDev, "down")
	r := startDoctor(t, p.Server, nil, "-i", p.ServerDev, "-p", "8000", "--for", "1s", "-o", "jsonl:-").wait(t)
	c := r.requireStatus(t, "interface", doctor.Fail)
	assert.Contains(t, c.Reason, "is down")
	assert.Contains(t, c.Next, "ip link set "+p.ServerDev+" up")
	assert.Equal(t, "interface", r.report.VerdictCheck)
}

// TestDoctorWrongInterface watches lo while the traffic flows on the veth:
// the sample of the other interfaces names the right one.
func TestDoctorWrongInterface(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	url := fmt.Sprintf("http://%s:8000/x", p.ServerV4)
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	r := doctorTraffic(t, p, newClient(p.Client).http, url, nil, nil, "-i", "lo", "-p", "8000", "--for", "2s", "-o", "jsonl:-")
	c := r.requireStatus(t, "interface", doctor.Fail)
	assert.Contains(t, c.Reason, p.ServerDev)
	assert.Equal(t, "-i "+p.ServerDev+"   (or -i any)", c.Next)
	r.requireStatus(t, "traffic", doctor.Fail)
	assert.Equal(t, "interface", r.report.VerdictCheck)
}

// TestDoctorTLS: a Go TLS server, clients sending SNI.
func TestDoctorTLS(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	l, err := p.Server.Listen("tcp", ":8443")
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") }))
	srv.Listener.Close()
	srv.Listener = l
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       p.Client.DialContext,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "api.doctor.test"},
		ForceAttemptHTTP2: true, // offers h2 in ALPN, as browsers and most clients do
		DisableKeepAlives: true, // a handshake, and so an SNI, per request
	}}
	p.Client.WaitReachable(t, p.ServerV4.String()+":8443")
	r := doctorTraffic(t, p, c, fmt.Sprintf("https://%s:8443/", p.ServerV4), nil, nil, "-i", p.ServerDev, "-p", "8443", "--for", "2s", "-o", "jsonl:-")
	tr := r.requireStatus(t, "traffic", doctor.Fail)
	assert.Contains(t, tr.Reason, "TLS (SNI api.doctor.test")
	assert.Contains(t, tr.Reason, "ALPN h2 offered")
	assert.Greater(t, tr.Data["tls"], 0.0)
	assert.Equal(t, 0.0, tr.Data["http1"])
	assert.Equal(t, []any{"api.doctor.test"}, tr.Data["sni"])
	assert.Contains(t, tr.Next, "behind the TLS terminator")
	r.requireStatus(t, "directions", doctor.OK)
	assert.Equal(t, "traffic", r.report.VerdictCheck)
}

// TestDoctorH2C: HTTP/2 with prior knowledge, Go's server and client.
func TestDoctorH2C(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	l, err := p.Server.Listen("tcp", ":8000")
	require.NoError(t, err)
	var sp http.Protocols
	sp.SetHTTP1(true)
	sp.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &sp, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: p.Client.DialContext, Protocols: &cp, DisableKeepAlives: true}}
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	r := doctorTraffic(t, p, c, fmt.Sprintf("http://%s:8000/", p.ServerV4), nil, nil, "-i", p.ServerDev, "-p", "8000", "--for", "2s", "-o", "jsonl:-")
	tr := r.requireStatus(t, "traffic", doctor.Fail)
	assert.Contains(t, tr.Reason, "HTTP/2 cleartext")
	assert.Greater(t, tr.Data["http2"], 0.0)
	assert.Contains(t, tr.Next, "HTTP/1.1")
}

// TestDoctorOneWay drops the server's data packets in its namespace with
// nftables: handshakes and ACKs pass, the capture sees requests and no
// responses, as behind an eBPF CNI that redirects one direction.
func TestDoctorOneWay(t *testing.T) {
	needLive(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (nftables)")
	}
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	p.Server.MustRun(t, "nft", "add", "table", "inet", "oneway")
	p.Server.MustRun(t, "nft", "add", "chain", "inet", "oneway", "out", "{ type filter hook output priority 0; }")
	p.Server.MustRun(t, "nft", "add", "rule", "inet", "oneway", "out", "tcp", "sport", "8000", "ip", "length", ">", "100", "drop")
	c := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DialContext: p.Client.DialContext, DisableKeepAlives: true}}
	r := doctorTraffic(t, p, c, fmt.Sprintf("http://%s:8000/x?size=500", p.ServerV4), nil, nil, "-i", p.ServerDev, "-p", "8000", "--for", "2s", "-o", "jsonl:-")
	d := r.requireStatus(t, "directions", doctor.Fail)
	assert.Contains(t, d.Reason, "no response")
	assert.Contains(t, d.Reason, "eBPF CNI")
	assert.Contains(t, d.Next, "-i any")
	assert.Equal(t, "directions", r.report.VerdictCheck)
}

func TestDoctorSnapLen(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	r := doctorTraffic(t, p, newClient(p.Client).http, fmt.Sprintf("http://%s:8000/x?size=3000", p.ServerV4), nil, nil,
		"-i", p.ServerDev, "-p", "8000", "--for", "2s", "--snaplen", "80", "-o", "jsonl:-")
	s := r.requireStatus(t, "snaplen", doctor.Fail)
	assert.Contains(t, s.Reason, "snap length 80")
	assert.Contains(t, s.Next, "--snaplen 65664")
	assert.Equal(t, "snaplen", r.report.VerdictCheck)
}

func TestDoctorNoPrivileges(t *testing.T) {
	needLive(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux)")
	}
	ns := netns.New(t, "otd")
	d := &liveDoctor{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	// ip netns exec needs root; setpriv then runs the doctor as nobody with
	// no capability.
	d.cmd = exec.Command("ip", "netns", "exec", ns.Name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		sniffBin, "doctor", "--json", "-i", "lo", "-p", "8000", "--for", "1s", "-o", "jsonl:-")
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	require.NoError(t, d.cmd.Start())
	go func() { d.cmd.Wait(); close(d.done) }()
	r := d.wait(t)
	c := r.requireStatus(t, "privileges", doctor.Fail)
	assert.Contains(t, c.Reason, "CAP_NET_RAW")
	assert.Contains(t, c.Next, "setcap cap_net_raw,cap_net_admin+eip")
	r.requireStatus(t, "interface", doctor.OK)
	assert.Equal(t, "privileges", r.report.VerdictCheck)
}

// doctorOTASProxy makes the in-process OTAS server reachable from inside ns: a
// listener on the namespace's loopback forwards to it.
func doctorOTASProxy(t *testing.T, ns *netns.NS, srv *otasserver.Server) string {
	t.Helper()
	l, err := ns.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	target := strings.TrimSuffix(strings.TrimPrefix(srv.URL, "http://"), "/")
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				go io.Copy(out, in)
				io.Copy(in, out)
			}()
		}
	}()
	return "http://" + l.Addr().String() + "/"
}

// TestDoctorAllGood: HTTP/1.1 traffic whose requests carry session tokens,
// and a key the backend accepts: every check passes.
func TestDoctorAllGood(t *testing.T) {
	needLive(t)
	p := netns.NewPair(t)
	testServer(t, p.Server, ":8000")
	srv := otasserver.New(doctorKey, otasserver.Project{ID: "p-doc", Name: "Doctor"})
	t.Cleanup(srv.Close)
	url := doctorOTASProxy(t, p.Server, srv)
	p.Client.WaitReachable(t, p.ServerV4.String()+":8000")
	h := http.Header{"X-Otas-Agent-Session-Token": {srv.Token("agent-1")}}
	r := doctorTraffic(t, p, newClient(p.Client).http, fmt.Sprintf("http://%s:8000/api/items?size=2000", p.ServerV4), h,
		[]string{"OTAS_SDK_KEY=" + doctorKey}, "-i", p.ServerDev, "-p", "8000", "--for", "2s", "--auth-url", url, "--ingest-url", url)
	require.Equal(t, 0, r.code, r.stdout)
	for _, c := range r.report.Checks {
		assert.Equal(t, doctor.OK, c.Status, "%s: %s", c.Name, c.Reason)
	}
	assert.Equal(t, "all good", r.report.Verdict)
	assert.Contains(t, r.check(t, "otas auth").Reason, `project "Doctor"`)
	assert.Contains(t, r.check(t, "otas ingest").Reason, "batch endpoint present")
	assert.Zero(t, srv.Counts().Stored, "the probe stored an event")
	tr := r.check(t, "traffic")
	assert.Greater(t, tr.Data["http1"], 0.0)
	assert.Greater(t, r.check(t, "checksums").Data["sampled"], 0.0)
}

// The same analysis on capture files, written at test time.

// capture is what doctorCapture puts in a file.
type doctorCaptureSpec struct {
	conns   int
	token   string
	oneWay  bool // leave out every packet from the server
	snaplen int
	// first, when set, is what each client sends instead of an HTTP request
	// (a TLS ClientHello).
	first []byte
}

// doctorCapture writes a pcap of exchanges on port 8000.
func doctorCapture(t *testing.T, spec doctorCaptureSpec) string {
	t.Helper()
	w := pcapgen.New(pcapgen.Options{Snaplen: spec.snaplen})
	for i := range spec.conns {
		c := w.Conn(netip.MustParseAddrPort(fmt.Sprintf("10.0.0.1:%d", 40000+i)), netip.MustParseAddrPort("10.0.0.2:8000"))
		c.Handshake()
		if spec.first != nil {
			c.Client(spec.first)
			c.Server([]byte{0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00})
		} else {
			req := fmt.Sprintf("GET /api/items/%d HTTP/1.1\r\nHost: api\r\n", i)
			if spec.token != "" {
				req += "X-OTAS-Agent-Session-Token: " + spec.token + "\r\n"
			}
			c.Client([]byte(req + "\r\n"))
			body := strings.Repeat("x", 300)
			c.Server([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)))
		}
		c.Close()
	}
	require.NoError(t, w.Err())
	var b bytes.Buffer
	_, err := w.WriteTo(&b)
	require.NoError(t, err)
	data := b.Bytes()
	if spec.oneWay {
		data = doctorClientOnly(t, data)
	}
	path := filepath.Join(t.TempDir(), "doctor.pcap")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

// doctorClientOnly keeps the packets not sent from port 8000, as a capture point
// that sees one direction would.
func doctorClientOnly(t *testing.T, data []byte) []byte {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	var out bytes.Buffer
	w := pcapgo.NewWriter(&out)
	require.NoError(t, w.WriteFileHeader(r.Snaplen(), r.LinkType()))
	for {
		pkt, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		p := gopacket.NewPacket(pkt, r.LinkType(), gopacket.Default)
		if tcp, ok := p.TransportLayer().(*layers.TCP); ok && tcp.SrcPort == 8000 {
			continue
		}
		require.NoError(t, w.WritePacket(ci, pkt))
	}
	return out.Bytes()
}

// doctorClientHello returns the first TLS record a Go client sends for serverName.
func doctorClientHello(t *testing.T, serverName string) []byte {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	go func() {
		tls.Client(cli, &tls.Config{ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}}).Handshake()
		cli.Close()
	}()
	head := make([]byte, 5)
	_, err := io.ReadFull(srv, head)
	require.NoError(t, err)
	body := make([]byte, int(head[3])<<8|int(head[4]))
	_, err = io.ReadFull(srv, body)
	require.NoError(t, err)
	return append(head, body...)
}

// doctorClosedURL is an http URL on loopback where nothing listens.
func doctorClosedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/"
}

func TestDoctorPcap(t *testing.T) {
	srv := otasserver.New(doctorKey, otasserver.Project{ID: "p-doc", Name: "Doctor"})
	t.Cleanup(srv.Close)
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte(doctorKey+"\n"), 0o600))
	tok := srv.Token("agent-1")
	good := doctorCapture(t, doctorCaptureSpec{conns: 3, token: tok})
	otas := []string{"--auth-url", srv.URL, "--ingest-url", srv.URL, "--sdk-key-file", keyFile, "--otas-timeout", "2s"}
	pcapArgs := func(file string, extra ...string) []string {
		return append(append([]string{"--pcap", file, "-p", "8000"}, otas...), extra...)
	}

	t.Run("all good", func(t *testing.T) {
		srv.SetFaults(otasserver.Faults{})
		r := runDoctorFile(t, pcapArgs(good)...)
		require.Equal(t, 0, r.code, r.stdout)
		for _, c := range r.report.Checks {
			switch c.Name {
			case "privileges", "interface", "drops":
				assert.Equal(t, doctor.Skip, c.Status, c.Name)
			default:
				assert.Equal(t, doctor.OK, c.Status, "%s: %s", c.Name, c.Reason)
			}
		}
		assert.Equal(t, "all good", r.report.Verdict)
		assert.EqualValues(t, 3, r.check(t, "session tokens").Data["with_token"])
		assert.Zero(t, srv.Counts().Stored)
	})
	t.Run("text", func(t *testing.T) {
		srv.SetFaults(otasserver.Faults{RejectKey: true})
		res := runCmd(t, "", append([]string{"doctor"}, pcapArgs(good)...)...)
		require.Equal(t, exitFailure, res.code, res.stderr)
		assert.Contains(t, res.stdout, "✔ traffic")
		assert.Contains(t, res.stdout, "✗ otas auth")
		assert.Contains(t, res.stdout, "→ check the key in the OTAS project settings")
		assert.Contains(t, res.stdout, "most likely reason nothing reaches OTAS (otas auth): the backend rejects the key (HTTP 403: Invalid SDK Key)")
		assert.NotContains(t, res.stdout+res.stderr, doctorKey[5:], "the key's secret leaked")
		assert.Contains(t, res.stderr, "doctor: 1 of 12 checks failed")
	})

	for _, tt := range []struct {
		name   string
		faults otasserver.Faults
		file   doctorCaptureSpec
		args   []string
		check  string
		status doctor.Status
		reason string
		next   string
	}{
		{name: "key rejected", faults: otasserver.Faults{RejectKey: true}, check: "otas auth", status: doctor.Fail,
			reason: "rejects the key (HTTP 403: Invalid SDK Key)", next: "export OTAS_SDK_KEY"},
		{name: "no server", args: []string{"--auth-url", doctorClosedURL(t), "--ingest-url", doctorClosedURL(t)}, check: "otas auth", status: doctor.Fail,
			reason: "cannot reach the OTAS key service", next: "curl -sS -X POST"},
		{name: "no batch endpoint", faults: otasserver.Faults{NoBatch: true}, check: "otas ingest", status: doctor.Warn,
			reason: "no batch endpoint (HTTP 404)", next: "upgrade the OTAS ingestion service"},
		{name: "no session tokens", file: doctorCaptureSpec{conns: 2}, check: "session tokens", status: doctor.Fail,
			reason: "none of 2 requests carries X-OTAS-Agent-Session-Token", next: "X-OTAS-Agent-Session-Token header"},
		{name: "one way", file: doctorCaptureSpec{conns: 2, token: tok, oneWay: true}, check: "directions", status: doctor.Fail,
			reason: "only client→server packets", next: "-i any"},
		{name: "snap length", file: doctorCaptureSpec{conns: 2, token: tok, snaplen: 60}, check: "snaplen", status: doctor.Fail,
			reason: "cut by the snap length", next: "tcpdump -s 0"},
		{name: "tls", file: doctorCaptureSpec{conns: 2, first: doctorClientHello(t, "pay.example.com")}, check: "traffic", status: doctor.Fail,
			reason: "2 TLS (SNI pay.example.com; ALPN h2 offered on 2)", next: "behind the TLS terminator"},
		{name: "wrong port", args: []string{"-p", "9000"}, check: "traffic", status: doctor.Fail,
			reason: "no packets to or from port 9000 in the file", next: "tshark -r"},
		{name: "not uploading", args: []string{"-o", "jsonl:-"}, check: "otas", status: doctor.Skip, reason: "no -o otas output"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFaults(tt.faults)
			file := good
			if tt.file.conns > 0 {
				file = doctorCapture(t, tt.file)
			}
			r := runDoctorFile(t, pcapArgs(file, tt.args...)...)
			c := r.requireStatus(t, tt.check, tt.status)
			assert.Contains(t, c.Reason, tt.reason)
			assert.Contains(t, c.Next, tt.next)
			if tt.status == doctor.Fail {
				assert.Equal(t, tt.check, r.report.VerdictCheck)
			}
		})
	}

	t.Run("no key", func(t *testing.T) {
		if os.Getenv("OTAS_SDK_KEY") != "" {
			t.Skip("OTAS_SDK_KEY is set in the environment")
		}
		r := runDoctorFile(t, "--pcap", good, "-p", "8000", "--auth-url", srv.URL)
		c := r.requireStatus(t, "otas key", doctor.Warn)
		assert.Contains(t, c.Next, "export OTAS_SDK_KEY=")
		r.requireStatus(t, "otas auth", doctor.Skip)
		assert.Equal(t, 0, r.code)
		assert.Equal(t, "otas key", r.report.VerdictCheck, "an unset key is why nothing reaches OTAS")
	})
	t.Run("unreadable file", func(t *testing.T) {
		res := runCmd(t, "", "doctor", "--pcap", filepath.Join(t.TempDir(), "missing.pcap"), "-p", "8000")
		assert.Equal(t, exitInput, res.code, res.stderr)
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"doctor", "-p", "8000"}, {"doctor", "--pcap", good}, {"doctor", "-i", "lo", "--pcap", good, "-p", "1"}, {"doctor", "--pcap", good, "-p", "70000"}} {
			res := runCmd(t, "", args...)
			assert.Equal(t, exitUsage, res.code, "%v: %s", args, res.stderr)
		}
	})
}
