// Package capture reads packets from capture files, standard input and live
// interfaces, decodes their link, network and transport layers with gopacket's
// DecodingLayerParser, reassembles IP fragments, and hands on TCP segments.
package capture

import (
	"context"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Segment is one decoded TCP segment.
type Segment struct {
	CaptureInfo gopacket.CaptureInfo
	// NetFlow is the IPv4 or IPv6 source and destination.
	NetFlow gopacket.Flow
	// TCP is the decoded header; TCP.Payload aliases the packet buffer.
	TCP layers.TCP
	// Source names the file or interface the packet came from.
	Source string
}

// Source yields TCP segments in capture order.
type Source interface {
	// Next returns the next TCP segment. The segment and its bytes are valid only
	// until the next call. It returns io.EOF at the end of the capture.
	Next(ctx context.Context) (*Segment, error)
	// Stats reports what the source has read and skipped so far.
	Stats() Stats
	Close() error
}

// Stats counts what a source has read. Every skipped packet is counted by reason.
type Stats struct {
	Packets       uint64 // packets read
	Bytes         uint64 // bytes of packet data read (captured length)
	TCPSegments   uint64 // TCP segments handed on
	NonTCP        uint64 // packets that are not TCP (ARP, UDP, ICMP, ...)
	DecodeErrors  uint64 // packets that could not be decoded
	Truncated     uint64 // packets cut by the snap length
	Fragments     uint64 // IP fragments seen
	Reassembled   uint64 // IP datagrams rebuilt from fragments
	FragmentDrops uint64 // fragments that could not be rebuilt
	KernelDrops   uint64 // live: dropped by the kernel (pcap stats)
	IfaceDrops    uint64 // live: dropped by the interface (pcap stats)
	QueueDrops    uint64 // live: dropped because the packets waiting for processing passed their byte cap
	// UnsupportedLinkType counts packets skipped because their interface has a
	// link type the decoder does not read (pcapng files with several interfaces).
	UnsupportedLinkType uint64
}
