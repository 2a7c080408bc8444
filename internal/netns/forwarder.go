package netns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Impairment says what a FrameForwarder does to the frames it carries.
type Impairment struct {
	// SwapPercent of frames are held back and sent after the next frame of
	// the same direction (or after HoldMillis when none follows).
	SwapPercent int
	// DupPercent of frames are sent twice.
	DupPercent int
	// HoldMillis bounds how long a held frame waits; 0 means 5 ms.
	HoldMillis int
}

// ForwarderStats counts what a FrameForwarder did.
type ForwarderStats struct {
	Frames, Swapped, Duplicated atomic.Uint64
}

// Routed is a client and a server namespace on one link layer, with a router
// namespace in the middle whose FrameForwarder carries every frame between
// them in user space, reordering and duplicating as told.
type Routed struct {
	Pair
	Router *NS
	Stats  *ForwarderStats
}

// NewRouted builds client <-> router <-> server with the addresses of NewPair
// (client and server share a subnet: the router is a bridge) and starts the
// forwarder. Offloads stay on: frames cross the router with their virtio-net
// header, so checksums and segmentation are finished by the kernel.
func NewRouted(t testing.TB, imp Impairment) *Routed {
	t.Helper()
	r := &Routed{
		Pair: Pair{
			Client: New(t, "otc"), Server: New(t, "ots"),
			ClientDev: "vcli", ServerDev: "vsrv",
			ClientV4: netip.MustParseAddr("10.77.0.1"), ServerV4: netip.MustParseAddr("10.77.0.2"),
			ClientV6: netip.MustParseAddr("fd77::1"), ServerV6: netip.MustParseAddr("fd77::2"),
		},
		Router: New(t, "otr"),
	}
	Veth(t, r.Client, r.ClientDev, r.Router, "ra")
	Veth(t, r.Router, "rb", r.Server, r.ServerDev)
	r.Client.AddAddr(t, r.ClientDev, r.ClientV4.String()+"/24")
	r.Client.AddAddr(t, r.ClientDev, r.ClientV6.String()+"/64")
	r.Server.AddAddr(t, r.ServerDev, r.ServerV4.String()+"/24")
	r.Server.AddAddr(t, r.ServerDev, r.ServerV6.String()+"/64")
	stats, err := StartFrameForwarder(t, r.Router, "ra", "rb", imp)
	if err != nil {
		t.Fatal(err)
	}
	r.Stats = stats
	return r
}

// virtioNetHdrLen is the size of struct virtio_net_hdr that PACKET_VNET_HDR
// puts before each frame.
const virtioNetHdrLen = 10

// StartFrameForwarder carries every frame between devA and devB (both in ns)
// through AF_PACKET sockets, with the impairments given, until the test ends.
func StartFrameForwarder(t testing.TB, ns *NS, devA, devB string, imp Impairment) (*ForwarderStats, error) {
	t.Helper()
	if imp.HoldMillis <= 0 {
		imp.HoldMillis = 5
	}
	ns.MustIP(t, "link", "set", devA, "promisc", "on")
	ns.MustIP(t, "link", "set", devB, "promisc", "on")
	var fds [2]int
	for i, dev := range []string{devA, devB} {
		err := ns.Do(func() error {
			fd, err := openPacketSocket(dev)
			fds[i] = fd
			return err
		})
		if err != nil {
			if i == 1 {
				unix.Close(fds[0])
			}
			return nil, err
		}
	}
	// Closing a socket does not wake a poll on it; a pipe does.
	var stop [2]int
	if err := unix.Pipe2(stop[:], unix.O_CLOEXEC); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	stats := &ForwarderStats{}
	var wg sync.WaitGroup
	var stopping atomic.Bool
	for dir := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each direction has its own randomness so runs differ but never race.
			rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(dir)))
			err := forward(fds[dir], fds[1-dir], stop[0], imp, rng, stats)
			if err != nil && !stopping.Load() {
				t.Logf("frame forwarder %s: %v", []string{devA + "->" + devB, devB + "->" + devA}[dir], err)
			}
		}()
	}
	t.Cleanup(func() {
		stopping.Store(true)
		unix.Write(stop[1], []byte{1})
		wg.Wait()
		for _, fd := range []int{fds[0], fds[1], stop[0], stop[1]} {
			unix.Close(fd)
		}
	})
	return stats, nil
}

func openPacketSocket(dev string) (int, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, err
	}
	proto := htons(unix.ETH_P_ALL)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return -1, fmt.Errorf("packet socket on %s: %w", dev, err)
	}
	// Frames come and go with their offload state, so a 64 KiB TSO frame is
	// sent on as one and segmented by the kernel, checksums included.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("PACKET_VNET_HDR on %s: %w", dev, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket to %s: %w", dev, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// forward reads frames arriving on in and sends them out on out.
func forward(in, out, stop int, imp Impairment, rng *rand.Rand, stats *ForwarderStats) error {
	buf := make([]byte, virtioNetHdrLen+65536+512)
	var held []byte
	send := func(frame []byte) error {
		_, err := unix.Write(out, frame)
		// A frame the peer cannot take (its side going away) is lost, as on a
		// wire.
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENXIO) {
			return nil
		}
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
	for {
		timeout := -1
		if held != nil {
			timeout = imp.HoldMillis
		}
		n, err := unix.Poll(pfd, timeout)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			// Nothing followed the held frame in time: send it late.
			if err := send(held); err != nil {
				return err
			}
			held = nil
			continue
		}
		if pfd[1].Revents != 0 {
			return nil
		}
		if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return fmt.Errorf("socket closed (events %#x)", pfd[0].Revents)
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			continue
		}
		size, from, err := unix.Recvfrom(in, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		// Our own sends show up on the socket as outgoing frames.
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		stats.Frames.Add(1)
		frame := append([]byte(nil), buf[:size]...)
		if held == nil && rng.IntN(100) < imp.SwapPercent {
			held = frame
			stats.Swapped.Add(1)
			continue
		}
		if err := send(frame); err != nil {
			return err
		}
		if rng.IntN(100) < imp.DupPercent {
			stats.Duplicated.Add(1)
			if err := send(frame); err != nil {
				return err
			}
		}
		if held != nil {
			if err := send(held); err != nil {
				return err
			}
			held = nil
		}
	}
}
