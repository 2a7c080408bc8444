package pcapgen

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var serializeOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

// checksummed is a transport layer whose checksum covers the IP pseudo-header.
type checksummed interface {
	gopacket.SerializableLayer
	SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
}

// transportBytes serializes a TCP or UDP header and payload, checksum included.
func transportBytes(src, dst netip.Addr, l4 checksummed, payload []byte) ([]byte, error) {
	var proto layers.IPProtocol
	switch l4.(type) {
	case *layers.TCP:
		proto = layers.IPProtocolTCP
	case *layers.UDP:
		proto = layers.IPProtocolUDP
	}
	var network gopacket.NetworkLayer
	if src.Is4() {
		network = &layers.IPv4{Version: 4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: proto}
	} else {
		network = &layers.IPv6{Version: 6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: proto}
	}
	if err := l4.SetNetworkLayerForChecksum(network); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serializeOpts, l4, gopacket.Payload(payload)); err != nil {
		return nil, fmt.Errorf("serialize %v: %w", l4.LayerType(), err)
	}
	return buf.Bytes(), nil
}

// ipShape says how an IP datagram is laid out on the wire.
type ipShape struct {
	ipv6Ext   bool  // IPv6 extension headers before the transport header
	fragment  bool  // split into fragments of fragSize payload bytes
	fragSize  int   // payload bytes per fragment, a multiple of 8
	fragOrder []int // which fragments to write, in order; empty: all
}

// writeIP wraps a transport payload in IP (fragmenting it if asked) and the
// interface's link header, and writes the packets. It returns the number of
// fragments the datagram makes (1 when not fragmented).
func (i *Interface) writeIP(src, dst netip.Addr, proto layers.IPProtocol, l4 []byte, shape ipShape) int {
	var packets [][]byte
	var err error
	if src.Is4() {
		packets, err = i.w.ipv4Packets(src, dst, proto, l4, shape)
	} else {
		packets, err = i.w.ipv6Packets(src, dst, proto, l4, shape)
	}
	if err != nil {
		i.w.fail(err)
		return 0
	}
	order := shape.fragOrder
	if len(order) == 0 {
		order = make([]int, len(packets))
		for k := range order {
			order[k] = k
		}
	}
	for _, k := range order {
		if k < 0 || k >= len(packets) {
			i.w.fail(fmt.Errorf("fragment %d asked for, the datagram has %d", k, len(packets)))
			return len(packets)
		}
		frame, err := i.frame(packets[k], src.Is6())
		if err != nil {
			i.w.fail(err)
			return len(packets)
		}
		i.w.add(i.index, frame)
	}
	return len(packets)
}

// chunks cuts b into pieces of size bytes (the last may be shorter).
func chunks(b []byte, size int) [][]byte {
	size &^= 7
	if size == 0 {
		size = 8
	}
	var out [][]byte
	for off := 0; off < len(b); off += size {
		out = append(out, b[off:min(off+size, len(b))])
	}
	return out
}

func (w *Writer) ipv4Packets(src, dst netip.Addr, proto layers.IPProtocol, l4 []byte, shape ipShape) ([][]byte, error) {
	id := w.ipID
	w.ipID++
	base := layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: id, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if !shape.fragment {
		ip := base
		ip.Flags = layers.IPv4DontFragment
		b, err := serialize(&ip, gopacket.Payload(l4))
		return [][]byte{b}, err
	}
	var out [][]byte
	off := 0
	pieces := chunks(l4, shape.fragSize)
	for k, piece := range pieces {
		ip := base
		ip.FragOffset = uint16(off / 8)
		if k < len(pieces)-1 {
			ip.Flags = layers.IPv4MoreFragments
		}
		b, err := serialize(&ip, gopacket.Payload(piece))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		off += len(piece)
	}
	return out, nil
}

func (w *Writer) ipv6Packets(src, dst netip.Addr, proto layers.IPProtocol, l4 []byte, shape ipShape) ([][]byte, error) {
	// Hop-by-hop and routing headers come before a fragment header (they are
	// read by every router), destination options after it (RFC 8200 4.5).
	var unfragmentable, fragmentable []layers.IPProtocol
	if shape.ipv6Ext {
		unfragmentable = []layers.IPProtocol{layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing}
		fragmentable = []layers.IPProtocol{layers.IPProtocolIPv6Destination}
	}
	base := layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if !shape.fragment {
		chain := append(append([]layers.IPProtocol{}, unfragmentable...), fragmentable...)
		ip := base
		ip.NextHeader = first(chain, proto)
		payload := append(extensionHeaders(chain, proto), l4...)
		b, err := serialize(&ip, gopacket.Payload(payload))
		return [][]byte{b}, err
	}
	id := w.fragID
	w.fragID++
	afterFragment := first(fragmentable, proto)
	head := extensionHeaders(unfragmentable, layers.IPProtocolIPv6Fragment)
	body := append(extensionHeaders(fragmentable, proto), l4...)
	var out [][]byte
	off := 0
	pieces := chunks(body, shape.fragSize)
	for k, piece := range pieces {
		ip := base
		ip.NextHeader = first(unfragmentable, layers.IPProtocolIPv6Fragment)
		fh := make([]byte, 8)
		fh[0] = byte(afterFragment)
		more := uint16(0)
		if k < len(pieces)-1 {
			more = 1
		}
		binary.BigEndian.PutUint16(fh[2:4], uint16(off/8)<<3|more)
		binary.BigEndian.PutUint32(fh[4:8], id)
		payload := append(append(append([]byte{}, head...), fh...), piece...)
		b, err := serialize(&ip, gopacket.Payload(payload))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
		off += len(piece)
	}
	return out, nil
}

// first is chain's first protocol, or otherwise when chain is empty.
func first(chain []layers.IPProtocol, otherwise layers.IPProtocol) layers.IPProtocol {
	if len(chain) > 0 {
		return chain[0]
	}
	return otherwise
}

// extensionHeaders builds 8-byte IPv6 extension headers of the given types,
// each naming the next, the last naming last.
func extensionHeaders(chain []layers.IPProtocol, last layers.IPProtocol) []byte {
	var out []byte
	for k, typ := range chain {
		next := last
		if k+1 < len(chain) {
			next = chain[k+1]
		}
		h := make([]byte, 8)
		h[0] = byte(next)
		h[1] = 0 // length in 8-byte units beyond the first
		if typ == layers.IPProtocolIPv6Routing {
			h[2] = 253 // routing type reserved for experiments; segments left 0 means ignore it
		} else {
			h[2], h[3] = 1, 4 // a PadN option filling the header
		}
		out = append(out, h...)
	}
	return out
}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serializeOpts, ls...); err != nil {
		return nil, fmt.Errorf("serialize packet: %w", err)
	}
	return buf.Bytes(), nil
}

var (
	macA = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	macB = []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
)

// frame puts the interface's link header in front of an IP packet.
func (i *Interface) frame(ip []byte, v6 bool) ([]byte, error) {
	etherType := layers.EthernetTypeIPv4
	if v6 {
		etherType = layers.EthernetTypeIPv6
	}
	switch i.linkType {
	case layers.LinkTypeEthernet:
		eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: etherType}
		ls := []gopacket.SerializableLayer{eth}
		for k, vlan := range i.vlans {
			if k == 0 {
				eth.EthernetType = layers.EthernetTypeDot1Q
				if len(i.vlans) > 1 {
					eth.EthernetType = layers.EthernetTypeQinQ
				}
			}
			tag := &layers.Dot1Q{VLANIdentifier: vlan, Type: etherType}
			if k+1 < len(i.vlans) {
				tag.Type = layers.EthernetTypeDot1Q
			}
			ls = append(ls, tag)
		}
		return serialize(append(ls, gopacket.Payload(ip))...)
	case layers.LinkTypeLinuxSLL:
		h := make([]byte, 16, 16+len(ip))
		binary.BigEndian.PutUint16(h[0:2], 0) // packet sent to us
		binary.BigEndian.PutUint16(h[2:4], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:6], 6)
		copy(h[6:14], macA)
		binary.BigEndian.PutUint16(h[14:16], uint16(etherType))
		return append(h, ip...), nil
	case layers.LinkTypeLinuxSLL2:
		h := make([]byte, 20, 20+len(ip))
		binary.BigEndian.PutUint16(h[0:2], uint16(etherType))
		binary.BigEndian.PutUint32(h[4:8], 1)  // interface index
		binary.BigEndian.PutUint16(h[8:10], 1) // ARPHRD_ETHER
		h[10] = 0                              // packet sent to us
		h[11] = 6
		copy(h[12:20], macA)
		return append(h, ip...), nil
	case layers.LinkTypeNull:
		// The family is in the writing host's byte order; little-endian here,
		// with macOS's AF_INET6.
		family := uint32(layers.ProtocolFamilyIPv4)
		if v6 {
			family = uint32(layers.ProtocolFamilyIPv6Darwin)
		}
		h := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(ip)), family)
		return append(h, ip...), nil
	case layers.LinkTypeLoop:
		// LOOP is always big-endian, with OpenBSD's AF_INET6.
		family := uint32(layers.ProtocolFamilyIPv4)
		if v6 {
			family = uint32(layers.ProtocolFamilyIPv6BSD)
		}
		h := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(ip)), family)
		return append(h, ip...), nil
	case layers.LinkTypeRaw, LinkTypeRaw12, LinkTypeRaw14, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return append([]byte(nil), ip...), nil
	}
	return nil, fmt.Errorf("pcapgen cannot build frames for link type %d (%v)", i.linkType, i.linkType)
}
