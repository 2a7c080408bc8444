package capture

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/ip6defrag"
	"github.com/gopacket/gopacket/layers"
)

// Link types with no constant in gopacket: DLT_RAW as some platforms number it
// in files written by old tools.
const (
	linkTypeRaw12 layers.LinkType = 12 // DLT_RAW on most platforms
	linkTypeRaw14 layers.LinkType = 14 // DLT_RAW on OpenBSD
)

// supportedLinkTypes lists the link types Decode reads, with their names.
var supportedLinkTypes = []struct {
	t    layers.LinkType
	name string
}{
	{layers.LinkTypeEthernet, "Ethernet"},
	{layers.LinkTypeLinuxSLL, "Linux cooked v1"},
	{layers.LinkTypeLinuxSLL2, "Linux cooked v2"},
	{layers.LinkTypeRaw, "raw IP"},
	{linkTypeRaw12, "raw IP"},
	{linkTypeRaw14, "raw IP"},
	{layers.LinkTypeIPv4, "raw IPv4"},
	{layers.LinkTypeIPv6, "raw IPv6"},
	{layers.LinkTypeNull, "BSD loopback"},
	{layers.LinkTypeLoop, "OpenBSD loopback"},
}

// SupportedLinkTypes returns the link types a Decoder reads.
func SupportedLinkTypes() []layers.LinkType {
	out := make([]layers.LinkType, len(supportedLinkTypes))
	for i, s := range supportedLinkTypes {
		out[i] = s.t
	}
	return out
}

// LinkTypeSupported reports whether a Decoder reads packets of link type t.
func LinkTypeSupported(t layers.LinkType) bool {
	for _, s := range supportedLinkTypes {
		if s.t == t {
			return true
		}
	}
	return false
}

// supportedLinkTypesText is the list for error messages: "Ethernet (1), ...".
func supportedLinkTypesText() string {
	var parts []string
	for i := 0; i < len(supportedLinkTypes); {
		// Names shared by several numbers are listed once: raw IP (101, 12, 14).
		name, nums := supportedLinkTypes[i].name, []string{}
		for ; i < len(supportedLinkTypes) && supportedLinkTypes[i].name == name; i++ {
			nums = append(nums, fmt.Sprint(int(supportedLinkTypes[i].t)))
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", name, strings.Join(nums, ", ")))
	}
	return strings.Join(parts, ", ")
}

// fragmentTimeout is how long fragments wait for the rest of their datagram,
// Linux's default ipfrag_time.
const fragmentTimeout = 30 * time.Second

// decodeCounters are the Stats a Decoder keeps. They are atomic so that Stats
// can be read while another goroutine decodes.
type decodeCounters struct {
	packets, bytes, tcpSegments, nonTCP, decodeErrors, truncated atomic.Uint64
	fragments, reassembled, fragmentDrops, unsupportedLinkType   atomic.Uint64
}

// Decoder decodes link, network and transport layers of captured packets into
// TCP segments with one reused DecodingLayerParser per first layer, and
// reassembles IP fragments. Decoding a packet that is not a fragment allocates
// nothing. A Decoder is for one goroutine; Stats may be called from any.
type Decoder struct {
	eth  layers.Ethernet
	vlan layers.Dot1Q
	// llc and snap carry IP in 802.3 frames with a length instead of an EtherType.
	llc   layers.LLC
	snap  layers.SNAP
	sll   layers.LinuxSLL
	sll2  layers.LinuxSLL2
	loop  layers.Loopback
	ip4   layers.IPv4
	ip6   layers.IPv6
	ext6  ipv6ExtensionSkipper
	frag6 layers.IPv6Fragment

	// seg is handed out by Decode; the parsers decode TCP straight into it.
	seg Segment

	ethernet, cookedV1, cookedV2, loopback, rawIPv4, rawIPv6 *gopacket.DecodingLayerParser
	decoded                                                  []gopacket.LayerType

	defrag4   *ip4defrag.IPv4Defragmenter
	defrag6   *ip6defrag.IPv6Defragmenter
	lastSweep time.Time

	counts decodeCounters
}

// ipv6ExtensionSkipper steps over the IPv6 extension headers that carry nothing
// for us: hop-by-hop (when not first, where IPv6 itself takes it), routing and
// destination options. Fragment headers are decoded by layers.IPv6Fragment.
type ipv6ExtensionSkipper struct{ layers.IPv6ExtensionSkipper }

var skippedIPv6Extensions = gopacket.NewLayerClass([]gopacket.LayerType{
	layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination,
})

func (s *ipv6ExtensionSkipper) CanDecode() gopacket.LayerClass { return skippedIPv6Extensions }

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder {
	d := &Decoder{
		decoded: make([]gopacket.LayerType, 0, 16),
		defrag4: ip4defrag.NewIPv4Defragmenter(),
		defrag6: ip6defrag.NewIPv6Defragmenter(),
	}
	network := []gopacket.DecodingLayer{&d.ip4, &d.ip6, &d.ext6, &d.frag6, &d.seg.TCP}
	parser := func(first gopacket.LayerType, link ...gopacket.DecodingLayer) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first)
		// A sparse array beats the default map lookup per layer.
		p.SetDecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
		for _, l := range append(link, network...) {
			p.AddDecodingLayer(l)
		}
		// What follows TCP (the payload, or a protocol guessed from the port) is
		// not ours to decode; neither is UDP or ICMP, which we only count.
		p.IgnoreUnsupported = true
		return p
	}
	d.ethernet = parser(layers.LayerTypeEthernet, &d.eth, &d.vlan, &d.llc, &d.snap)
	d.cookedV1 = parser(layers.LayerTypeLinuxSLL, &d.sll, &d.vlan)
	d.cookedV2 = parser(layers.LayerTypeLinuxSLL2, &d.sll2, &d.vlan)
	d.loopback = parser(layers.LayerTypeLoopback, &d.loop)
	d.rawIPv4 = parser(layers.LayerTypeIPv4)
	d.rawIPv6 = parser(layers.LayerTypeIPv6)
	return d
}

// parserFor picks the parser for a link type; raw IP link types are told apart
// by the IP version nibble. It returns nil for an unsupported link type.
func (d *Decoder) parserFor(linkType layers.LinkType, data []byte) *gopacket.DecodingLayerParser {
	switch linkType {
	case layers.LinkTypeEthernet:
		return d.ethernet
	case layers.LinkTypeLinuxSLL:
		return d.cookedV1
	case layers.LinkTypeLinuxSLL2:
		return d.cookedV2
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return d.loopback
	case layers.LinkTypeIPv4:
		return d.rawIPv4
	case layers.LinkTypeIPv6:
		return d.rawIPv6
	case layers.LinkTypeRaw, linkTypeRaw12, linkTypeRaw14:
		if len(data) > 0 && data[0]>>4 == 6 {
			return d.rawIPv6
		}
		return d.rawIPv4
	}
	return nil
}

// Decode decodes one captured packet. It returns the TCP segment and true, or
// false when the packet is not a TCP segment, cannot be decoded, or is an IP
// fragment whose datagram is not complete yet; Stats counts each case. The
// segment, and the bytes its TCP.Payload points to, are valid until the next
// call: data is not copied. Segment.Source is left for the caller to set.
func (d *Decoder) Decode(data []byte, ci gopacket.CaptureInfo, linkType layers.LinkType) (*Segment, bool) {
	d.counts.packets.Add(1)
	d.counts.bytes.Add(uint64(len(data)))
	if ci.CaptureLength < ci.Length {
		d.counts.truncated.Add(1)
	}
	p := d.parserFor(linkType, data)
	if p == nil {
		d.counts.unsupportedLinkType.Add(1)
		return nil, false
	}
	if ci.Timestamp.Sub(d.lastSweep) > fragmentTimeout {
		d.sweepFragments(ci.Timestamp)
	}
	err := p.DecodeLayers(data, &d.decoded)
	var ip4, ip6, frag6, tcp bool
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			ip4 = true
		case layers.LayerTypeIPv6:
			ip6 = true
		case layers.LayerTypeIPv6Fragment:
			frag6 = true
		case layers.LayerTypeTCP:
			tcp = true
		}
	}
	switch {
	case err != nil:
		d.counts.decodeErrors.Add(1)
		return nil, false
	case tcp:
		d.seg.CaptureInfo = ci
		d.seg.CaptureInfo.AncillaryData = nil
		if ip6 {
			d.seg.NetFlow = d.ip6.NetworkFlow()
		} else {
			d.seg.NetFlow = d.ip4.NetworkFlow()
		}
		d.counts.tcpSegments.Add(1)
		return &d.seg, true
	case ip4 && (d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0):
		return d.defragIPv4(ci)
	case frag6 && (d.frag6.MoreFragments || d.frag6.FragmentOffset != 0):
		return d.defragIPv6(ci)
	case ip4 || ip6:
		d.counts.nonTCP.Add(1)
		return nil, false
	}
	// A link layer carrying something other than IP: ARP, LLDP, ...
	d.counts.nonTCP.Add(1)
	return nil, false
}

// defragIPv4 hands the decoded IPv4 fragment to the defragmenter and decodes
// the datagram once it is whole. The defragmenter keeps what it is given, and
// the packet buffer is reused, so the fragment is copied.
func (d *Decoder) defragIPv4(ci gopacket.CaptureInfo) (*Segment, bool) {
	d.counts.fragments.Add(1)
	in := &layers.IPv4{
		Version: d.ip4.Version, IHL: d.ip4.IHL, TOS: d.ip4.TOS, Length: d.ip4.Length,
		Id: d.ip4.Id, Flags: d.ip4.Flags, FragOffset: d.ip4.FragOffset, TTL: d.ip4.TTL,
		Protocol: d.ip4.Protocol, SrcIP: bytes.Clone(d.ip4.SrcIP), DstIP: bytes.Clone(d.ip4.DstIP),
	}
	in.Payload = bytes.Clone(d.ip4.Payload)
	out, err := d.defrag4.DefragIPv4WithTimestamp(in, ci.Timestamp)
	if err != nil {
		d.counts.fragmentDrops.Add(1)
		return nil, false
	}
	if out == nil {
		return nil, false
	}
	d.counts.reassembled.Add(1)
	if out.Protocol != layers.IPProtocolTCP {
		d.counts.nonTCP.Add(1)
		return nil, false
	}
	return d.reassembledTCP(ci, out.NetworkFlow(), out.Payload)
}

// defragIPv6 is defragIPv4 for IPv6. ip6defrag does not say when it throws
// fragments away (overlaps, oversize), so FragmentDrops only counts IPv6
// fragments given up by the timeout sweep.
func (d *Decoder) defragIPv6(ci gopacket.CaptureInfo) (*Segment, bool) {
	d.counts.fragments.Add(1)
	in := &layers.IPv6{
		Version: d.ip6.Version, TrafficClass: d.ip6.TrafficClass, FlowLabel: d.ip6.FlowLabel,
		HopLimit: d.ip6.HopLimit, NextHeader: d.ip6.NextHeader,
		SrcIP: bytes.Clone(d.ip6.SrcIP), DstIP: bytes.Clone(d.ip6.DstIP),
	}
	frag := &layers.IPv6Fragment{
		NextHeader: d.frag6.NextHeader, FragmentOffset: d.frag6.FragmentOffset,
		MoreFragments: d.frag6.MoreFragments, Identification: d.frag6.Identification,
	}
	frag.Payload = bytes.Clone(d.frag6.Payload)
	out := d.defrag6.DefragIPv6(in, frag)
	if out == nil {
		return nil, false
	}
	d.counts.reassembled.Add(1)
	// Destination options may follow the fragment header; step over them.
	next, payload := out.NextHeader, out.Payload
	for next == layers.IPProtocolIPv6HopByHop || next == layers.IPProtocolIPv6Routing || next == layers.IPProtocolIPv6Destination {
		if len(payload) < 8 || len(payload) < 8+8*int(payload[1]) {
			d.counts.decodeErrors.Add(1)
			return nil, false
		}
		next, payload = layers.IPProtocol(payload[0]), payload[8+8*int(payload[1]):]
	}
	if next != layers.IPProtocolTCP {
		d.counts.nonTCP.Add(1)
		return nil, false
	}
	return d.reassembledTCP(ci, out.NetworkFlow(), payload)
}

func (d *Decoder) reassembledTCP(ci gopacket.CaptureInfo, flow gopacket.Flow, tcp []byte) (*Segment, bool) {
	if err := d.seg.TCP.DecodeFromBytes(tcp, gopacket.NilDecodeFeedback); err != nil {
		d.counts.decodeErrors.Add(1)
		return nil, false
	}
	d.seg.CaptureInfo = ci
	d.seg.CaptureInfo.AncillaryData = nil
	d.seg.NetFlow = flow
	d.counts.tcpSegments.Add(1)
	return &d.seg, true
}

// sweepFragments gives up datagrams whose fragments have waited too long.
func (d *Decoder) sweepFragments(now time.Time) {
	if !d.lastSweep.IsZero() {
		dropped := d.defrag4.DiscardOlderThan(now.Add(-fragmentTimeout))
		// ip6defrag stamps fragments with the wall clock, not the capture's.
		dropped += d.defrag6.DiscardOlderThan(time.Now().Add(-fragmentTimeout))
		d.counts.fragmentDrops.Add(uint64(dropped))
	}
	d.lastSweep = now
}

// Stats reports what the decoder has seen. KernelDrops, IfaceDrops and
// QueueDrops are left for the source to fill in.
func (d *Decoder) Stats() Stats {
	return Stats{
		Packets:             d.counts.packets.Load(),
		Bytes:               d.counts.bytes.Load(),
		TCPSegments:         d.counts.tcpSegments.Load(),
		NonTCP:              d.counts.nonTCP.Load(),
		DecodeErrors:        d.counts.decodeErrors.Load(),
		Truncated:           d.counts.truncated.Load(),
		Fragments:           d.counts.fragments.Load(),
		Reassembled:         d.counts.reassembled.Load(),
		FragmentDrops:       d.counts.fragmentDrops.Load(),
		UnsupportedLinkType: d.counts.unsupportedLinkType.Load(),
	}
}
