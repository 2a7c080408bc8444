// Package doctor diagnoses why otas-sniff sees no traffic or uploads nothing:
// capture privileges, the interface, what the traffic on the port is (HTTP/1.x,
// TLS, HTTP/2, other), one-way visibility, capture quality (drops, snap
// length, checksums, gaps) and the OTAS backend (key, authentication, batch
// endpoint, agent session tokens). The traffic goes through the real capture,
// reassembly and httpparse stages; the doctor only watches beside them.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/reassembly"
)

// Options configures one diagnosis: either Interface (live) or Files.
type Options struct {
	Interface string
	Files     []string
	// Stdin is read for the file "-".
	Stdin io.Reader
	Ports capture.Ports
	// For is how long a live run watches.
	For time.Duration
	// SnapLen is the live capture's snap length; 0 is capture.DefaultSnapLen.
	SnapLen    int
	Reassembly reassembly.Options
	// OTAS is nil when events do not go to OTAS.
	OTAS *OTASOptions
	// Rerun is the command line the privilege hint repeats after sudo.
	Rerun  string
	Logger *slog.Logger
}

// Run watches the interface (or reads the files) and returns the checklist.
// The error is for input that cannot be read at all (a missing file); every
// finding about the system is a check, not an error.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SnapLen <= 0 {
		o.SnapLen = capture.DefaultSnapLen
	}
	if len(o.Ports) == 0 {
		return nil, errors.New("no port given: the doctor looks at one server's port (-p)")
	}
	if (o.Interface == "") == (len(o.Files) == 0) {
		return nil, errors.New("give either an interface (-i) or capture files (--pcap)")
	}
	r := &Report{Ports: o.Ports.String()}
	var an *analyzer
	if len(o.Files) > 0 {
		r.Source = "file " + strings.Join(o.Files, ", ")
		res, err := readFiles(ctx, &o)
		if err != nil {
			return nil, err
		}
		an = res.an
		r.Watched = res.an.last.Sub(res.an.first)
		skip := "not checked: reading a file"
		r.Checks = append(r.Checks,
			Check{Name: "privileges", Status: Skip, Reason: skip + " needs none"},
			Check{Name: "interface", Status: Skip, Reason: skip})
		r.Checks = append(r.Checks, trafficChecks(&o, res)...)
	} else {
		r.Source = "interface " + o.Interface
		st := inspectInterface(o.Interface)
		res := watchLive(ctx, &o)
		an = res.an
		r.Watched = res.watched
		r.Checks = append(r.Checks, privilegeCheck(res.openErr, o.Rerun), interfaceCheck(&o, st, res))
		if res.an == nil {
			for _, name := range []string{"traffic", "directions", "drops", "snaplen", "checksums", "gaps"} {
				r.Checks = append(r.Checks, Check{Name: name, Status: Skip, Reason: "not checked: nothing could be captured"})
			}
		} else {
			r.Checks = append(r.Checks, trafficChecks(&o, res)...)
		}
	}
	r.Checks = append(r.Checks, otasChecks(ctx, o.OTAS, an)...)
	r.conclude()
	return r, nil
}

// readFiles runs the capture files through the analyzer.
func readFiles(ctx context.Context, o *Options) (liveResult, error) {
	var res liveResult
	src, err := capture.OpenFiles(o.Files, capture.FileOptions{Stdin: o.Stdin})
	if err != nil {
		return res, fmt.Errorf("open capture: %w", err)
	}
	defer src.Close()
	res.an = newAnalyzer(o.Ports, nil, o.Reassembly)
	for {
		seg, err := src.Next(ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// A cut file still yields everything before the cut.
				o.Logger.Warn("capture file ends early; diagnosing what was read", "err", err)
				res.runErr = err
			}
			break
		}
		res.an.feed(seg)
	}
	res.an.finish(reassembly.EndOfCapture)
	res.stats = src.Stats()
	return res, nil
}

// interfaceCheck says whether the interface exists, is up, has addresses and
// carries the port's traffic, and where else the traffic is when it does not.
func interfaceCheck(o *Options, st ifaceState, res liveResult) Check {
	c := Check{Name: "interface", Data: map[string]any{"name": o.Interface, "addresses": st.addrs}}
	list := "otas-sniff interfaces"
	switch {
	case !st.exists || errors.Is(res.openErr, capture.ErrNoSuchInterface):
		c.Status = Fail
		c.Reason = fmt.Sprintf("%s does not exist (here: %s)", o.Interface, strings.Join(append(st.others, "any"), ", "))
		c.Next = list + "   then -i NAME (or -i any)"
		return c
	case !st.up || errors.Is(res.openErr, capture.ErrInterfaceDown) || errors.Is(res.runErr, capture.ErrInterfaceDown):
		c.Status = Fail
		c.Reason = fmt.Sprintf("%s is down", o.Interface)
		c.Next = fmt.Sprintf("sudo ip link set %s up   (or pick another: %s)", o.Interface, list)
		return c
	case !st.running:
		c.Status = Fail
		c.Reason = fmt.Sprintf("%s is up but has no carrier (cable out, or the veth's peer is down): nothing passes", o.Interface)
		c.Next = fmt.Sprintf("ip link show %s; bring up its link or peer, or pick another: %s", o.Interface, list)
		return c
	}
	addrs := "no address (a mirror port or bridge member)"
	if len(st.addrs) > 0 {
		addrs = strings.Join(st.addrs, ", ")
	}
	if o.Interface == "any" {
		addrs = "every interface"
	}
	if res.an == nil {
		if res.openErr != nil && !errors.Is(res.openErr, capture.ErrPermission) {
			c.Status, c.Reason = Fail, fmt.Sprintf("cannot capture on %s: %v", o.Interface, res.openErr)
			c.Next = fmt.Sprintf("pick another interface: %s", list)
			return c
		}
		c.Status, c.Reason = OK, fmt.Sprintf("%s exists and is up: %s (traffic not sampled without capture privileges)", o.Interface, addrs)
		return c
	}
	elsewhere := []string{}
	for _, e := range res.elsewhere {
		elsewhere = append(elsewhere, e.String())
	}
	c.Data["elsewhere"] = elsewhere
	if res.an.packets == 0 && len(res.elsewhere) > 0 {
		c.Status = Fail
		c.Reason = fmt.Sprintf("no port %s traffic on %s, but %s carries it", o.Ports, o.Interface, strings.Join(elsewhere, ", "))
		c.Next = fmt.Sprintf("-i %s   (or -i any)", res.elsewhere[0].name)
		return c
	}
	c.Status, c.Reason = OK, fmt.Sprintf("%s is up: %s", o.Interface, addrs)
	if len(elsewhere) > 0 {
		c.Reason += "; port traffic also on " + strings.Join(elsewhere, ", ")
	}
	return c
}

// oneWayCause is what one-way visibility usually means, and where to look.
const oneWayCause = "the capture point sees one direction only: an eBPF CNI (Cilium, Calico eBPF) redirects packets past the host's capture, or routing is asymmetric (replies leave by another interface), or a firewall drops one direction"

// trafficChecks judges the traffic on the port and the capture's quality.
func trafficChecks(o *Options, res liveResult) []Check {
	an := res.an
	live := len(o.Files) == 0
	ps := an.parser.Stats()
	as := an.asm.Stats()
	sc := an.streamCounts()
	where := "in the file"
	if live {
		where = fmt.Sprintf("on %s in %s", o.Interface, res.watched.Round(100*time.Millisecond))
	}
	port := o.Ports.String()

	traffic := Check{Name: "traffic", Data: map[string]any{
		"packets": an.packets, "connections": len(an.streams), "http1": sc.byKind[kindHTTP1],
		"tls": sc.byKind[kindTLS], "http2": sc.byKind[kindH2], "other": sc.byKind[kindOther],
		"empty": sc.byKind[kindEmpty], "sni": sc.snis, "alpn_h2": sc.alpnH2, "requests": an.requests,
	}}
	breakdown := streamBreakdown(sc)
	switch {
	case an.packets == 0:
		traffic.Status = Fail
		traffic.Reason = fmt.Sprintf("no packets to or from port %s %s", port, where)
		if live {
			traffic.Next = fmt.Sprintf("check the server listens there (ss -ltnp 'sport = :%d') and send it requests while doctor watches (--for 60s)", o.Ports[0].Lo)
		} else {
			traffic.Next = fmt.Sprintf("check -p: list the file's TCP conversations with tshark -r %s -q -z conv,tcp", o.Files[0])
			if an.otherPort > 0 {
				traffic.Reason += fmt.Sprintf(" (%d packets on other ports)", an.otherPort)
			}
		}
	case sc.withData == 0:
		traffic.Status = Fail
		traffic.Reason = fmt.Sprintf("%d packets, %s, but not one byte of payload", an.packets, count(len(an.streams), "connection", "connections"))
		traffic.Next = "send requests while doctor watches (--for 60s)"
	case sc.byKind[kindHTTP1] == 0:
		traffic.Status = Fail
		traffic.Reason, traffic.Next = noHTTPReason(sc, an.packets, breakdown)
	case sc.byKind[kindHTTP1] < sc.withData:
		traffic.Status = Warn
		_, traffic.Next = noHTTPReason(sc, an.packets, breakdown)
		traffic.Reason = fmt.Sprintf("%d packets, %s: only the HTTP/1.x ones are read", an.packets, breakdown)
	default:
		traffic.Status = OK
		traffic.Reason = fmt.Sprintf("%d packets, %s, %s", an.packets, breakdown, count(an.requests, "request", "requests"))
	}

	dirs := Check{Name: "directions", Data: map[string]any{
		"packets_to_server": an.toServer, "packets_from_server": an.fromServer,
		"requests": ps.Requests, "responses": ps.Responses,
		"unmatched_requests": ps.UnmatchedRequests, "unmatched_responses": ps.UnmatchedResponses,
	}}
	oneWayNext := "capture where both directions pass: -i any, or the pod's own interface (run doctor inside its network namespace: nsenter -t PID -n otas-sniff doctor -i eth0 -p " + port + ")"
	switch {
	case an.packets == 0:
		dirs.Status, dirs.Reason = Skip, "not checked: no packets"
	case an.fromServer == 0:
		dirs.Status, dirs.Next = Fail, oneWayNext
		dirs.Reason = fmt.Sprintf("only client→server packets (%d), none from port %s: %s", an.toServer, port, oneWayCause)
	case an.toServer == 0:
		dirs.Status, dirs.Next = Fail, oneWayNext
		dirs.Reason = fmt.Sprintf("only server→client packets (%d), none to port %s: %s", an.fromServer, port, oneWayCause)
	case ps.Requests > 0 && ps.Responses == 0:
		dirs.Status, dirs.Next = Fail, oneWayNext
		seen := fmt.Sprintf("no packet from port %s carries data", port)
		if an.payloadFromServer > 0 {
			seen = fmt.Sprintf("%s from port %s carry data but no response", count(an.payloadFromServer, "packet", "packets"), port)
		}
		dirs.Reason = fmt.Sprintf("%s and no response (%s): %s", count(ps.Requests, "request", "requests"), seen, oneWayCause)
	case ps.Responses > 0 && ps.Requests == 0:
		dirs.Status, dirs.Next = Fail, oneWayNext
		dirs.Reason = fmt.Sprintf("%s and no request: %s", count(ps.Responses, "response", "responses"), oneWayCause)
	case an.payloadToServer > 0 && an.payloadFromServer == 0:
		dirs.Status, dirs.Next = Fail, oneWayNext
		dirs.Reason = fmt.Sprintf("payload only towards port %s (%d packets), none back: %s", port, an.payloadToServer, oneWayCause)
	case ps.Requests > 0 && (ps.UnmatchedRequests+ps.UnmatchedResponses)*4 > ps.Requests:
		dirs.Status = Warn
		dirs.Reason = fmt.Sprintf("%d of %s without a response, %s without a request: part of the traffic is seen one way (or cut by gaps)", ps.UnmatchedRequests, count(ps.Requests, "request", "requests"), count(ps.UnmatchedResponses, "response", "responses"))
		dirs.Next = oneWayNext
	default:
		dirs.Status = OK
		dirs.Reason = fmt.Sprintf("both ways: %d packets to the server (%d with data), %d back (%d with data)", an.toServer, an.payloadToServer, an.fromServer, an.payloadFromServer)
		if ps.Requests > 0 {
			dirs.Reason += fmt.Sprintf("; %s, %s", count(ps.Requests, "request", "requests"), count(ps.Responses, "response", "responses"))
		}
	}

	drops := Check{Name: "drops"}
	if !live {
		drops.Status, drops.Reason = Skip, "not checked: a file has no drop counters (gaps below show loss)"
	} else {
		d := res.stats.KernelDrops + res.stats.IfaceDrops + res.stats.QueueDrops
		drops.Data = map[string]any{"kernel": res.stats.KernelDrops, "interface": res.stats.IfaceDrops, "queue": res.stats.QueueDrops}
		if d == 0 {
			drops.Status, drops.Reason = OK, "no packet dropped by the kernel, the interface or the queue"
		} else {
			drops.Status = Warn
			drops.Reason = fmt.Sprintf("%d packets dropped (kernel %d, interface %d, queue %d): exchanges in them are lost", d, res.stats.KernelDrops, res.stats.IfaceDrops, res.stats.QueueDrops)
			drops.Next = "--buffer-mb 256 (a bigger kernel ring), and a narrower -p or -f"
		}
	}

	snap := Check{Name: "snaplen", Data: map[string]any{"truncated": res.stats.Truncated, "packets": res.stats.Packets}}
	if live {
		snap.Data["snaplen"] = res.snapLen
	}
	if res.stats.Truncated == 0 {
		snap.Status = OK
		snap.Reason = "no packet cut short"
		if live {
			snap.Reason = fmt.Sprintf("no packet cut short (snap length %d)", res.snapLen)
		}
	} else {
		snap.Status = Fail
		snap.Reason = fmt.Sprintf("%d of %d packets cut by the snap length: headers and bodies are lost", res.stats.Truncated, res.stats.Packets)
		if live {
			snap.Reason = fmt.Sprintf("%d of %d packets cut by the snap length %d: headers and bodies are lost", res.stats.Truncated, res.stats.Packets, res.snapLen)
			snap.Next = fmt.Sprintf("--snaplen %d (the default: whole packets, also offloaded 64 KiB ones)", capture.DefaultSnapLen)
		} else {
			snap.Next = fmt.Sprintf("record whole packets: tcpdump -s 0 -i IFACE -w FILE port %s", port)
		}
	}

	sum := Check{Name: "checksums", Data: map[string]any{"sampled": an.sum.checked, "bad": an.sum.bad, "offload": an.sum.offload}}
	if live {
		sum.Data["bad_sent"], sum.Data["bad_received"] = an.sum.badSent, an.sum.badReceived
	}
	switch damaged := an.sum.bad - an.sum.offload; {
	case an.sum.checked == 0:
		sum.Status, sum.Reason = Skip, "not checked: no whole packet to verify"
	case an.sum.bad == 0:
		sum.Status, sum.Reason = OK, fmt.Sprintf("all %d sampled TCP checksums are correct", an.sum.checked)
	case damaged == 0:
		sum.Status = OK
		sum.Reason = fmt.Sprintf("%d of %d sampled packets carry checksums left to offload (%s): normal, otas-sniff ignores them", an.sum.bad, an.sum.checked, offloadWho(live, an))
	default:
		sum.Status = Warn
		sum.Reason = fmt.Sprintf("%d of %d sampled packets have wrong TCP checksums that are not offload: damaged on the way or rewritten by a middlebox; the receiver drops them and the sender resends", damaged, an.sum.checked)
		if live {
			sum.Next = fmt.Sprintf("look for link errors: ip -s link show %s; ethtool -S %s", o.Interface, o.Interface)
		} else {
			sum.Next = "check where the file was recorded: ip -s link show IFACE; ethtool -S IFACE on that host"
		}
	}

	gaps := Check{Name: "gaps", Data: map[string]any{"gaps": as.Gaps, "bytes_lost": as.GapBytes, "messages_hit": ps.GapsInMessages}}
	if as.Gaps == 0 {
		gaps.Status, gaps.Reason = OK, "no gap in any stream"
		if as.MidStream > 0 {
			gaps.Reason += fmt.Sprintf(" (%s joined mid-stream)", count(as.MidStream, "connection", "connections"))
		}
	} else {
		gaps.Status = Warn
		gaps.Reason = fmt.Sprintf("%s in the streams (%d bytes never captured); %d messages hit", count(as.Gaps, "gap", "gaps"), as.GapBytes, ps.GapsInMessages)
		gaps.Next = "the capture misses packets: --buffer-mb 256 when drops show, else capture closer to the server (an oversubscribed mirror port loses packets)"
		if res.stats.Truncated > 0 {
			gaps.Next = "fix the snap length first (see snaplen): the bytes it cuts off show up as gaps"
		}
	}
	return []Check{traffic, dirs, drops, snap, sum, gaps}
}

func offloadWho(live bool, an *analyzer) string {
	if live && an.sum.badReceived == 0 {
		return "all sent by this host"
	}
	return "the sender's NIC or veth completes them"
}

// streamBreakdown is "5 connections: 3 HTTP/1.x, 2 TLS (SNI api.example.com)".
func streamBreakdown(sc streamCounts) string {
	var parts []string
	if n := sc.byKind[kindHTTP1]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d HTTP/1.x", n))
	}
	if n := sc.byKind[kindTLS]; n > 0 {
		p := fmt.Sprintf("%d TLS", n)
		var notes []string
		if len(sc.snis) > 0 {
			snis := sc.snis
			if len(snis) > maxSNIs {
				snis = append(snis[:maxSNIs:maxSNIs], "…")
			}
			notes = append(notes, "SNI "+strings.Join(snis, ", "))
		}
		if sc.alpnH2 > 0 {
			notes = append(notes, fmt.Sprintf("ALPN h2 offered on %d", sc.alpnH2))
		}
		if len(notes) > 0 {
			p += " (" + strings.Join(notes, "; ") + ")"
		}
		parts = append(parts, p)
	}
	if n := sc.byKind[kindH2]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d HTTP/2 cleartext (h2c preface)", n))
	}
	if n := sc.byKind[kindOther]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d other", n))
	}
	if n := sc.byKind[kindEmpty]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d without payload", n))
	}
	total := 0
	for _, n := range sc.byKind {
		total += n
	}
	return count(total, "connection", "connections") + ": " + strings.Join(parts, ", ")
}

// noHTTPReason explains traffic otas-sniff cannot read, by its main kind.
func noHTTPReason(sc streamCounts, packets uint64, breakdown string) (reason, next string) {
	head := fmt.Sprintf("%d packets, %s", packets, breakdown)
	switch {
	case sc.byKind[kindTLS] >= sc.byKind[kindH2] && sc.byKind[kindTLS] >= sc.byKind[kindOther]:
		return head + ": TLS is encrypted and otas-sniff reads only plaintext HTTP/1.x",
			"capture the plaintext hop behind the TLS terminator (proxy or ingress → app): -i <that interface> -p <the app's port>"
	case sc.byKind[kindH2] >= sc.byKind[kindOther]:
		return head + ": otas-sniff reads only HTTP/1.x",
			"have the clients speak HTTP/1.1 to this port (no HTTP/2 prior knowledge), or capture an HTTP/1.1 hop (proxy → app)"
	}
	return head + ": not HTTP",
		"check -p names the HTTP port: ss -ltnp shows which process listens where"
}

// rank orders checks by how directly they explain missing events: a
// capture that cannot start first, then what makes the traffic unreadable,
// then OTAS, then quality problems that lose only part of it.
func rank(name string) int {
	order := [...]string{"privileges", "interface", "snaplen", "traffic", "directions",
		"otas key", "otas auth", "otas ingest", "session tokens", "drops", "gaps", "checksums"}
	for i, n := range order {
		if n == name {
			return i
		}
	}
	return len(order)
}
