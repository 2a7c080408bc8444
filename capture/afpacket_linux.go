//go:build linux

package capture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The AF_PACKET ring: 1 MiB blocks (room for any offloaded super-packet), as
// many as BufferSize allows, and a block handed over at the latest after
// afBlockTimeout even when not full, so a quiet link is not held back.
const (
	afBlockSize          = 1 << 20
	afFrameSize          = 4096
	afBlockTimeout       = 4 * time.Millisecond
	afBlockTimeoutBatch  = 64 * time.Millisecond
	afMinBlocksPerSocket = 2
)

// afRing is one TPACKET_V3 socket. Sockets are SOCK_DGRAM: the kernel strips
// the link header, so every interface (and "any") yields raw IP alike.
type afRing struct {
	tp      *afpacket.TPacket
	snapLen int
	lastErr error
}

// openAFPacket opens opts.Fanout sockets on the interface name ("any": all
// interfaces), sharing its packets by flow hash when more than one.
func openAFPacket(name string, opts LiveOptions) ([]ring, error) {
	iface := "" // every interface
	ifIndex := 0
	if name != "any" {
		in, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, ErrNoSuchInterface)
		}
		if in.Flags&net.FlagUp == 0 {
			return nil, fmt.Errorf("interface %s: %w", name, ErrInterfaceDown)
		}
		iface, ifIndex = name, in.Index
	}
	// The filter's accept value is the snap length the kernel cuts packets to.
	filter := opts.Filter
	if filter == "" {
		filter = "ip or ip6"
	}
	// libpcap compiles for a DLT value, and Linux's DLT_RAW is 12 (101 is
	// the LINKTYPE_RAW of capture files, which LinkType reports).
	insns, err := pcap.CompileBPFFilter(linkTypeRaw12, opts.SnapLen, filter)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadFilter, opts.Filter, err)
	}
	var prog []bpf.RawInstruction
	if lo, err := net.InterfaceByName("lo"); err == nil && (iface == "" || ifIndex == lo.Index) {
		// Loopback hands a packet socket each packet twice, going out and
		// coming in; keep one, as libpcap does. Jumps are relative, so the
		// compiled program can follow unchanged.
		if prog, err = bpf.Assemble([]bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: 3},
			bpf.LoadExtension{Num: bpf.ExtInterfaceIndex},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(lo.Index), SkipFalse: 1},
			bpf.RetConstant{Val: 0},
		}); err != nil {
			return nil, fmt.Errorf("interface %s: loopback filter: %w", name, err)
		}
	}
	for _, in := range insns {
		prog = append(prog, bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K})
	}
	blocks := max(opts.BufferSize/afBlockSize/opts.Fanout, afMinBlocksPerSocket)
	timeout := afBlockTimeoutBatch
	if opts.Immediate {
		timeout = afBlockTimeout
	}
	var rings []ring
	closeAll := func() {
		for _, r := range rings {
			r.Close()
		}
	}
	// Fanout group ids are global to the host: derive one from the process and
	// the interface so another capture's group is not joined by accident.
	group := uint16(os.Getpid()*131 + ifIndex)
	for range opts.Fanout {
		tp, err := afpacket.NewTPacket(
			afpacket.OptInterface(iface),
			afpacket.SocketDgram,
			afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
			afpacket.OptFrameSize(afFrameSize),
			afpacket.OptBlockSize(afBlockSize),
			afpacket.OptNumBlocks(blocks),
			afpacket.OptBlockTimeout(timeout),
			afpacket.OptPollTimeout(readTimeout),
		)
		if err != nil {
			closeAll()
			return nil, afpacketError(name, err)
		}
		r := &afRing{tp: tp, snapLen: opts.SnapLen}
		rings = append(rings, r)
		if err := tp.SetBPF(prog); err != nil {
			closeAll()
			return nil, fmt.Errorf("interface %s: attach filter: %w", name, err)
		}
		if opts.Promisc && iface != "" {
			if err := tp.SetPromiscuous(true); err != nil {
				closeAll()
				return nil, fmt.Errorf("interface %s: promiscuous mode: %w", name, err)
			}
		}
		if opts.Fanout > 1 {
			if err := tp.SetFanout(afpacket.FanoutHash, group); err != nil {
				closeAll()
				return nil, fmt.Errorf("interface %s: fanout: %w", name, err)
			}
		}
	}
	return rings, nil
}

// afpacketError maps socket errors to the errors libpcap's would give.
func afpacketError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("interface %s: %w (%v)", name, ErrPermission, err)
	case errors.Is(err, syscall.ENODEV):
		return fmt.Errorf("interface %s: %w", name, ErrNoSuchInterface)
	case errors.Is(err, syscall.ENETDOWN):
		return fmt.Errorf("interface %s: %w", name, ErrInterfaceDown)
	}
	return fmt.Errorf("interface %s: AF_PACKET: %w", name, err)
}

func (r *afRing) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := r.tp.ZeroCopyReadPacketData()
	switch {
	case err == nil:
		return data, ci, nil
	case errors.Is(err, afpacket.ErrTimeout):
		return nil, ci, errReadTimeout
	}
	r.lastErr = err
	return nil, ci, err
}

func (r *afRing) counters() (received, kernelDrops, ifaceDrops uint64, err error) {
	_, v3, err := r.tp.SocketStats()
	if err != nil {
		return 0, 0, 0, err
	}
	return uint64(v3.Packets()), uint64(v3.Drops()), 0, nil
}

func (r *afRing) failure() string {
	if errors.Is(r.lastErr, afpacket.ErrPoll) {
		return "the socket reported an error (interface removed?)"
	}
	return fmt.Sprint(r.lastErr)
}

func (r *afRing) LinkType() layers.LinkType { return layers.LinkTypeRaw }
func (r *afRing) SnapLen() int              { return r.snapLen }
func (r *afRing) Close()                    { r.tp.Close() }
