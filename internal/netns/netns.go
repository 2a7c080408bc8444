// Package netns builds throwaway Linux network namespaces for integration
// tests: namespaces joined by veth pairs with IPv4 and IPv6 addresses, Go code
// and commands run inside them, and everything removed when the test ends.
//
// Every helper needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); RequireRoot skips
// the test with a message when it is missing. Names carry a random suffix so
// parallel tests and parallel test binaries do not collide.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RequireRoot skips t unless the process can create network namespaces.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and veth pairs (run as root, as CI does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

// NS is a named network namespace, as `ip netns add` makes it.
type NS struct {
	Name string
}

// UniqueName returns prefix followed by random hex, at most 15 bytes so that it
// also fits an interface name.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if len(name) > 15 {
		name = name[len(name)-15:]
	}
	return name
}

// New creates a namespace named prefix plus a random suffix, with its loopback
// up, and deletes it when the test ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	n := &NS{Name: UniqueName(prefix)}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() {
		// Processes still inside keep the namespace alive; deleting the name is
		// what matters for the next run.
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	n.MustIP(t, "link", "set", "lo", "up")
	return n
}

// IP runs `ip -n NAME args...` and returns its combined output.
func (n *NS) IP(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip -n %s %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MustIP is IP that fails the test on error.
func (n *NS) MustIP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.IP(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Command returns a command that runs name inside the namespace (through `ip
// netns exec`, which execs it in place: the process is name itself, so
// signals sent to it reach it).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// MustRun runs a command inside the namespace and fails the test on error.
func (n *NS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Command(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v: %s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn on an OS thread that has joined the namespace. Sockets fn creates
// belong to the namespace for their whole life, whichever thread uses them
// later; goroutines fn starts do not run inside it.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// A thread that cannot return to its namespace is never unlocked, so
		// the runtime ends it with this goroutine instead of reusing it.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- fnErr
	}()
	return <-errc
}

// Listen opens a listener inside the namespace.
func (n *NS) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// DialContext connects from inside the namespace; it fits
// http.Transport.DialContext.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Veth joins two namespaces with a veth pair: devA in a, devB in b, both up.
func Veth(t testing.TB, a *NS, devA string, b *NS, devB string) {
	t.Helper()
	// Created inside a and moved straight to b, so the names never meet the
	// root namespace where parallel runs could collide.
	a.MustIP(t, "link", "add", devA, "type", "veth", "peer", "name", devB, "netns", b.Name)
	a.MustIP(t, "link", "set", devA, "up")
	b.MustIP(t, "link", "set", devB, "up")
}

// AddAddr puts addr (CIDR) on dev; IPv6 addresses skip duplicate address
// detection so they are usable at once.
func (n *NS) AddAddr(t testing.TB, dev, cidr string) {
	t.Helper()
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	n.MustIP(t, args...)
}

// Pair is two namespaces, a client and a server, joined by one veth pair.
type Pair struct {
	Client, Server       *NS
	ClientDev, ServerDev string
	ClientV4, ServerV4   netip.Addr
	ClientV6, ServerV6   netip.Addr
}

// NewPair makes a client and a server namespace joined by a veth pair, with
// 10.77.0.1/24 and fd77::1/64 on the client side and 10.77.0.2/24 and fd77::2/64
// on the server side. The addresses repeat across pairs: each pair is its own
// world.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{
		Client: New(t, "otc"), Server: New(t, "ots"),
		ClientDev: "vcli", ServerDev: "vsrv",
		ClientV4: netip.MustParseAddr("10.77.0.1"), ServerV4: netip.MustParseAddr("10.77.0.2"),
		ClientV6: netip.MustParseAddr("fd77::1"), ServerV6: netip.MustParseAddr("fd77::2"),
	}
	Veth(t, p.Client, p.ClientDev, p.Server, p.ServerDev)
	p.Client.AddAddr(t, p.ClientDev, p.ClientV4.String()+"/24")
	p.Client.AddAddr(t, p.ClientDev, p.ClientV6.String()+"/64")
	p.Server.AddAddr(t, p.ServerDev, p.ServerV4.String()+"/24")
	p.Server.AddAddr(t, p.ServerDev, p.ServerV6.String()+"/64")
	return p
}

// WaitReachable waits until a TCP connection from the client namespace to addr
// succeeds, which also settles ARP and neighbour discovery.
func (n *NS) WaitReachable(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := n.DialContext(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not reachable from %s: %v", addr, n.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
