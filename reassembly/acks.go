package reassembly

import (
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ACKFilter drops the pure ACKs (no payload, no SYN, FIN or RST) reassembly
// has no use for before they are handed to it. Of a pure ACK the Assembler
// takes only the time it was seen, which keeps the connection from the idle
// timeout; yet every one costs a lookup of its connection, and in a typical
// API capture two packets in five are pure ACKs. So a pure ACK is passed on
// only when its connection has had no segment passed on for a while (a
// tenth of the idle timeout, at most a second of capture time): a connection
// that only keeps itself alive with ACKs is still seen as alive, at most that
// much earlier than it was last seen.
//
// Connections are told apart by ConnHash in a table of fixed size: two that
// share a slot take it from each other, and then pass on more of their ACKs,
// never fewer. Not safe for concurrent use.
type ACKFilter struct {
	slots   []ackSlot
	every   int64 // Unix ns
	dropped uint64
}

type ackSlot struct {
	conn uint64 // ConnHash of the connection that passed on a segment last
	last int64  // capture time of that segment, Unix ns
}

// ackSlots is a power of two: 64k slots take 1 MiB.
const ackSlots = 1 << 16

// NewACKFilter returns a filter for an Assembler with opts.
func NewACKFilter(opts Options) *ACKFilter {
	opts.setDefaults()
	return &ACKFilter{
		slots: make([]ackSlot, ackSlots),
		every: int64(min(time.Second, opts.IdleTimeout/10)),
	}
}

// Keep reports whether tcp, of the connection with hash conn, seen at ts,
// should be handed to the Assembler.
func (f *ACKFilter) Keep(conn uint64, tcp *layers.TCP, ts time.Time) bool {
	sl := &f.slots[conn&(ackSlots-1)]
	t := ts.UnixNano()
	if len(tcp.Payload) == 0 && !tcp.SYN && !tcp.FIN && !tcp.RST &&
		sl.conn == conn && t >= sl.last && t-sl.last < f.every {
		f.dropped++
		return false
	}
	sl.conn, sl.last = conn, t
	return true
}

// Dropped is how many segments Keep has turned away.
func (f *ACKFilter) Dropped() uint64 { return f.dropped }

// ConnHash is a hash of a segment's connection, the same for both directions.
func ConnHash(netFlow gopacket.Flow, tcp *layers.TCP) uint64 {
	src, dst := netFlow.Endpoints() // one copy of the flow, where Src and Dst made two
	a := endpointHash(src, tcp.SrcPort)
	b := endpointHash(dst, tcp.DstPort)
	if a > b {
		a, b = b, a
	}
	return a*0x9e3779b97f4a7c15 ^ b
}

// endpointHash hashes an address with a port: each with its own, so that
// swapping the ports between two addresses makes another connection.
func endpointHash(addr gopacket.Endpoint, port layers.TCPPort) uint64 {
	return addr.FastHash() ^ (uint64(port)+1)*0xff51afd7ed558ccd
}
