package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
)

// Errors OpenLive and a running LiveSource return, wrapped with the interface
// and libpcap's message. Test for them with errors.Is.
var (
	// ErrPermission: the process may not capture (needs root or CAP_NET_RAW
	// and CAP_NET_ADMIN).
	ErrPermission = errors.New("no permission to capture")
	// ErrNoSuchInterface: the named interface does not exist.
	ErrNoSuchInterface = errors.New("no such interface")
	// ErrInterfaceDown: the interface is down, went down, or disappeared.
	ErrInterfaceDown = errors.New("interface is down")
	// ErrBadFilter: libpcap could not compile the BPF filter.
	ErrBadFilter = errors.New("invalid capture filter")
)

// Defaults for LiveOptions.
const (
	// DefaultSnapLen keeps whole packets, also the 64 KiB ones that offloads
	// (GRO, TSO) hand to the capture on loopback, veth and most NICs. In
	// immediate mode libpcap's ring has one fixed slot of this size per
	// packet, so it is no bigger than that: tcpdump's 262144 would leave a
	// 64 MiB ring 256 slots, and bursts would be dropped.
	DefaultSnapLen = 65536 + 128
	// DefaultBufferSize is the kernel ring per interface: about 1000 packets
	// of any size, some 30 ms of 5,000 requests/s, to ride out a pause.
	DefaultBufferSize = 64 << 20
	// DefaultQueuePackets and DefaultQueueBytes bound the packets waiting
	// between capture and processing.
	DefaultQueuePackets = 16384
	DefaultQueueBytes   = 64 << 20
	// readTimeout is how long a read waits for a packet: how soon a quiet
	// interface notices a stop, and the batching delay without immediate mode.
	readTimeout = 100 * time.Millisecond
	// maxDrain bounds how long capture goes on reading what the kernel holds
	// after a stop.
	maxDrain = time.Second
	// statsEvery is how often each capture goroutine reads libpcap's counters.
	statsEvery = time.Second
)

// LiveOptions configures OpenLive.
type LiveOptions struct {
	// Interfaces to capture on; "any" is every interface (Linux).
	Interfaces []string
	// Filter is a BPF filter in libpcap syntax, applied in the kernel.
	Filter string
	// SnapLen is the bytes kept of each packet; 0 means DefaultSnapLen.
	SnapLen int
	// BufferSize is the kernel buffer per interface in bytes; 0 means
	// DefaultBufferSize.
	BufferSize int
	// Promisc puts the interfaces in promiscuous mode (not "any").
	Promisc bool
	// Immediate delivers each packet as it arrives instead of in blocks. Keep
	// it on: some kernels (Firecracker VMs among them) never expire TPACKET_V3
	// blocks, so without it packets on a quiet link arrive late or never.
	Immediate bool
	// QueuePackets and QueueBytes bound the packets waiting for processing.
	// A full queue makes capture wait, leaving packets in the kernel ring (whose
	// overflow is Stats.KernelDrops); a packet that would pass QueueBytes is
	// dropped and counted in Stats.QueueDrops. 0 means the defaults.
	QueuePackets int
	QueueBytes   int
	// Engine reads the packets: EngineLibpcap (the default) or EngineAFPacket.
	Engine string
	// Fanout is how many AF_PACKET sockets, each read by its own goroutine,
	// share an interface's packets by flow hash (EngineAFPacket only; 0 means 1).
	Fanout int
}

// Capture engines.
const (
	// EngineLibpcap captures through libpcap, which in immediate mode gives
	// every packet a ring slot of SnapLen bytes.
	EngineLibpcap = "libpcap"
	// EngineAFPacket reads a TPACKET_V3 ring directly: packets are packed into
	// blocks by their real size, so the same memory holds many more of them,
	// and the ring can be shared by several sockets (fanout).
	EngineAFPacket = "afpacket"
)

// Packet is one captured packet on its way from a capture goroutine to
// processing. Data lives in a pooled buffer: hand the packet back with
// LiveSource.Release when done with it and with the Segment decoded from it.
type Packet struct {
	Data        []byte
	CaptureInfo gopacket.CaptureInfo
	// Handle is the index of the interface in LiveSource.Interfaces.
	Handle int
	buf    []byte // the pooled buffer Data is cut from
}

// LiveInterface describes one open capture handle.
type LiveInterface struct {
	Name     string
	LinkType layers.LinkType
	SnapLen  int
}

// LiveSource captures on one or more interfaces through libpcap or AF_PACKET.
// Each interface (each socket of a fanout group) is read by its own
// goroutine, which copies packets into pooled buffers and sends them on one
// bounded queue; the consumer decodes them one at a time. When the queue is
// full, capture waits and the kernel ring holds the packets, dropping (and
// counting) what overflows it, so memory stays bounded however far processing
// falls behind.
type LiveSource struct {
	opts    LiveOptions
	ifaces  []LiveInterface
	handles []*liveHandle
	dec     *Decoder
	packets chan *Packet
	// pools hold packets with buffers of each of bufClasses' sizes.
	pools [len(bufClasses)]sync.Pool

	queueDrops atomic.Uint64
	queueBytes atomic.Int64

	startOnce sync.Once
	// closing is closed by Close: capture goroutines waiting on a full queue
	// give up.
	closing   chan struct{}
	closeOnce sync.Once
	stop      context.CancelFunc // ends the capture goroutines
	wg        sync.WaitGroup
	mu        sync.Mutex // guards err
	err       error

	// held is the packet whose segment Next returned last.
	held *Packet
}

type liveHandle struct {
	name string
	h    ring
	// The ring's counters, refreshed by the capture goroutine.
	received, kernelDrops, ifaceDrops atomic.Uint64
}

// ring is one open kernel capture socket, as a capture goroutine reads it.
// Only that goroutine may use it, apart from Close once it has stopped.
type ring interface {
	// ZeroCopyReadPacketData returns the next packet, valid until the next
	// call; errReadTimeout when none came within readTimeout.
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	// counters returns the packets the kernel handed the socket, those it
	// dropped for lack of room, and those the interface dropped.
	counters() (received, kernelDrops, ifaceDrops uint64, err error)
	// failure describes why a read failed, for the error message.
	failure() string
	LinkType() layers.LinkType
	SnapLen() int
	Close()
}

// errReadTimeout is a ring's "no packet within readTimeout".
var errReadTimeout = errors.New("read timeout")

// pcapRing is a libpcap handle as a ring.
type pcapRing struct{ *pcap.Handle }

func (r pcapRing) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := r.Handle.ZeroCopyReadPacketData()
	if errors.Is(err, pcap.NextErrorTimeoutExpired) {
		err = errReadTimeout
	}
	return data, ci, err
}

func (r pcapRing) counters() (received, kernelDrops, ifaceDrops uint64, err error) {
	st, err := r.Stats()
	if err != nil {
		return 0, 0, 0, err
	}
	return uint64(st.PacketsReceived), uint64(st.PacketsDropped), uint64(st.PacketsIfDropped), nil
}

func (r pcapRing) failure() string { return r.Error().Error() }

// bufClasses are the pooled buffer sizes: a full Ethernet frame, a jumbo frame,
// and offloaded super-packets. Bigger packets get a buffer of their own.
var bufClasses = [...]int{2048, 9216, DefaultSnapLen}

// OpenLive opens and activates a capture handle on every interface and sets the
// filter; packets are not read until Start. Opening is the step that needs
// privileges: afterwards they can be dropped.
func OpenLive(opts LiveOptions) (*LiveSource, error) {
	if len(opts.Interfaces) == 0 {
		return nil, errors.New("no interface given")
	}
	if opts.SnapLen <= 0 {
		opts.SnapLen = DefaultSnapLen
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.QueuePackets <= 0 {
		opts.QueuePackets = DefaultQueuePackets
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.Fanout <= 0 {
		opts.Fanout = 1
	}
	open := func(name string) ([]ring, error) {
		h, err := openHandle(name, opts)
		if err != nil {
			return nil, err
		}
		return []ring{pcapRing{h}}, nil
	}
	switch opts.Engine {
	case "", EngineLibpcap:
		if opts.Fanout > 1 {
			return nil, fmt.Errorf("fanout needs the %s engine", EngineAFPacket)
		}
	case EngineAFPacket:
		open = func(name string) ([]ring, error) { return openAFPacket(name, opts) }
	default:
		return nil, fmt.Errorf("unknown capture engine %q: use %s or %s", opts.Engine, EngineLibpcap, EngineAFPacket)
	}
	s := &LiveSource{opts: opts, dec: NewDecoder(), packets: make(chan *Packet, opts.QueuePackets), closing: make(chan struct{})}
	for i, c := range bufClasses {
		s.pools[i].New = func() any { return &Packet{buf: make([]byte, c)} }
	}
	seen := map[string]bool{}
	for _, name := range opts.Interfaces {
		if seen[name] {
			continue
		}
		seen[name] = true
		rings, err := open(name)
		if err != nil {
			s.closeHandles()
			return nil, err
		}
		lt := rings[0].LinkType()
		if !LinkTypeSupported(lt) {
			for _, r := range rings {
				r.Close()
			}
			s.closeHandles()
			return nil, fmt.Errorf("interface %s: link type %s (%d): %w; supported: %s",
				name, lt, int(lt), ErrUnsupportedLinkType, supportedLinkTypesText())
		}
		// Every ring of a fanout group reports as its interface.
		for _, r := range rings {
			s.handles = append(s.handles, &liveHandle{name: name, h: r})
		}
		s.ifaces = append(s.ifaces, LiveInterface{Name: name, LinkType: lt, SnapLen: rings[0].SnapLen()})
	}
	return s, nil
}

func openHandle(name string, opts LiveOptions) (*pcap.Handle, error) {
	in, err := pcap.NewInactiveHandle(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	defer in.CleanUp()
	for _, set := range []func() error{
		func() error { return in.SetSnapLen(opts.SnapLen) },
		func() error { return in.SetBufferSize(opts.BufferSize) },
		// "any" cannot be promiscuous; libpcap would only warn.
		func() error { return in.SetPromisc(opts.Promisc && name != "any") },
		func() error { return in.SetImmediateMode(opts.Immediate) },
		func() error { return in.SetTimeout(readTimeout) },
	} {
		if err := set(); err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
	}
	h, err := in.Activate()
	if err != nil {
		return nil, activateError(name, err)
	}
	if opts.Filter != "" {
		if err := h.SetBPFFilter(opts.Filter); err != nil {
			h.Close()
			return nil, fmt.Errorf("%w %q: %v", ErrBadFilter, opts.Filter, err)
		}
	}
	return h, nil
}

// activateError turns pcap_activate's status into one of our errors. gopacket
// reports libpcap's status codes by their text.
func activateError(name string, err error) error {
	msg := err.Error()
	lower := strings.ToLower(msg)
	switch {
	case msg == "Permission Denied" || strings.Contains(lower, "operation not permitted") || strings.Contains(lower, "permission denied"):
		return fmt.Errorf("interface %s: %w (%s)", name, ErrPermission, msg)
	case msg == "No Such Device" || strings.Contains(lower, "no such device"):
		return fmt.Errorf("interface %s: %w", name, ErrNoSuchInterface)
	case msg == "Interface Not Up" || strings.Contains(lower, "not up") || strings.Contains(lower, "network is down"):
		return fmt.Errorf("interface %s: %w", name, ErrInterfaceDown)
	}
	return fmt.Errorf("interface %s: %w", name, err)
}

// Interfaces describes the open handles, in the order of LiveOptions.Interfaces
// (repeats removed).
func (s *LiveSource) Interfaces() []LiveInterface { return slices.Clone(s.ifaces) }

// Start starts one capture goroutine per interface. They stop when ctx is
// done, when Close is called, or when an interface fails; Packets is closed
// once all have stopped. Start returns at once; calling it again does nothing.
func (s *LiveSource) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.stop = context.WithCancel(ctx)
		for _, h := range s.handles {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if err := s.capture(ctx, s.ifaceIndex(h.name), h); err != nil {
					s.setErr(err)
				}
			}()
		}
		go func() {
			s.wg.Wait()
			close(s.packets)
		}()
	})
}

// ifaceIndex is the index in s.ifaces of the interface called name.
func (s *LiveSource) ifaceIndex(name string) int {
	for i, in := range s.ifaces {
		if in.Name == name {
			return i
		}
	}
	return 0
}

func (s *LiveSource) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// Err returns the error that stopped capture (an interface that went down),
// or nil when it stopped because its context ended.
func (s *LiveSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// capture reads one interface until ctx ends or the handle fails. After ctx
// ends it still takes what the kernel captured up to that moment, so that a
// stop loses none of the traffic before it.
func (s *LiveSource) capture(ctx context.Context, idx int, lh *liveHandle) error {
	// The final counters are read here: the handle must not be used by two
	// goroutines, and Close closes it only after this returns.
	defer lh.readStats()
	nextStats := time.Now().Add(statsEvery)
	var stoppedAt time.Time
	for n := 0; ; n++ {
		if stoppedAt.IsZero() && ctx.Err() != nil {
			stoppedAt = time.Now()
		}
		if !stoppedAt.IsZero() && time.Since(stoppedAt) > maxDrain {
			return nil
		}
		// Reading the clock per packet would cost more than the stats.
		if n%256 == 0 && time.Now().After(nextStats) {
			lh.readStats()
			nextStats = time.Now().Add(statsEvery)
		}
		data, ci, err := lh.h.ZeroCopyReadPacketData()
		switch {
		case err == nil:
		case errors.Is(err, errReadTimeout):
			if !stoppedAt.IsZero() {
				return nil // the ring is empty
			}
			n = -1 // a quiet moment: read the stats on the next round
			continue
		case errors.Is(err, io.EOF):
			return nil
		default:
			if !stoppedAt.IsZero() {
				return nil
			}
			return fmt.Errorf("interface %s: %w: %v", lh.name, ErrInterfaceDown, lh.h.failure())
		}
		if !stoppedAt.IsZero() && ci.Timestamp.After(stoppedAt) {
			return nil
		}
		s.enqueue(data, ci, idx, lh)
	}
}

// enqueue copies one packet into a pooled buffer and queues it. When the
// queue is full it waits for room rather than dropping: meanwhile the kernel
// ring fills, which is where a burst is best absorbed (TPACKET_V3 packs
// packets by size), and what overflows it is counted as kernel drops.
func (s *LiveSource) enqueue(data []byte, ci gopacket.CaptureInfo, idx int, lh *liveHandle) {
	n := len(data)
	if s.queueBytes.Load()+int64(n) > int64(s.opts.QueueBytes) {
		s.queueDrops.Add(1)
		return
	}
	p := s.getPacket(n)
	p.CaptureInfo, p.Handle = ci, idx
	p.Data = p.buf[:n]
	copy(p.Data, data)
	s.queueBytes.Add(int64(n))
	select {
	case s.packets <- p:
		return
	default:
	}
	// The counters are kept fresh while waiting: the status line shows the
	// kernel's drops as they happen.
	tick := time.NewTicker(statsEvery)
	defer tick.Stop()
	for {
		select {
		case s.packets <- p:
			return
		case <-tick.C:
			lh.readStats()
		case <-s.closing:
			s.queueDrops.Add(1)
			s.Release(p)
			return
		}
	}
}

// getPacket takes a packet with a buffer of at least n bytes from the pools.
func (s *LiveSource) getPacket(n int) *Packet {
	for i, c := range bufClasses {
		if n <= c {
			return s.pools[i].Get().(*Packet)
		}
	}
	return &Packet{buf: make([]byte, n)}
}

// Packets is the queue of captured packets, closed when capture has stopped.
func (s *LiveSource) Packets() <-chan *Packet { return s.packets }

// Decode decodes a packet from Packets. The segment aliases the packet's
// buffer: it is valid until the packet is released or the next Decode. Decode
// and Release are for one goroutine.
func (s *LiveSource) Decode(p *Packet) (*Segment, bool) {
	seg, ok := s.dec.Decode(p.Data, p.CaptureInfo, s.ifaces[p.Handle].LinkType)
	if ok {
		seg.Source = s.ifaces[p.Handle].Name
	}
	return seg, ok
}

// Release returns a packet and its buffer to the pool.
func (s *LiveSource) Release(p *Packet) {
	s.queueBytes.Add(-int64(len(p.Data)))
	p.Data = nil
	for i, c := range bufClasses {
		if cap(p.buf) == c {
			s.pools[i].Put(p)
			return
		}
	}
}

// Next makes LiveSource a Source: it returns the next TCP segment, or io.EOF
// once capture has stopped and the queue is empty. It calls Start with ctx.
func (s *LiveSource) Next(ctx context.Context) (*Segment, error) {
	s.Start(ctx)
	if s.held != nil {
		s.Release(s.held)
		s.held = nil
	}
	for {
		p, ok := <-s.packets
		if !ok {
			if err := s.Err(); err != nil {
				return nil, err
			}
			return nil, io.EOF
		}
		seg, ok := s.Decode(p)
		if !ok {
			s.Release(p)
			continue
		}
		s.held = p
		return seg, nil
	}
}

// readStats copies libpcap's counters; called only by the capture goroutine,
// or before Start, since libpcap handles are not safe for concurrent use.
func (lh *liveHandle) readStats() {
	received, kernelDrops, ifaceDrops, err := lh.h.counters()
	if err != nil {
		return
	}
	lh.received.Store(received)
	lh.kernelDrops.Store(kernelDrops)
	lh.ifaceDrops.Store(ifaceDrops)
}

// Stats reports the decoder's counts, libpcap's drop counters (as of the last
// second) summed over the interfaces, and the queue drops. Safe from any
// goroutine.
func (s *LiveSource) Stats() Stats {
	st := s.dec.Stats()
	for _, h := range s.handles {
		st.KernelDrops += h.kernelDrops.Load()
		st.IfaceDrops += h.ifaceDrops.Load()
	}
	st.QueueDrops = s.queueDrops.Load()
	return st
}

// Close stops capture, waits for the capture goroutines (at most one read
// timeout), and closes the handles. Packets still queued stay readable.
func (s *LiveSource) Close() error {
	// Never started: end the queue so a reader does not wait forever.
	s.startOnce.Do(func() { close(s.packets) })
	s.closeOnce.Do(func() { close(s.closing) })
	if s.stop != nil {
		s.stop()
	}
	s.wg.Wait()
	s.closeHandles()
	return nil
}

// closeHandles closes every handle; their last counters stay readable.
func (s *LiveSource) closeHandles() {
	for _, h := range s.handles {
		h.h.Close()
	}
}

// InterfaceNames lists the interfaces libpcap can capture on, for messages
// that say which exist.
func InterfaceNames() []string {
	devs, err := pcap.FindAllDevs()
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(devs))
	for _, d := range devs {
		names = append(names, d.Name)
	}
	return names
}
