package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/reassembly"
)

// Linux capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
)

// capabilities reads the effective capability set from /proc/self/status.
func capabilities() (eff uint64, err error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("parse CapEff %q: %w", v, err)
			}
			return eff, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}

// missingCaps names the capture capabilities absent from eff.
func missingCaps(eff uint64) []string {
	var miss []string
	if eff&(1<<capNetRaw) == 0 {
		miss = append(miss, "CAP_NET_RAW")
	}
	if eff&(1<<capNetAdmin) == 0 {
		miss = append(miss, "CAP_NET_ADMIN")
	}
	return miss
}

// privilegeCheck judges the capture privileges from CapEff and, when a capture
// was tried, from its outcome: libpcap's answer is what finally counts.
func privilegeCheck(openErr error, rerun string) Check {
	c := Check{Name: "privileges", Data: map[string]any{"euid": os.Geteuid()}}
	eff, capErr := capabilities()
	miss := missingCaps(eff)
	if capErr == nil {
		c.Data["cap_eff"] = fmt.Sprintf("%016x", eff)
		c.Data["missing"] = append([]string{}, miss...)
	}
	fix := "sudo " + rerun + "   (or once: sudo setcap cap_net_raw,cap_net_admin+eip $(command -v otas-sniff))"
	switch {
	case errors.Is(openErr, capture.ErrPermission):
		c.Status, c.Next = Fail, fix
		if capErr == nil && len(miss) > 0 {
			c.Reason = fmt.Sprintf("cannot open the interface: %s missing (CapEff %016x, uid %d)", strings.Join(miss, " and "), eff, os.Geteuid())
		} else {
			c.Reason = fmt.Sprintf("cannot open the interface: %v", openErr)
		}
	case capErr != nil:
		c.Status, c.Reason = OK, "could open the interface (capabilities unreadable: "+capErr.Error()+")"
	case len(miss) == 0:
		c.Status = OK
		c.Reason = "can capture: CAP_NET_RAW and CAP_NET_ADMIN are effective"
		if os.Geteuid() == 0 {
			c.Reason += " (root)"
		}
	case openErr == nil || errors.Is(openErr, capture.ErrNoSuchInterface) || errors.Is(openErr, capture.ErrInterfaceDown):
		// Opened anyway (a capture helper, or only CAP_NET_ADMIN is absent).
		c.Status, c.Next = Warn, fix
		c.Reason = fmt.Sprintf("%s not effective (CapEff %016x); capture opened regardless, promiscuous mode may fail", strings.Join(miss, " and "), eff)
	default:
		c.Status, c.Next = Fail, fix
		c.Reason = fmt.Sprintf("%s missing (CapEff %016x, uid %d)", strings.Join(miss, " and "), eff, os.Geteuid())
	}
	return c
}

// ifaceState is what the system says about the interface asked for.
type ifaceState struct {
	exists, up, running bool
	addrs               []string
	others              []string // every other interface
}

func inspectInterface(name string) ifaceState {
	st := ifaceState{addrs: []string{}}
	all, _ := net.Interfaces()
	for _, i := range all {
		if i.Name != name {
			st.others = append(st.others, i.Name)
			continue
		}
		st.exists = true
		st.up = i.Flags&net.FlagUp != 0
		st.running = i.Flags&net.FlagRunning != 0
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			st.addrs = append(st.addrs, a.String())
		}
	}
	if name == "any" {
		st.exists, st.up, st.running = true, true, true
	}
	return st
}

// localAddrs are the addresses of this host (its network namespace), to tell
// packets it sent from packets it received.
func localAddrs() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			m[p.Addr().Unmap()] = true
		}
	}
	return m
}

// maxSampled bounds how many other interfaces are sampled at once.
const maxSampled = 64

// sampler counts packets to the port on the interfaces not asked for, during
// the same window, to say where the traffic is when it is not on -i.
type sampler struct {
	wg     sync.WaitGroup
	counts map[string]*atomic.Uint64
}

// startSampler opens every up interface but skip with the port filter and
// counts what arrives until ctx ends. Interfaces that cannot be opened are
// left out: the sample is a hint, not a check of its own.
func startSampler(ctx context.Context, skip, filter string) *sampler {
	s := &sampler{counts: map[string]*atomic.Uint64{}}
	all, _ := net.Interfaces()
	for _, i := range all {
		if i.Name == skip || i.Flags&net.FlagUp == 0 {
			continue
		}
		// A node with hundreds of pod veths would pin too much ring memory.
		if len(s.counts) >= maxSampled {
			break
		}
		src, err := capture.OpenLive(capture.LiveOptions{
			Interfaces: []string{i.Name}, Filter: filter, SnapLen: 128,
			BufferSize: 512 << 10, Immediate: true, QueuePackets: 256,
		})
		if err != nil {
			continue
		}
		n := &atomic.Uint64{}
		s.counts[i.Name] = n
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			src.Start(ctx)
			for p := range src.Packets() {
				n.Add(1)
				src.Release(p)
			}
			src.Close()
		}()
	}
	return s
}

// busy waits for the sampling to end and lists the interfaces that saw
// packets, most first.
func (s *sampler) busy() []ifaceCount {
	s.wg.Wait()
	var out []ifaceCount
	for name, n := range s.counts {
		if v := n.Load(); v > 0 {
			out = append(out, ifaceCount{name, v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].packets != out[j].packets {
			return out[i].packets > out[j].packets
		}
		return out[i].name < out[j].name
	})
	return out
}

type ifaceCount struct {
	name    string
	packets uint64
}

func (c ifaceCount) String() string { return fmt.Sprintf("%s (%d packets)", c.name, c.packets) }

// liveResult is what one live window produced.
type liveResult struct {
	openErr error
	// runErr is what stopped the capture early (the interface went down).
	runErr    error
	stats     capture.Stats
	an        *analyzer
	watched   time.Duration
	elsewhere []ifaceCount
	snapLen   int
}

// watchLive captures on o.Interface for o.For through the real capture stage and feeds
// the analyzer, while sampling the other interfaces.
func watchLive(ctx context.Context, o *Options) liveResult {
	var r liveResult
	filter := o.Ports.BPF()
	src, err := capture.OpenLive(capture.LiveOptions{
		Interfaces: []string{o.Interface}, Filter: filter, SnapLen: o.SnapLen,
		BufferSize: 16 << 20, Promisc: true, Immediate: true,
	})
	if err != nil {
		r.openErr = err
		return r
	}
	r.snapLen = o.SnapLen
	if ifs := src.Interfaces(); len(ifs) == 1 {
		r.snapLen = ifs[0].SnapLen
	}
	wctx, cancel := context.WithTimeout(ctx, o.For)
	defer cancel()
	var smp *sampler
	if o.Interface != "any" {
		smp = startSampler(wctx, o.Interface, filter)
	}
	r.an = newAnalyzer(o.Ports, localAddrs(), o.Reassembly)
	start := time.Now()
	o.Logger.Info("watching", "interface", o.Interface, "ports", o.Ports.String(), "for", o.For)
	for {
		seg, err := src.Next(wctx)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.runErr = err
			}
			break
		}
		r.an.feed(seg)
	}
	r.watched = time.Since(start)
	src.Close()
	r.stats = src.Stats()
	r.an.finish(reassembly.Stopped)
	if smp != nil {
		r.elsewhere = smp.busy()
	}
	return r
}
