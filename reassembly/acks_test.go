package reassembly

import (
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ackSeg is one segment seen by an ACKFilter: its direction, flags (any of
// S A F R), payload length and capture time after t0.
type ackSeg struct {
	fromClient bool
	flags      string
	payload    int
	at         time.Duration
	other      bool // of another connection
}

func (s ackSeg) tcp() (gopacket.Flow, *layers.TCP) {
	from, to := client, server
	if s.other {
		from = netip.MustParseAddrPort("10.0.0.3:40001")
	}
	if !s.fromClient {
		from, to = to, from
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(from.Port()), DstPort: layers.TCPPort(to.Port())}
	tcp.Payload = make([]byte, s.payload)
	for _, f := range s.flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		}
	}
	a, b := from.Addr().As4(), to.Addr().As4()
	return gopacket.NewFlow(layers.EndpointIPv4, a[:], b[:]), tcp
}

func TestACKFilter(t *testing.T) {
	const c, s = true, false
	ms := time.Millisecond
	tests := []struct {
		name string
		segs []ackSeg
		keep []bool
	}{
		{"handshake: the last ACK soon after the SYN-ACK is dropped",
			[]ackSeg{{c, "S", 0, 0, false}, {s, "SA", 0, ms, false}, {c, "A", 0, 2 * ms, false}},
			[]bool{true, true, false}},
		{"data always passes, its ACK soon after does not, in either direction",
			[]ackSeg{{c, "A", 100, 0, false}, {s, "A", 0, ms, false}, {s, "A", 900, 2 * ms, false}, {c, "A", 0, 3 * ms, false}},
			[]bool{true, false, true, false}},
		{"FIN and RST always pass",
			[]ackSeg{{c, "A", 10, 0, false}, {c, "FA", 0, ms, false}, {s, "FA", 0, 2 * ms, false}, {c, "RA", 0, 3 * ms, false}, {s, "R", 0, 4 * ms, false}},
			[]bool{true, true, true, true, true}},
		{"an ACK a second or more after the last segment passed on passes",
			[]ackSeg{{c, "A", 10, 0, false}, {s, "A", 0, 999 * ms, false}, {s, "A", 0, 1000 * ms, false}, {c, "A", 0, 1500 * ms, false}, {c, "A", 0, 2000 * ms, false}},
			[]bool{true, false, true, false, true}},
		{"keep-alive ACKs every 100 ms: one a second passes",
			func() []ackSeg {
				segs := []ackSeg{{c, "A", 10, 0, false}}
				for i := 1; i <= 25; i++ {
					segs = append(segs, ackSeg{i%2 == 0, "A", 0, time.Duration(i) * 100 * ms, false})
				}
				return segs
			}(),
			[]bool{true, false, false, false, false, false, false, false, false, false, true, false, false, false, false, false, false, false, false, false, true, false, false, false, false, false}},
		{"the first ACK of a connection passes: nothing of it was passed on yet",
			[]ackSeg{{c, "A", 10, 0, false}, {c, "A", 0, ms, true}, {s, "A", 0, 2 * ms, true}},
			[]bool{true, true, false}},
		{"a capture clock that goes back passes the ACK",
			[]ackSeg{{c, "A", 10, 500 * ms, false}, {s, "A", 0, 400 * ms, false}, {s, "A", 0, 450 * ms, false}},
			[]bool{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Len(t, tt.keep, len(tt.segs))
			f := NewACKFilter(Options{})
			var got []bool
			dropped := 0
			for _, sg := range tt.segs {
				flow, tcp := sg.tcp()
				k := f.Keep(ConnHash(flow, tcp), tcp, t0.Add(sg.at))
				got = append(got, k)
				if !k {
					dropped++
				}
			}
			assert.Equal(t, tt.keep, got)
			assert.Equal(t, uint64(dropped), f.Dropped())
		})
	}
}

// The interval is a tenth of a short idle timeout, so an ACK-only connection
// is still seen alive well within it.
func TestACKFilterShortIdleTimeout(t *testing.T) {
	f := NewACKFilter(Options{IdleTimeout: 3 * time.Second})
	data := ackSeg{true, "A", 10, 0, false}
	flow, tcp := data.tcp()
	conn := ConnHash(flow, tcp)
	require.True(t, f.Keep(conn, tcp, t0))
	ack := ackSeg{false, "A", 0, 0, false}
	flow, tcp = ack.tcp()
	require.Equal(t, conn, ConnHash(flow, tcp), "both directions hash alike")
	assert.False(t, f.Keep(conn, tcp, t0.Add(299*time.Millisecond)))
	assert.True(t, f.Keep(conn, tcp, t0.Add(300*time.Millisecond)))
}

func TestConnHash(t *testing.T) {
	flow, tcp := ackSeg{true, "A", 0, 0, false}.tcp()
	rflow, rtcp := ackSeg{false, "A", 0, 0, false}.tcp()
	oflow, otcp := ackSeg{true, "A", 0, 0, true}.tcp()
	assert.Equal(t, ConnHash(flow, tcp), ConnHash(rflow, rtcp))
	assert.NotEqual(t, ConnHash(flow, tcp), ConnHash(oflow, otcp))
	// Swapped ports on the same addresses are another connection.
	swapped := *tcp
	swapped.SrcPort, swapped.DstPort = tcp.DstPort, tcp.SrcPort
	assert.NotEqual(t, ConnHash(flow, tcp), ConnHash(flow, &swapped))
}
