package pcapgen

import (
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// Conn is one TCP connection between a client and a server. It tracks the
// next sequence number of each side, so segments built from it carry the
// sequence and acknowledgement numbers a real stack would send.
type Conn struct {
	iface          *Interface
	client, server netip.AddrPort
	clientSeq      uint32 // next sequence number the client sends
	serverSeq      uint32 // next sequence number the server sends
	mss            int
	window         uint16
	ipv6Ext        bool
}

// ConnOption configures a Conn.
type ConnOption interface{ applyConn(*Conn) }

// MSS is the most payload bytes one segment carries. As a ConnOption it sets
// the connection's default (1460); given to ClientSegments or ServerSegments it
// applies to that call (0 means the connection's default).
type MSS int

func (m MSS) applyConn(c *Conn) { c.mss = int(m) }

type isnOption struct{ client, server uint32 }

func (o isnOption) applyConn(c *Conn) { c.clientSeq, c.serverSeq = o.client, o.server }

// ISN sets the first sequence number each side sends: the SYN's when the
// connection starts with Handshake, the first data byte's when it starts in the
// middle of the stream (no Handshake). Values near 2^32 test wraparound.
func ISN(client, server uint32) ConnOption { return isnOption{client, server} }

type ipv6ExtOption struct{}

func (ipv6ExtOption) applyConn(c *Conn) { c.ipv6Ext = true }

// IPv6ExtensionHeaders puts hop-by-hop, routing (segments left 0) and
// destination options headers between the IPv6 header and TCP in every packet.
// It has no effect on IPv4.
func IPv6ExtensionHeaders() ConnOption { return ipv6ExtOption{} }

// Conn starts a connection on the first interface. The addresses are IPv4 or
// IPv6 (both the same family). Nothing is written until a method sends.
func (w *Writer) Conn(client, server netip.AddrPort, opts ...ConnOption) *Conn {
	return w.ifaces[0].Conn(client, server, opts...)
}

// Conn starts a connection on the interface.
func (i *Interface) Conn(client, server netip.AddrPort, opts ...ConnOption) *Conn {
	c := &Conn{
		iface:     i,
		client:    netip.AddrPortFrom(client.Addr().Unmap(), client.Port()),
		server:    netip.AddrPortFrom(server.Addr().Unmap(), server.Port()),
		clientSeq: 1000,
		serverSeq: 500000,
		mss:       1460,
		window:    65535,
	}
	for _, o := range opts {
		o.applyConn(c)
	}
	if c.client.Addr().Is4() != c.server.Addr().Is4() {
		i.w.fail(fmt.Errorf("connection %v -> %v mixes IPv4 and IPv6", c.client, c.server))
	}
	return c
}

// ClientAddr is the client's address and port.
func (c *Conn) ClientAddr() netip.AddrPort { return c.client }

// ServerAddr is the server's address and port.
func (c *Conn) ServerAddr() netip.AddrPort { return c.server }

// ClientSeq is the next sequence number the client sends.
func (c *Conn) ClientSeq() uint32 { return c.clientSeq }

// ServerSeq is the next sequence number the server sends.
func (c *Conn) ServerSeq() uint32 { return c.serverSeq }

// Segment is one TCP segment of a Conn. Tests may change any field before
// passing it to Emit: reorder, repeat or drop segments, move Seq to overlap,
// or put other bytes in Payload.
type Segment struct {
	FromServer              bool
	Seq, Ack                uint32
	SYN, ACK, PSH, FIN, RST bool
	// Window is the advertised window; 0 means the connection's default.
	Window  uint16
	Payload []byte
}

// End is the sequence number after the segment (SYN and FIN count one).
func (s Segment) End() uint32 {
	n := uint32(len(s.Payload))
	if s.SYN {
		n++
	}
	if s.FIN {
		n++
	}
	return s.Seq + n
}

// Handshake sends SYN, SYN-ACK and ACK.
func (c *Conn) Handshake() {
	c.Emit(Segment{Seq: c.clientSeq, SYN: true})
	c.clientSeq++
	c.Emit(Segment{FromServer: true, Seq: c.serverSeq, Ack: c.clientSeq, SYN: true, ACK: true})
	c.serverSeq++
	c.Emit(Segment{Seq: c.clientSeq, Ack: c.serverSeq, ACK: true})
}

// Client sends data from the client in MSS-sized segments, then the server's
// acknowledgement.
func (c *Conn) Client(data []byte) {
	c.Emit(c.ClientSegments(data, 0)...)
	c.Emit(Segment{FromServer: true, Seq: c.serverSeq, Ack: c.clientSeq, ACK: true})
}

// Server sends data from the server in MSS-sized segments, then the client's
// acknowledgement.
func (c *Conn) Server(data []byte) {
	c.Emit(c.ServerSegments(data, 0)...)
	c.Emit(Segment{Seq: c.clientSeq, Ack: c.serverSeq, ACK: true})
}

// ClientSegments cuts data from the client into segments of at most mss bytes
// (0: the connection's MSS) without writing them, and moves the client's
// sequence number past them. PSH is set on the last one.
func (c *Conn) ClientSegments(data []byte, mss MSS) []Segment {
	segs := c.segments(false, c.clientSeq, c.serverSeq, data, mss)
	c.clientSeq += uint32(len(data))
	return segs
}

// ServerSegments is ClientSegments for data from the server.
func (c *Conn) ServerSegments(data []byte, mss MSS) []Segment {
	segs := c.segments(true, c.serverSeq, c.clientSeq, data, mss)
	c.serverSeq += uint32(len(data))
	return segs
}

func (c *Conn) segments(fromServer bool, seq, ack uint32, data []byte, mss MSS) []Segment {
	size := int(mss)
	if size <= 0 {
		size = c.mss
	}
	var segs []Segment
	for off := 0; off < len(data); off += size {
		end := min(off+size, len(data))
		segs = append(segs, Segment{
			FromServer: fromServer,
			Seq:        seq + uint32(off),
			Ack:        ack,
			ACK:        true,
			PSH:        end == len(data),
			Payload:    data[off:end],
		})
	}
	return segs
}

// Close sends FIN from the client, FIN-ACK from the server and the client's
// last ACK.
func (c *Conn) Close() {
	c.Emit(Segment{Seq: c.clientSeq, Ack: c.serverSeq, FIN: true, ACK: true})
	c.clientSeq++
	c.Emit(Segment{FromServer: true, Seq: c.serverSeq, Ack: c.clientSeq, FIN: true, ACK: true})
	c.serverSeq++
	c.Emit(Segment{Seq: c.clientSeq, Ack: c.serverSeq, ACK: true})
}

// Reset sends RST from the client.
func (c *Conn) Reset() {
	c.Emit(Segment{Seq: c.clientSeq, Ack: c.serverSeq, RST: true, ACK: true})
}

// Emit writes segments as they are, one packet each, in the order given.
func (c *Conn) Emit(segs ...Segment) {
	for _, s := range segs {
		src, dst, l4, ok := c.build(s)
		if ok {
			c.iface.writeIP(src, dst, layers.IPProtocolTCP, l4, ipShape{ipv6Ext: c.ipv6Ext})
		}
	}
}

// EmitFragmented writes one segment as IP fragments carrying at most size bytes
// of the IP payload each (rounded down to a multiple of 8, as fragment offsets
// count 8-byte units). order lists which fragments to write, by index from 0,
// and in which order; indices may repeat or be left out. An empty order writes
// them all in order. It returns how many fragments the segment makes.
func (c *Conn) EmitFragmented(s Segment, size int, order ...int) int {
	src, dst, l4, ok := c.build(s)
	if !ok {
		return 0
	}
	return c.iface.writeIP(src, dst, layers.IPProtocolTCP, l4, ipShape{ipv6Ext: c.ipv6Ext, fragSize: max(size, 8), fragOrder: order, fragment: true})
}

// build serializes the TCP header and payload with a correct checksum.
func (c *Conn) build(s Segment) (src, dst netip.Addr, l4 []byte, ok bool) {
	from, to := c.client, c.server
	if s.FromServer {
		from, to = c.server, c.client
	}
	win := s.Window
	if win == 0 {
		win = c.window
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(from.Port()),
		DstPort: layers.TCPPort(to.Port()),
		Seq:     s.Seq,
		Ack:     s.Ack,
		SYN:     s.SYN,
		ACK:     s.ACK,
		PSH:     s.PSH,
		FIN:     s.FIN,
		RST:     s.RST,
		Window:  win,
	}
	if s.SYN {
		// A SYN carries the MSS option, as every real stack sends it.
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(c.mss >> 8), byte(c.mss)}}}
	}
	l4, err := transportBytes(from.Addr(), to.Addr(), tcp, s.Payload)
	if err != nil {
		c.iface.w.fail(err)
		return src, dst, nil, false
	}
	return from.Addr(), to.Addr(), l4, true
}
