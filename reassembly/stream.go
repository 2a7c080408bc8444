// Package reassembly turns TCP segments into ordered byte streams, one pair per
// connection, on top of gopacket's reassembly package. It accepts connections whose
// SYN was not captured, survives reordering, retransmission and overlap, bounds the
// bytes it buffers out of order, reports lost bytes as gaps, and closes streams on
// FIN/RST, idle timeout or end of capture. It hands each connection's bytes to a
// Stream created by the next stage.
package reassembly

import (
	"net/netip"
	"time"
)

// Side is one direction of a TCP connection.
type Side uint8

const (
	// Initiator is the side that sent the SYN, or, when no SYN was captured, the
	// side that sent the first packet seen. Later stages decide by content which
	// side is the HTTP client.
	Initiator Side = iota
	// Responder is the other side.
	Responder
)

// Other returns the opposite side.
func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	if s == Initiator {
		return "initiator"
	}
	return "responder"
}

// Conn identifies a TCP connection as first seen.
type Conn struct {
	Initiator netip.AddrPort
	Responder netip.AddrPort
	// SYNSeen is true when the capture holds the connection's opening SYN, so
	// Initiator is known to be the TCP client.
	SYNSeen bool
	// Source names where the first packet was captured (a file or an interface).
	Source string
}

// Chunk is a run of in-order bytes of one side.
type Chunk struct {
	Side Side
	// Bytes are valid only during the Data call; copy what must outlive it.
	Bytes []byte
	// Seen is the capture time of the packet that carried the first byte.
	Seen time.Time
	// Completed is the capture time of the packet that made these bytes
	// contiguous; equal to Seen unless segments arrived out of order.
	Completed time.Time
}

// CloseReason says why a connection's stream ended.
type CloseReason uint8

const (
	// Closed: FIN or RST seen.
	Closed CloseReason = iota
	// IdleTimeout: no packet for the idle timeout.
	IdleTimeout
	// EndOfCapture: the capture file ended.
	EndOfCapture
	// Stopped: a live capture was stopped (signal, --duration, --count).
	Stopped
	// Evicted: the stream was dropped to stay inside the memory budget.
	Evicted
)

func (r CloseReason) String() string {
	switch r {
	case Closed:
		return "closed"
	case IdleTimeout:
		return "idle timeout"
	case EndOfCapture:
		return "end of capture"
	case Stopped:
		return "capture stopped"
	case Evicted:
		return "evicted"
	}
	return "unknown"
}

// Stream receives one connection's reassembled bytes. Calls for one connection
// come from one goroutine, in capture order.
type Stream interface {
	// Data delivers in-order bytes of one side.
	Data(c Chunk)
	// Gap says n bytes of side s were never captured; the next Data of that side
	// continues after them. n is -1 when the size is unknown.
	Gap(s Side, n int, ts time.Time)
	// End says side s sent FIN: it will send no more bytes.
	End(s Side, ts time.Time)
	// Close ends the connection; no call follows it.
	Close(reason CloseReason, ts time.Time)
}

// StreamFactory creates the Stream for a new connection. It is called when
// the connection first has something to hand on (bytes, a gap, an end or its
// Close), so a connection that has only sent a SYN holds no Stream.
type StreamFactory interface {
	NewStream(c Conn) Stream
}
