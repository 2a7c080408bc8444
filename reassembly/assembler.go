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
	// MaxStreams caps the connections parsed at once: opening one more closes
	// the one idle longest with reason Evicted (its parser state is freed; it
	// gets a new stream if it sends again). 0 means no cap.
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
}

type counters struct {
	segments, connections, midStream, closed, idleClosed     atomic.Uint64
	gaps, gapBytes, outOfOrder, overlapBytes, overlapPackets atomic.Uint64
	evicted                                                  atomic.Uint64
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
	// idle lists the streams with a parser, most recently active first, so the
	// one idle longest is evicted when MaxStreams is reached.
	idle streamList
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

type captureContext gopacket.CaptureInfo

func (c *captureContext) GetCaptureInfo() gopacket.CaptureInfo { return gopacket.CaptureInfo(*c) }

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
	if s := a.rst; s != nil {
		a.rst = nil
		s.close(Closed, ci.Timestamp)
		a.resetPeer(netFlow, tcp, ctx)
	}
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
	var hdr [20]byte
	binary.BigEndian.PutUint16(hdr[0:], uint16(rst.DstPort))
	binary.BigEndian.PutUint16(hdr[2:], uint16(rst.SrcPort))
	binary.BigEndian.PutUint32(hdr[4:], rst.Ack)
	hdr[12] = 5 << 4 // data offset: 20 bytes
	hdr[13] = 0x04   // RST
	var peer layers.TCP
	if peer.DecodeFromBytes(hdr[:], gopacket.NilDecodeFeedback) != nil {
		return
	}
	a.closingPeer = true
	a.asm.AssembleWithContext(netFlow.Reverse(), &peer, ctx)
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
		Evicted: c.evicted.Load(),
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
	// next is created with the first SYN or payload: the last ACK of a closed
	// connection, seen after gopacket forgot it, opens no stream.
	next Stream
	// swapped: gopacket's client-to-server direction is our Responder side.
	swapped bool
	closed  bool
	// older and newer link the stream into Assembler.idle while next is set.
	older, newer *stream
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
	if s.next == nil {
		if !tcp.SYN && len(tcp.Payload) == 0 {
			return false
		}
		if !s.conn.SYNSeen {
			s.a.c.midStream.Add(1)
		}
		s.next = s.a.factory.NewStream(s.conn)
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
	if tcp.RST && (nextSeq < 0 || nextSeq.Difference(gpr.Sequence(tcp.Seq)) >= 0) {
		s.a.rst = s
	}
	return true
}

func (s *stream) ReassembledSG(sg gpr.ScatterGather, ac gpr.AssemblerContext) {
	if s.closed || s.next == nil {
		return // closed, or evicted with bytes still queued
	}
	dir, _, end, skip := sg.Info()
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
	first := sg.CaptureInfo(0).Timestamp
	completed := first
	if length > 0 {
		if last := sg.CaptureInfo(length - 1).Timestamp; last.After(completed) {
			completed = last
		}
	}
	if ac != nil {
		if t := ac.GetCaptureInfo().Timestamp; t.After(completed) {
			completed = t
		}
	}
	if first.IsZero() {
		first = completed
	}
	if skip > 0 {
		s.a.c.gaps.Add(1)
		s.a.c.gapBytes.Add(uint64(skip))
		s.next.Gap(side, skip, first)
	}
	if length > 0 {
		s.next.Data(Chunk{Side: side, Bytes: sg.Fetch(length), Seen: first, Completed: completed})
	}
	if end {
		s.next.End(side, completed)
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
	if s.next == nil {
		return
	}
	s.a.idle.remove(s)
	s.a.c.open.Add(-1)
	switch reason {
	case Closed:
		s.a.c.closed.Add(1)
	case IdleTimeout:
		s.a.c.idleClosed.Add(1)
	}
	s.next.Close(reason, ts)
}

// evict closes the stream's parser to free its memory. Unlike close it leaves
// the connection open to gopacket: if it sends again it gets a new parser,
// which resynchronises as on a capture started mid-connection.
func (s *stream) evict(ts time.Time) {
	s.a.idle.remove(s)
	s.a.c.open.Add(-1)
	s.a.c.evicted.Add(1)
	next := s.next
	s.next = nil
	s.conn.SYNSeen = false
	next.Close(Evicted, ts)
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
		Evicted: s.Evicted + o.Evicted,
	}
}
