package reassembly

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// checkedStream is a Stream that checks the contract the parser relies on,
// for fuzzing: every byte handed on is the byte the sender put at that
// sequence number (the fuzz input never sends conflicting bytes, so whatever
// order, duplication or overlap the segments arrive in, the content is known),
// gaps advance the position, and nothing comes after Close.
//
// Where a side's bytes start is not known to the stream (a capture may begin
// mid-connection, and the first segment seen is taken as the start), so the
// checker keeps every start that is still consistent: the offsets of the
// segments sent so far. It fails when none is left.
type checkedStream struct {
	f      *checkedFactory
	conn   Conn
	hyps   [2][]uint32 // possible current offsets, per sender (client 0, server 1)
	closes int
}

// streamByte is the byte at a sequence offset of a side: a pattern that
// differs between the sides and does not repeat at short distances, so a
// shifted or duplicated run of bytes is caught. It is a function of the
// offset mod 2^32, as sequence numbers wrap.
func streamByte(sender int, off uint32) byte {
	return byte(off*7+off>>8+off>>16) ^ byte(sender)*0x55
}

// sender maps a Chunk side to who sent it: 0 the client (port 40000).
func (s *checkedStream) sender(side Side) int {
	clientInitiated := s.conn.Initiator.Port() == 40000
	if (side == Initiator) == clientInitiated {
		return 0
	}
	return 1
}

func (s *checkedStream) Data(c Chunk) {
	t := s.f.t
	if s.closes > 0 {
		t.Fatalf("Data after Close")
	}
	if len(c.Bytes) == 0 {
		t.Fatalf("empty Data chunk")
	}
	who := s.sender(c.Side)
	if s.hyps[who] == nil {
		s.hyps[who] = append([]uint32(nil), s.f.sent[who]...)
	}
	kept := s.hyps[who][:0]
	for _, h := range s.hyps[who] {
		ok := true
		for i, b := range c.Bytes {
			if streamByte(who, h+uint32(i)) != b {
				ok = false
				break
			}
		}
		if ok {
			kept = append(kept, h+uint32(len(c.Bytes)))
		}
	}
	if len(kept) == 0 {
		t.Fatalf("%s (sender %d) handed on %d bytes %x... that the sender never put at any position consistent with the stream so far", c.Side, who, len(c.Bytes), c.Bytes[:min(8, len(c.Bytes))])
	}
	s.hyps[who] = kept
}

func (s *checkedStream) Gap(side Side, n int, _ time.Time) {
	t := s.f.t
	if s.closes > 0 {
		t.Fatalf("Gap after Close")
	}
	if n == 0 || n < -1 {
		t.Fatalf("Gap of %d bytes", n)
	}
	who := s.sender(side)
	if n < 0 {
		s.hyps[who] = nil // anywhere again
		return
	}
	for i := range s.hyps[who] {
		s.hyps[who][i] += uint32(n)
	}
}

func (s *checkedStream) End(Side, time.Time) {
	if s.closes > 0 {
		s.f.t.Fatalf("End after Close")
	}
}

func (s *checkedStream) Close(CloseReason, time.Time) { s.closes++ }

type checkedFactory struct {
	t       *testing.T
	streams []*checkedStream
	// sent are the offsets of the first payload byte of every segment sent so
	// far, per sender.
	sent [2][]uint32
}

func (f *checkedFactory) NewStream(c Conn) Stream {
	s := &checkedStream{f: f, conn: c}
	f.streams = append(f.streams, s)
	return s
}

// FuzzAssembler feeds the Assembler segments of one connection decoded from
// layers.TCP wire bytes, in any order, duplicated, overlapping, with holes,
// SYN/FIN/RST anywhere and time jumping, as a hostile or broken capture would.
// Each 8-byte op of the input is one segment:
//
//	byte 0: bit 0 side (client/server), bit 1 SYN, bit 2 FIN, bit 3 RST,
//	        bit 4 ACK off, bits 5-7 time step (x 300 ms, so reorder-wait and
//	        idle timeouts fire)
//	bytes 1-4: stream offset of the first payload byte (little-endian,
//	        wraps around 2^32 with the ISN)
//	bytes 5-6: payload length (mod 3000)
//	byte 7: ISN selector for this op's side when it is the first one
//
// The properties: no panic; bytes handed on are the sender's bytes at their
// positions; every stream is closed exactly once by FlushAll; Open is 0 after.
func FuzzAssembler(f *testing.F) {
	op := func(flags byte, off uint32, n uint16) []byte {
		b := make([]byte, 8)
		b[0] = flags
		binary.LittleEndian.PutUint32(b[1:], off)
		binary.LittleEndian.PutUint16(b[5:], n)
		return b
	}
	join := func(ops ...[]byte) []byte {
		var out []byte
		for _, o := range ops {
			out = append(out, o...)
		}
		return out
	}
	f.Add(join(op(0x02, 0, 0), op(0x03, 0, 0), op(0, 0, 100), op(1, 0, 200)), uint32(1000), uint32(5000))
	// Reordered, duplicated and overlapping client data.
	f.Add(join(op(0, 100, 100), op(0, 0, 150), op(0, 50, 100), op(0, 0, 300), op(1, 0, 10)), uint32(0xffffff00), uint32(7))
	// A hole that is never filled, then time passes beyond reorder-wait.
	f.Add(join(op(0, 0, 10), op(0, 5000, 10), op(0xe0, 5010, 10), op(0xe0, 10, 10)), uint32(1), uint32(2))
	// RST in the middle, then more data.
	f.Add(join(op(0, 0, 10), op(0x08, 10, 0), op(0, 10, 10), op(0x05, 0, 0)), uint32(42), uint32(43))
	// Many small segments far out of order, beyond the per-connection buffer.
	var many [][]byte
	for i := 200; i > 0; i-- {
		many = append(many, op(0, uint32(i*1400), 1400))
	}
	f.Add(join(many...), uint32(3), uint32(4))

	f.Fuzz(func(t *testing.T, ops []byte, clientISN, serverISN uint32) {
		if len(ops) > 8*2000 {
			return // beyond this only time grows, not coverage
		}
		fac := &checkedFactory{t: t}
		a := NewAssembler(fac, Options{MaxBufferedBytesPerConn: 64 << 10, MaxBufferedBytes: 256 << 10, ReorderWait: time.Second, IdleTimeout: 10 * time.Second})
		cliIP, srvIP := []byte{10, 0, 0, 1}, []byte{10, 0, 0, 2}
		isn := [2]uint32{clientISN, serverISN}
		ts := t0
		payload := make([]byte, 0, 3000)
		for len(ops) >= 8 {
			o := ops[:8]
			ops = ops[8:]
			side := Side(o[0] & 1) // 0 client, 1 server
			off := binary.LittleEndian.Uint32(o[1:])
			n := int(binary.LittleEndian.Uint16(o[5:]) % 3000)
			ts = ts.Add(time.Duration(o[0]>>5) * 300 * time.Millisecond)
			payload = payload[:0]
			for i := range n {
				payload = append(payload, streamByte(int(side), off+uint32(i)))
			}
			// A SYN's data starts one after its sequence number: here at off.
			fac.sent[side] = append(fac.sent[side], off)
			tcp := &layers.TCP{
				SrcPort: 40000, DstPort: 8000,
				// Data starts after the SYN's sequence number, as on the wire.
				Seq: isn[side] + 1 + off, Ack: isn[1-side] + 1,
				SYN: o[0]&2 != 0, FIN: o[0]&4 != 0, RST: o[0]&8 != 0, ACK: o[0]&16 == 0,
				Window: 65535,
			}
			src, dst := cliIP, srvIP
			if side == Responder {
				tcp.SrcPort, tcp.DstPort = 8000, 40000
				src, dst = srvIP, cliIP
			}
			if tcp.SYN {
				tcp.Seq = isn[side] + off
			}
			wire := decoded(t, tcp, payload)
			flow := gopacket.NewFlow(layers.EndpointIPv4, src, dst)
			a.Assemble(flow, wire, gopacket.CaptureInfo{Timestamp: ts, CaptureLength: 54 + n, Length: 54 + n}, "fuzz")
		}
		a.FlushAll(EndOfCapture)
		for i, s := range fac.streams {
			if s.closes != 1 {
				t.Fatalf("stream %d closed %d times", i, s.closes)
			}
		}
		if st := a.Stats(); st.Open != 0 {
			t.Fatalf("%d streams still open after FlushAll: %s", st.Open, fmt.Sprintf("%+v", st))
		}
	})
}
