// Package pcapgen builds synthetic packet captures for tests: TCP conversations
// with correct sequence and acknowledgement numbers and real IP and TCP
// checksums, over any link type the capture stage reads, written as pcap or
// pcapng. It makes the cases real captures rarely show on demand: reordered,
// duplicated, overlapping and missing segments, connections seen from the
// middle, IP fragments, VLAN tags, IPv6 extension headers and cut records.
//
//	w := pcapgen.New(pcapgen.Options{LinkType: layers.LinkTypeEthernet})
//	c := w.Conn(netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:8000"))
//	c.Handshake()
//	c.Client([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
//	c.Server([]byte("HTTP/1.1 204 No Content\r\n\r\n"))
//	c.Close()
//	data := w.Bytes()
package pcapgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Format is the file format a Writer produces.
type Format int

const (
	// PCAP is the classic libpcap format with microsecond timestamps.
	PCAP Format = iota
	// PCAPNano is the libpcap format with nanosecond timestamps.
	PCAPNano
	// PCAPNG is the pcapng format; it is the only one that can hold several
	// interfaces with different link types.
	PCAPNG
)

// Link types with no constant in gopacket: DLT_RAW as some platforms number it.
const (
	LinkTypeRaw12 layers.LinkType = 12 // DLT_RAW on most platforms
	LinkTypeRaw14 layers.LinkType = 14 // DLT_RAW on OpenBSD
)

// defaultStart is the timestamp of the first packet when Options.Start is zero.
var defaultStart = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// Options configures a Writer.
type Options struct {
	// LinkType of the first interface; Ethernet when zero (LinkTypeNull is 0,
	// so a BSD loopback capture needs Null set instead).
	LinkType layers.LinkType
	// Null selects LinkTypeNull (0) for the first interface.
	Null bool
	// VLANs are the 802.1Q tags of Ethernet frames, outermost first. With two
	// or more the outer tag uses the QinQ EtherType 0x88a8.
	VLANs []uint16
	// Format is the file format; PCAP when zero.
	Format Format
	// BigEndian writes a big-endian pcap (the byte order of the machine that
	// wrote it); ignored for pcapng.
	BigEndian bool
	// Start is the first packet's timestamp; 2024-03-01T12:00:00Z when zero.
	Start time.Time
	// Step is how far the clock moves after each packet; 1ms when zero.
	Step time.Duration
	// Snaplen cuts every record to this many bytes, as tcpdump -s does, keeping
	// the original length in the record header. 0 keeps whole packets.
	Snaplen int
}

// Writer collects packets in memory and writes them as a capture file.
// Its methods are not safe for concurrent use.
type Writer struct {
	opts    Options
	ifaces  []*Interface
	records []record
	now     time.Time
	ipID    uint16
	fragID  uint32
	err     error
	// stream and streamOut are set once Stream has written the file header.
	stream    *pcapgo.Writer
	streamOut io.Writer
}

// record is one packet as written to the file.
type record struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// Interface is a capture interface: a link type and, for Ethernet, VLAN tags.
// pcap files have exactly one; pcapng files may have several.
type Interface struct {
	w        *Writer
	index    int
	linkType layers.LinkType
	vlans    []uint16
}

// New returns a Writer with one interface configured by opts.
func New(opts Options) *Writer {
	if opts.Null {
		opts.LinkType = layers.LinkTypeNull
	} else if opts.LinkType == 0 {
		opts.LinkType = layers.LinkTypeEthernet
	}
	if opts.Start.IsZero() {
		opts.Start = defaultStart
	}
	if opts.Step == 0 {
		opts.Step = time.Millisecond
	}
	w := &Writer{opts: opts, now: opts.Start, ipID: 1, fragID: 1}
	w.ifaces = append(w.ifaces, &Interface{w: w, linkType: opts.LinkType, vlans: opts.VLANs})
	return w
}

// AddInterface adds a capture interface with its own link type; only pcapng
// files can hold more than one (WriteTo fails otherwise).
func (w *Writer) AddInterface(linkType layers.LinkType, vlans ...uint16) *Interface {
	i := &Interface{w: w, index: len(w.ifaces), linkType: linkType, vlans: vlans}
	w.ifaces = append(w.ifaces, i)
	return i
}

// Interface returns interface n (0 is the one Options configured).
func (w *Writer) Interface(n int) *Interface { return w.ifaces[n] }

// LinkType is the interface's link type.
func (i *Interface) LinkType() layers.LinkType { return i.linkType }

// Now is the timestamp the next packet gets.
func (w *Writer) Now() time.Time { return w.now }

// Advance moves the clock forward by d, as a pause in the traffic would.
func (w *Writer) Advance(d time.Duration) { w.now = w.now.Add(d) }

// SetTime sets the timestamp of the next packet.
func (w *Writer) SetTime(t time.Time) { w.now = t }

// Packets is the number of packets written so far.
func (w *Writer) Packets() int { return len(w.records) }

// Err is the first error met while building packets, if any.
func (w *Writer) Err() error { return w.err }

// Raw writes data as one packet on the first interface, link header included.
func (w *Writer) Raw(data []byte) { w.ifaces[0].Raw(data) }

// Raw writes data as one packet on the interface, link header included.
func (i *Interface) Raw(data []byte) { i.w.add(i.index, bytes.Clone(data)) }

// UDP writes one UDP datagram on the first interface.
func (w *Writer) UDP(src, dst netip.AddrPort, payload []byte) { w.ifaces[0].UDP(src, dst, payload) }

// UDP writes one UDP datagram on the interface.
func (i *Interface) UDP(src, dst netip.AddrPort, payload []byte) {
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	l4, err := transportBytes(src.Addr(), dst.Addr(), udp, payload)
	if err != nil {
		i.w.fail(err)
		return
	}
	i.writeIP(src.Addr(), dst.Addr(), layers.IPProtocolUDP, l4, ipShape{})
}

func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// add appends a record stamped with the clock, then moves the clock on.
func (w *Writer) add(iface int, data []byte) {
	ci := gopacket.CaptureInfo{Timestamp: w.now, Length: len(data), CaptureLength: len(data), InterfaceIndex: iface}
	if w.opts.Snaplen > 0 && len(data) > w.opts.Snaplen {
		data = data[:w.opts.Snaplen]
		ci.CaptureLength = len(data)
	}
	w.records = append(w.records, record{ci: ci, data: data})
	w.now = w.now.Add(w.opts.Step)
}

// Bytes returns the capture file. It panics if a packet could not be built,
// which only a broken test does.
func (w *Writer) Bytes() []byte {
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		panic(fmt.Sprintf("pcapgen: %v", err))
	}
	return buf.Bytes()
}

// WriteTo writes the capture file to out. It can be called more than once.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.err != nil {
		return 0, w.err
	}
	var buf bytes.Buffer
	var err error
	switch w.opts.Format {
	case PCAP, PCAPNano:
		err = w.writePcap(&buf)
	case PCAPNG:
		err = w.writePcapng(&buf)
	default:
		err = fmt.Errorf("unknown format %d", w.opts.Format)
	}
	if err != nil {
		return 0, err
	}
	n, err := out.Write(buf.Bytes())
	return int64(n), err
}

func (w *Writer) snaplen() uint32 {
	if w.opts.Snaplen > 0 {
		return uint32(w.opts.Snaplen)
	}
	return 262144
}

func (w *Writer) writePcap(buf *bytes.Buffer) error {
	if len(w.ifaces) > 1 {
		return errors.New("a pcap file has one interface: use Format PCAPNG for several")
	}
	var pw *pcapgo.Writer
	if w.opts.Format == PCAPNano {
		pw = pcapgo.NewWriterNanos(buf)
	} else {
		pw = pcapgo.NewWriter(buf)
	}
	if err := pw.WriteFileHeader(w.snaplen(), w.ifaces[0].linkType); err != nil {
		return err
	}
	for _, r := range w.records {
		if err := pw.WritePacket(r.ci, r.data); err != nil {
			return err
		}
	}
	if w.opts.BigEndian {
		swapPcapByteOrder(buf.Bytes())
	}
	return nil
}

// swapPcapByteOrder turns the little-endian pcap pcapgo writes into the same
// file as a big-endian machine writes it: every header field swapped, packet
// bytes untouched.
func swapPcapByteOrder(b []byte) {
	swap16 := func(p []byte) { p[0], p[1] = p[1], p[0] }
	swap32 := func(p []byte) { p[0], p[1], p[2], p[3] = p[3], p[2], p[1], p[0] }
	swap32(b[0:4])
	swap16(b[4:6])
	swap16(b[6:8])
	for off := 8; off < 24; off += 4 {
		swap32(b[off : off+4])
	}
	for off := 24; off+16 <= len(b); {
		capLen := binary.LittleEndian.Uint32(b[off+8 : off+12])
		for f := off; f < off+16; f += 4 {
			swap32(b[f : f+4])
		}
		off += 16 + int(capLen)
	}
}

func (w *Writer) writePcapng(buf *bytes.Buffer) error {
	ngIface := func(i *Interface) pcapgo.NgInterface {
		return pcapgo.NgInterface{
			Name:                fmt.Sprintf("pcapgen%d", i.index),
			LinkType:            i.linkType,
			SnapLength:          w.snaplen(),
			TimestampResolution: 9,
		}
	}
	nw, err := pcapgo.NewNgWriterInterface(buf, ngIface(w.ifaces[0]), pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "otas-sniff pcapgen"},
	})
	if err != nil {
		return err
	}
	for _, i := range w.ifaces[1:] {
		if _, err := nw.AddInterface(ngIface(i)); err != nil {
			return err
		}
	}
	for _, r := range w.records {
		if err := nw.WritePacket(r.ci, r.data); err != nil {
			return err
		}
	}
	return nw.Flush()
}
