package capture

import (
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// FuzzDecode: Decoder.Decode on arbitrary bytes, for every supported link
// type and one it does not support, must not panic, must hand on only TCP
// segments whose payload lies inside the packet, and must count every packet
// under exactly one outcome. The decoder is kept across packets, so the IP
// defragmenters see sequences of fuzzed fragments too.
func FuzzDecode(f *testing.F) {
	// A valid Ethernet/IPv4/TCP packet and variations as seeds.
	eth := []byte{
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // Ethernet, IPv4
		0x45, 0, 0, 44, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
		0x9c, 0x40, 0x1f, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, // TCP
		'G', 'E', 'T', ' ',
	}
	f.Add(eth, uint8(0))
	f.Add(eth[14:], uint8(3))                                // raw IPv4
	f.Add(append([]byte{2, 0, 0, 0}, eth[14:]...), uint8(8)) // BSD loopback
	frag := append([]byte(nil), eth...)
	frag[20] = 0x20 // more fragments
	f.Add(append(frag, frag...), uint8(0))
	v6 := []byte{0x60, 0, 0, 0, 0, 24, 44, 64} // IPv6 with a fragment header next
	v6 = append(v6, make([]byte, 32)...)
	v6 = append(v6, 6, 0, 0, 1, 0, 0, 0, 7) // fragment header: TCP, offset 0, M
	v6 = append(v6, eth[34:50]...)
	f.Add(v6, uint8(4))
	f.Add([]byte{}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		links := append(SupportedLinkTypes(), layers.LinkType(147))
		d := NewDecoder()
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// The input is decoded whole, then as two packets split where sel
		// says, so a fragment can meet its continuation.
		packets := [][]byte{data}
		if len(data) > 1 {
			cut := int(sel) % len(data)
			packets = append(packets, data[:cut], data[cut:])
		}
		for i, p := range packets {
			lt := links[(int(sel)+i)%len(links)]
			if i > 0 {
				lt = links[int(sel)%len(links)]
			}
			buf := append([]byte(nil), p...)
			ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * 40 * time.Second), CaptureLength: len(buf), Length: len(buf)}
			seg, ok := d.Decode(buf, ci, lt)
			if ok != (seg != nil) {
				t.Fatalf("Decode returned %v with segment %v", ok, seg)
			}
			if ok && len(seg.TCP.Payload) > len(buf) {
				t.Fatalf("payload of %d bytes from a %d-byte packet", len(seg.TCP.Payload), len(buf))
			}
		}
		st := d.Stats()
		if st.Packets != uint64(len(packets)) {
			t.Fatalf("%d packets counted, %d decoded", st.Packets, len(packets))
		}
		// Every packet ends as a segment, an error, non-TCP, an unsupported
		// link type, or a fragment; a reassembled datagram adds one segment.
		outcomes := st.TCPSegments + st.DecodeErrors + st.NonTCP + st.UnsupportedLinkType + st.Fragments
		if outcomes < st.Packets {
			t.Fatalf("packets not accounted for: %+v", st)
		}
	})
}
