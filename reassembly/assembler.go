package reassembly

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	gpr "github.com/gopacket/gopacket/reassembly"
)

// Options bounds what the Assembler buffers and how long it waits.
type Options struct {
	// MaxBufferedBytesPerConn caps out-of-order bytes held for one connection;
	// beyond it the oldest hole is given up as a gap. 0 means 1 MiB.
	MaxBufferedBytesPerConn int
	// MaxBufferedBytes caps out-of-order bytes held for all connections. 0 means
	// 64 MiB.
	MaxBufferedBytes int
	// ReorderWait is how long a hole may wait for its missing segment before it
	// is given up as a gap. 0 means 2 s.
	ReorderWait time.Duration
	// IdleTimeout closes a connection that has seen no packet for this long. 0
	// means 2 min.
	IdleTimeout time.Duration
	// MaxStreams caps the connections tracked at once: opening one more closes
	// the one idle longest with reason Evicted, freeing its parser state and
	// its reassembly state; if it sends again it is a new connection to which
	// the capture came mid-stream. 0 means no cap.
	MaxStreams int
}

func (o *Options) setDefaults() {
	if o.MaxBufferedBytesPerConn == 0 {
		o.MaxBufferedBytesPerConn = 1 << 20
	}
	if o.MaxBufferedBytes == 0 {
		o.MaxBufferedBytes = 64 << 20
	}
	if o.ReorderWait == 0 {
		o.ReorderWait = 2 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
}

// gopacket buffers out-of-order data in pages of this many bytes.
const pageSize = 1900

// Stats counts what the Assembler did.
type Stats struct {
	Segments       uint64 // TCP segments assembled
	Connections    uint64 // connections opened
	MidStream      uint64 // connections whose SYN was not captured
	Closed         uint64 // connections closed by FIN or RST
	IdleClosed     uint64 // connections closed by the idle timeout
	Open           int64  // connections open now
	Gaps           uint64 // holes given up as lost
	GapBytes       uint64 // bytes in those holes
	OutOfOrder     uint64 // segments buffered until the bytes before them came
	OverlapBytes   uint64 // retransmitted or overlapping bytes discarded
	OverlapPackets uint64
	Evicted        uint64 // streams closed to stay under MaxStreams
	// FarSegments are data segments dropped for lying further than any TCP
	// window from the bytes held for their direction.
	FarSegments uint64
}

type counters struct {
	segments, connections, midStream, closed, idleClosed     atomic.Uint64
	gaps, gapBytes, outOfOrder, overlapBytes, overlapPackets atomic.Uint64
	evicted, farSegments                                     atomic.Uint64
	open                                                     atomic.Int64
}

// Assembler reassembles TCP segments into Streams. It is not safe for concurrent
// use; run one per goroutine, each with its own share of the connections.
type Assembler struct {
	opts     Options
	factory  StreamFactory
	asm      *gpr.Assembler
	c        counters
	now      time.Time // capture time of the newest segment
	lastScan time.Time
	// reason is what a ReassemblyComplete call during the current operation
	// means: Closed while assembling, IdleTimeout while flushing.
	reason CloseReason
	// rst is a stream whose RST was accepted during the current segment.
	rst *stream
	// closingPeer is set while resetPeer hands gopacket the peer's RST, which
	// the closed stream must accept.
	closingPeer bool
	// contexts is a slab the per-segment contexts are carved from: gopacket
	// keeps a segment's context with its bytes while they wait out of order, so
	// each needs its own, and a slab makes that one allocation per
	// contextSlab segments instead of one per segment.
	contexts []assembleContext
	// idle lists the open streams, most recently active first, so the one
	// idle longest is evicted when MaxStreams is reached.
	idle streamList
	// evicted are the streams evicted during the current segment, whose
	// connections gopacket is made to forget once it has returned: it must not
	// be re-entered from its callbacks.
	evicted []*stream
	// forgetting is the evicted stream whose connection is being reset; its
	// Accept takes the synthesized RSTs.
	forgetting *stream
	// forgetSeq is where gopacket expects the next byte of the half being
	// reset, learnt from a RST it was refused at another sequence number; -1
	// until then.
	forgetSeq gpr.Sequence
	// pieces are the parts of the current segment that overlap no bytes
	// gopacket holds out of order (see keepFirstSeen), fed once gopacket has
	// refused the whole segment; refeeding is set while they are.
	pieces    []piece
	refeeding bool
	// piece and synth are reused for the segments the Assembler makes up, as
	// gopacket keeps no reference to a segment after it returns; synthHdr
	// holds the header synth is decoded from.
	piece, synth layers.TCP
	synthHdr     [20]byte
}

const contextSlab = 1024

// NewAssembler returns an Assembler that creates a Stream per connection with
// factory.
func NewAssembler(factory StreamFactory, opts Options) *Assembler {
	opts.setDefaults()
	a := &Assembler{opts: opts, factory: factory}
	a.asm = gpr.NewAssembler(gpr.NewStreamPool(&gpFactory{a: a}))
	a.asm.MaxBufferedPagesPerConnection = (opts.MaxBufferedBytesPerConn + pageSize - 1) / pageSize
	a.asm.MaxBufferedPagesTotal = (opts.MaxBufferedBytes + pageSize - 1) / pageSize
	return a
}

// Options returns the options in effect, defaults filled in.
func (a *Assembler) Options() Options { return a.opts }

type captureContext gopacket.CaptureInfo

func (c *captureContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*c) }

// contextTime is ac's capture time, read in place from the contexts Assemble
// makes (GetCaptureInfo copies the whole CaptureInfo, once per segment).
func contextTime(ac gpr.AssemblerContext) time.Time {
	if c, ok := ac.(*assembleContext); ok {
		return c.Timestamp
	}
	return ac.GetCaptureInfo().Timestamp
}

// Assemble adds one segment. netFlow is its IP source and destination, src the
// name of where it was captured.
func (a *Assembler) Assemble(netFlow gopacket.Flow, tcp *layers.TCP, ci gopacket.CaptureInfo, src string) {
	a.c.segments.Add(1)
	if ci.Timestamp.After(a.now) {
		a.now = ci.Timestamp
	}
	// Flush on capture time, so a replay times out streams as a live run would;
	// before this segment, since the holes and idle streams expired before it.
	if a.now.Sub(a.lastScan) >= time.Second {
		a.lastScan = a.now
		a.flushOlder(a.now)
	}
	if len(a.contexts) == 0 {
		a.contexts = make([]assembleContext, contextSlab)
	}
	ctx := &a.contexts[0]
	a.contexts = a.contexts[1:]
	*ctx = assembleContext{captureContext: captureContext(ci), source: src}
	a.asm.AssembleWithContext(netFlow, tcp, ctx)
	if len(a.pieces) > 0 {
		a.feedPieces(netFlow, tcp, ctx)
	}
	if s := a.rst; s != nil {
		a.rst = nil
		s.close(Closed, ci.Timestamp)
		a.resetPeer(netFlow, tcp, ctx)
	}
	if len(a.evicted) > 0 {
		a.forgetEvicted(ctx)
	}
}

// feedPieces hands gopacket the pieces of a segment it was refused, each with
// the segment's header.
func (a *Assembler) feedPieces(netFlow gopacket.Flow, tcp *layers.TCP, ctx *assembleContext) {
	a.refeeding = true
	for _, p := range a.pieces {
		a.piece = *tcp
		a.piece.Seq = tcp.Seq + uint32(p.off)
		a.piece.Payload = tcp.Payload[p.off : p.off+p.n]
		a.piece.FIN = p.fin
		a.asm.AssembleWithContext(netFlow, &a.piece, ctx)
	}
	a.refeeding = false
	a.pieces = a.pieces[:0]
}

// forgetEvicted makes gopacket drop the connections of the streams just
// evicted: it keeps a connection, with its buffered pages, until both halves
// are closed by FIN, RST or the idle timeout, so without this a flood of new
// connections would grow its pool past MaxStreams for the idle timeout. A RST
// at each half's next sequence number closes both, and gopacket then removes
// the connection from its pool.
func (a *Assembler) forgetEvicted(ctx *assembleContext) {
	for i, s := range a.evicted {
		a.evicted[i] = nil
		netFlow, ok := s.netFlow()
		if !ok {
			continue
		}
		a.forgetting = s
		src, dst := s.ports()
		a.resetHalf(netFlow, src, dst, ctx)
		a.resetHalf(netFlow.Reverse(), dst, src, ctx)
	}
	a.forgetting = nil
	a.evicted = a.evicted[:0]
}

// resetHalf closes the half of the connection being forgotten that sends from
// src to dst. The first RST is refused unless it lands where gopacket expects
// the next byte, and that refusal tells where: the second one is sent there.
func (a *Assembler) resetHalf(netFlow gopacket.Flow, src, dst layers.TCPPort, ctx *assembleContext) {
	a.forgetSeq = -1
	rst := a.synthRST(src, dst, 0)
	if rst == nil {
		return
	}
	a.asm.AssembleWithContext(netFlow, rst, ctx)
	if a.forgetSeq >= 0 {
		rst = a.synthRST(src, dst, uint32(a.forgetSeq))
		a.asm.AssembleWithContext(netFlow, rst, ctx)
	}
}

// synthRST returns a RST from src to dst at seq, decoded from its wire form
// so that gopacket finds its ports (layers.TCP keeps them from decoding).
func (a *Assembler) synthRST(src, dst layers.TCPPort, seq uint32) *layers.TCP {
	hdr := a.synthHdr[:]
	clear(hdr)
	binary.BigEndian.PutUint16(hdr[0:], uint16(src))
	binary.BigEndian.PutUint16(hdr[2:], uint16(dst))
	binary.BigEndian.PutUint32(hdr[4:], seq)
	hdr[12] = 5 << 4 // data offset: 20 bytes
	hdr[13] = 0x04   // RST
	if a.synth.DecodeFromBytes(hdr, gopacket.NilDecodeFeedback) != nil {
		return nil
	}
	return &a.synth
}

// resetPeer ends the other half of a connection whose RST gopacket just took:
// gopacket closes only the half that sent the RST and keeps the connection
// until the idle timeout, so a new connection on the same addresses and ports
// (a new SYN) would be taken for the old one and dropped. A RST that
// acknowledges the peer's bytes says where the peer's half stands; a RST at
// that point, in the peer's direction, closes it and gopacket forgets the
// connection.
func (a *Assembler) resetPeer(netFlow gopacket.Flow, rst *layers.TCP, ctx *assembleContext) {
	if !rst.ACK {
		return
	}
	peer := a.synthRST(rst.DstPort, rst.SrcPort, rst.Ack)
	if peer == nil {
		return
	}
	a.closingPeer = true
	a.asm.AssembleWithContext(netFlow.Reverse(), peer, ctx)
	a.closingPeer = false
}

type assembleContext struct {
	captureContext
	source string
}

// Tick lets a live capture time out streams when no packet arrives.
func (a *Assembler) Tick(now time.Time) {
	if now.After(a.now) {
		a.now = now
	}
	a.lastScan = a.now
	a.flushOlder(a.now)
}

func (a *Assembler) flushOlder(now time.Time) {
	a.reason = IdleTimeout
	a.asm.FlushWithOptions(gpr.FlushOptions{T: now.Add(-a.opts.ReorderWait), TC: now.Add(-a.opts.IdleTimeout)})
	a.reason = Closed
}

// FlushAll delivers everything buffered and closes every stream with reason
// (EndOfCapture at the end of a file, Stopped when a live capture stops).
func (a *Assembler) FlushAll(reason CloseReason) {
	a.reason = reason
	a.asm.FlushAll()
	a.reason = Closed
}

// Stats returns a snapshot of the counters; safe from any goroutine.
func (a *Assembler) Stats() Stats {
	c := &a.c
	return Stats{
		Segments: c.segments.Load(), Connections: c.connections.Load(), MidStream: c.midStream.Load(),
		Closed: c.closed.Load(), IdleClosed: c.idleClosed.Load(), Open: c.open.Load(),
		Gaps: c.gaps.Load(), GapBytes: c.gapBytes.Load(), OutOfOrder: c.outOfOrder.Load(),
		OverlapBytes: c.overlapBytes.Load(), OverlapPackets: c.overlapPackets.Load(),
		Evicted: c.evicted.Load(), FarSegments: c.farSegments.Load(),
	}
}

type gpFactory struct{ a *Assembler }

func (f *gpFactory) New(netFlow, tcpFlow gopacket.Flow, tcp *layers.TCP, ac gpr.AssemblerContext) gpr.Stream {
	// A bare ACK, FIN or RST of a connection gopacket does not know (the last
	// ACK after both FINs closed it, say) opens nothing: gopacket would keep an
	// empty connection until the idle timeout, and memory would grow with the
	// number of connections a capture ever had.
	if !tcp.SYN && len(tcp.Payload) == 0 {
		return nil
	}
	a := f.a
	src := addrPort(netFlow.Src(), tcpFlow.Src())
	dst := addrPort(netFlow.Dst(), tcpFlow.Dst())
	s := &stream{a: a}
	switch netFlow.EndpointType() {
	case layers.EndpointIPv4:
		s.ipVersion = 4
	case layers.EndpointIPv6:
		s.ipVersion = 6
	}
	conn := Conn{Initiator: src, Responder: dst}
	switch {
	case tcp.SYN && !tcp.ACK:
		conn.SYNSeen = true
	case tcp.SYN && tcp.ACK:
		// The SYN was missed but its answer says who opened the connection.
		conn.Initiator, conn.Responder = dst, src
		conn.SYNSeen = true
		s.swapped = true
	}
	if ctx, ok := ac.(*assembleContext); ok {
		conn.Source = ctx.source
	}
	s.conn = conn
	return s
}

func addrPort(ip, port gopacket.Endpoint) netip.AddrPort {
	addr, _ := netip.AddrFromSlice(ip.Raw())
	p := port.Raw()
	var n uint16
	if len(p) == 2 {
		n = uint16(p[0])<<8 | uint16(p[1])
	}
	return netip.AddrPortFrom(addr.Unmap(), n)
}

// stream adapts gopacket's per-connection callbacks to a Stream.
type stream struct {
	a    *Assembler
	conn Conn
	// next is created by parser when it is first handed something, so a
	// connection that only sent a SYN costs no parser state while it waits.
	next Stream
	// swapped: gopacket's client-to-server direction is our Responder side.
	swapped bool
	closed  bool
	// open is set from the first SYN or payload until the stream is closed
	// or evicted: the last ACK of a closed connection, seen after gopacket
	// forgot it, opens no stream.
	open bool
	// ended is set per direction (dirIndex) once gopacket has closed it.
	ended [2]bool
	// ipVersion is that of the network flow gopacket keys the connection
	// with (0 if neither), to rebuild the flow from conn (see netFlow).
	ipVersion uint8
	// older and newer link the stream into Assembler.idle while open.
	older, newer *stream
	// held tracks the bytes gopacket holds out of order; nil until some are.
	held *heldRanges
}

// netFlow rebuilds the network flow gopacket keys the connection with, in the
// direction of the packet that opened it, from conn rather than keeping a copy
// in every stream: a SYN flood costs memory per stream.
func (s *stream) netFlow() (gopacket.Flow, bool) {
	src, dst := s.conn.Initiator.Addr(), s.conn.Responder.Addr()
	if s.swapped {
		src, dst = dst, src
	}
	if !src.IsValid() || !dst.IsValid() {
		return gopacket.Flow{}, false
	}
	switch s.ipVersion {
	case 4:
		if !src.Is4() || !dst.Is4() {
			return gopacket.Flow{}, false
		}
		a, b := src.As4(), dst.As4()
		return gopacket.NewFlow(layers.EndpointIPv4, a[:], b[:]), true
	case 6:
		// As16 maps back what addrPort unmapped.
		a, b := src.As16(), dst.As16()
		return gopacket.NewFlow(layers.EndpointIPv6, a[:], b[:]), true
	}
	return gopacket.Flow{}, false
}

// ports returns the TCP ports in the direction of netFlow.
func (s *stream) ports() (src, dst layers.TCPPort) {
	src, dst = layers.TCPPort(s.conn.Initiator.Port()), layers.TCPPort(s.conn.Responder.Port())
	if s.swapped {
		return dst, src
	}
	return src, dst
}

func (s *stream) side(dir gpr.TCPFlowDirection) Side {
	if (dir == gpr.TCPDirClientToServer) != s.swapped {
		return Initiator
	}
	return Responder
}

func (s *stream) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir gpr.TCPFlowDirection, nextSeq gpr.Sequence, start *bool, ac gpr.AssemblerContext) bool {
	if s.closed {
		return s.a.closingPeer && tcp.RST
	}
	if s == s.a.forgetting {
		return s.acceptForgetting(tcp, nextSeq, start)
	}
	if !s.open {
		if !tcp.SYN && len(tcp.Payload) == 0 {
			return false
		}
		if !s.conn.SYNSeen {
			s.a.c.midStream.Add(1)
		}
		s.open = true
		s.a.c.connections.Add(1)
		s.a.c.open.Add(1)
		s.a.idle.pushFront(s)
		if limit := s.a.opts.MaxStreams; limit > 0 && s.a.c.open.Load() > int64(limit) {
			s.a.idle.back().evict(ci.Timestamp)
		}
	} else {
		s.a.idle.moveToFront(s)
	}
	// A capture starts mid-connection on long-lived keep-alive streams: take the
	// first segment seen as the start and let the parser resynchronise.
	*start = true
	if d := dirIndex(dir); nextSeq >= 0 && len(tcp.Payload) > 0 && !tcp.SYN && !tcp.RST && !s.ended[d] {
		if !s.keepFirstSeen(d, tcp, nextSeq) {
			return false
		}
	}
	if tcp.RST && (nextSeq < 0 || nextSeq.Difference(gpr.Sequence(tcp.Seq)) >= 0) {
		s.a.rst = s
	}
	return true
}

// acceptForgetting takes the RSTs resetHalf sends: one where gopacket expects
// the next byte, or anywhere on a half that never started (forced to start at
// the RST, which ends it at once). Another is refused and nextSeq noted.
func (s *stream) acceptForgetting(tcp *layers.TCP, nextSeq gpr.Sequence, start *bool) bool {
	switch {
	case !tcp.RST:
		return false
	case nextSeq < 0:
		*start = true
		return true
	case nextSeq == gpr.Sequence(tcp.Seq):
		return true
	}
	s.a.forgetSeq = nextSeq
	return false
}

func (s *stream) ReassembledSG(sg gpr.ScatterGather, ac gpr.AssemblerContext) {
	dir, _, end, skip := sg.Info()
	if end {
		// gopacket closes the half after this call: nothing is held for it
		// any more, and later segments of it are dropped unseen.
		d := dirIndex(dir)
		s.ended[d] = true
		if s.held != nil {
			s.held[d] = nil
		}
	}
	if s.closed || !s.open {
		return // closed, or evicted with bytes still queued
	}
	side := s.side(dir)
	length, _ := sg.Lengths()
	st := sg.Stats()
	if st.OverlapBytes > 0 {
		s.a.c.overlapBytes.Add(uint64(st.OverlapBytes))
		s.a.c.overlapPackets.Add(uint64(st.OverlapPackets))
	}
	if st.QueuedPackets > 0 {
		s.a.c.outOfOrder.Add(uint64(st.QueuedPackets))
	}
	var first, completed time.Time
	if st.Chunks == 1 && st.Packets == 1 && ac != nil {
		// Only the segment being assembled (in-order data, the usual case): its
		// time, read in place rather than copied twice through the interfaces
		// (2% of a replay's CPU).
		first = contextTime(ac)
		completed = first
	} else {
		first = sg.CaptureInfo(0).Timestamp
		completed = first
		if length > 0 {
			if last := sg.CaptureInfo(length - 1).Timestamp; last.After(completed) {
				completed = last
			}
		}
		if ac != nil {
			if t := contextTime(ac); t.After(completed) {
				completed = t
			}
		}
	}
	if first.IsZero() {
		first = completed
	}
	if skip > 0 {
		s.a.c.gaps.Add(1)
		s.a.c.gapBytes.Add(uint64(skip))
		s.parser().Gap(side, skip, first)
	}
	if length > 0 {
		s.parser().Data(Chunk{Side: side, Bytes: sg.Fetch(length), Seen: first, Completed: completed})
	}
	if end {
		s.parser().End(side, completed)
	}
}

func (s *stream) ReassemblyComplete(ac gpr.AssemblerContext) bool {
	s.close(s.a.reason, s.a.now)
	return true
}

func (s *stream) close(reason CloseReason, ts time.Time) {
	if s.closed {
		return
	}
	s.closed = true
	if !s.open {
		return
	}
	s.open = false
	s.a.idle.remove(s)
	s.a.c.open.Add(-1)
	switch reason {
	case Closed:
		s.a.c.closed.Add(1)
	case IdleTimeout:
		s.a.c.idleClosed.Add(1)
	}
	s.parser().Close(reason, ts)
	s.next = nil
}

// parser returns the stream's Stream, creating it on first use.
func (s *stream) parser() Stream {
	if s.next == nil {
		s.next = s.a.factory.NewStream(s.conn)
	}
	return s.next
}

// evict closes the stream's parser to free its memory and queues the
// connection for gopacket to forget (forgetEvicted). Should gopacket keep it
// all the same, a segment it sends opens the stream again with a new parser,
// which resynchronises as on a capture started mid-connection.
func (s *stream) evict(ts time.Time) {
	s.open = false
	s.a.idle.remove(s)
	s.a.c.open.Add(-1)
	s.a.c.evicted.Add(1)
	s.parser().Close(Evicted, ts)
	s.next = nil
	s.conn.SYNSeen = false
	s.a.evicted = append(s.a.evicted, s)
}

// streamList is a doubly linked list of streams through their older and newer
// fields: no allocation, O(1) updates on every segment.
type streamList struct{ newest, oldest *stream }

func (l *streamList) pushFront(s *stream) {
	s.older, s.newer = l.newest, nil
	if l.newest != nil {
		l.newest.newer = s
	} else {
		l.oldest = s
	}
	l.newest = s
}

func (l *streamList) remove(s *stream) {
	if s.newer != nil {
		s.newer.older = s.older
	} else {
		l.newest = s.older
	}
	if s.older != nil {
		s.older.newer = s.newer
	} else {
		l.oldest = s.newer
	}
	s.older, s.newer = nil, nil
}

func (l *streamList) moveToFront(s *stream) {
	if l.newest != s {
		l.remove(s)
		l.pushFront(s)
	}
}

func (l *streamList) back() *stream { return l.oldest }

// Add returns the sum of two snapshots (of the Assemblers of parallel workers).
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Segments: s.Segments + o.Segments, Connections: s.Connections + o.Connections,
		MidStream: s.MidStream + o.MidStream, Closed: s.Closed + o.Closed,
		IdleClosed: s.IdleClosed + o.IdleClosed, Open: s.Open + o.Open,
		Gaps: s.Gaps + o.Gaps, GapBytes: s.GapBytes + o.GapBytes, OutOfOrder: s.OutOfOrder + o.OutOfOrder,
		OverlapBytes: s.OverlapBytes + o.OverlapBytes, OverlapPackets: s.OverlapPackets + o.OverlapPackets,
		Evicted: s.Evicted + o.Evicted, FarSegments: s.FarSegments + o.FarSegments,
	}
}
