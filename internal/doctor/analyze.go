package doctor

import (
	"encoding/binary"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/httpparse"
	"github.com/otas/otas-sniff/reassembly"
)

// Stream kinds, by what the client sent first.
const (
	kindHTTP1 = "http/1.x"
	kindTLS   = "tls"
	kindH2    = "http/2"
	kindOther = "other"
	kindEmpty = "empty" // handshake or ACKs only: no payload either way
)

// Limits on what the analysis keeps: enough to classify, never the traffic.
const (
	// headKeep is how many first bytes of a side are kept: enough for a
	// request line or a status line. tlsHeadKeep is for a client that starts
	// with a TLS handshake: a ClientHello with post-quantum key shares is
	// about 1.8 KB, and may take several records.
	headKeep    = 256
	tlsHeadKeep = 16 << 10
	// checksumSample is how many packets have their TCP checksum verified.
	checksumSample = 5000
	// maxSNIs bounds the distinct server names listed.
	maxSNIs = 5
)

// analyzer runs the real pipeline stages (reassembly, httpparse) on the
// segments of one capture and notes, beside them, what the doctor needs: the
// packets per direction, what each connection carries, TCP checksums, and
// whether requests carry agent session tokens.
type analyzer struct {
	ports  capture.Ports
	local  map[netip.Addr]bool // the capturing host's addresses; nil for files
	asm    *reassembly.Assembler
	parser *httpparse.StreamFactory

	streams []*streamInfo
	// byEndpoints finds a connection's streamInfo from an Exchange.
	byEndpoints map[[2]netip.AddrPort]*streamInfo

	packets, toServer, fromServer, otherPort uint64
	payloadToServer, payloadFromServer       uint64
	first, last                              time.Time
	sum                                      checksumCounts
	requests, withToken, complete            uint64
}

type checksumCounts struct {
	checked, bad uint64
	// offload counts bad checksums that carry the partial (pseudo-header only)
	// sum a kernel leaves for the NIC to finish, or were sent by this host.
	offload uint64
	// badSent and badReceived split the bad ones by whether the capturing
	// host sent them (live only).
	badSent, badReceived uint64
}

// streamInfo is what the doctor learns about one connection.
type streamInfo struct {
	conn       reassembly.Conn
	clientSide reassembly.Side
	head       [2][]byte // first bytes per side
	bytes      [2]uint64
	gaps       int
	exchanges  int
	kind       string
	hello      helloInfo
	// decided is set once the first bytes told the kind; the heads are then
	// dropped, so a long connection holds nothing.
	decided bool
}

func newAnalyzer(ports capture.Ports, local map[netip.Addr]bool, asmOpts reassembly.Options) *analyzer {
	a := &analyzer{ports: ports, local: local, byEndpoints: map[[2]netip.AddrPort]*streamInfo{}}
	a.parser = httpparse.NewStreamFactory(httpparse.Options{}, a.exchange)
	a.asm = reassembly.NewAssembler(a, asmOpts)
	return a
}

// isServerPort reports which end of a packet is the server: the one whose
// port was asked about (the lower when both are).
func (a *analyzer) toServerPort(src, dst uint16) (toServer, onPort bool) {
	s, d := a.ports.Contains(src), a.ports.Contains(dst)
	switch {
	case s && d:
		return dst < src, true
	case d:
		return true, true
	case s:
		return false, true
	}
	return false, false
}

// feed takes one captured segment.
func (a *analyzer) feed(seg *capture.Segment) {
	toServer, onPort := a.toServerPort(uint16(seg.TCP.SrcPort), uint16(seg.TCP.DstPort))
	if !onPort {
		a.otherPort++
		return
	}
	a.packets++
	ts := seg.CaptureInfo.Timestamp
	if a.first.IsZero() || ts.Before(a.first) {
		a.first = ts
	}
	if ts.After(a.last) {
		a.last = ts
	}
	if toServer {
		a.toServer++
		if len(seg.TCP.Payload) > 0 {
			a.payloadToServer++
		}
	} else {
		a.fromServer++
		if len(seg.TCP.Payload) > 0 {
			a.payloadFromServer++
		}
	}
	if a.sum.checked < checksumSample && seg.CaptureInfo.CaptureLength >= seg.CaptureInfo.Length {
		a.checksum(seg)
	}
	a.asm.Assemble(seg.NetFlow, &seg.TCP, seg.CaptureInfo, seg.Source)
}

// checksum verifies one segment's TCP checksum and, when it is wrong, tells
// offload (the kernel left the pseudo-header sum for the NIC to finish, or this
// host sent it) from damage.
func (a *analyzer) checksum(seg *capture.Segment) {
	src, _ := netip.AddrFromSlice(seg.NetFlow.Src().Raw())
	dst, _ := netip.AddrFromSlice(seg.NetFlow.Dst().Raw())
	if !src.IsValid() || !dst.IsValid() || len(seg.TCP.Contents) < 20 {
		return
	}
	tcpLen := len(seg.TCP.Contents) + len(seg.TCP.Payload)
	var pseudo uint32
	for _, ip := range [][]byte{src.AsSlice(), dst.AsSlice()} {
		pseudo += sum16(ip)
	}
	pseudo += uint32(layers.IPProtocolTCP) + uint32(tcpLen)
	total := pseudo + sum16(seg.TCP.Contents) + sum16(seg.TCP.Payload)
	a.sum.checked++
	if fold(total) == 0xffff {
		return
	}
	a.sum.bad++
	field := binary.BigEndian.Uint16(seg.TCP.Contents[16:18])
	sent := a.local != nil && a.local[src.Unmap()]
	switch {
	case sent:
		a.sum.badSent++
	case a.local != nil:
		a.sum.badReceived++
	}
	// CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not
	// complemented; some drivers leave zero.
	if partial := fold(pseudo); field == partial || field == 0 || sent {
		a.sum.offload++
	}
}

// sum16 adds b as big-endian 16-bit words; an odd last byte is padded.
func sum16(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// finish closes every connection, so each is classified and every pending
// request is counted.
func (a *analyzer) finish(reason reassembly.CloseReason) {
	a.asm.FlushAll(reason)
}

// NewStream makes the analyzer the reassembly's StreamFactory: each
// connection goes to httpparse as in the real pipeline, through a tee that
// keeps its first bytes.
func (a *analyzer) NewStream(c reassembly.Conn) reassembly.Stream {
	info := &streamInfo{conn: c, clientSide: reassembly.Initiator}
	// The server is the side on the asked-for port; without a SYN the
	// initiator is only the first side seen.
	if toServer, _ := a.toServerPort(c.Initiator.Port(), c.Responder.Port()); !toServer {
		info.clientSide = reassembly.Responder
	}
	a.streams = append(a.streams, info)
	client, server := c.Initiator, c.Responder
	if info.clientSide == reassembly.Responder {
		client, server = server, client
	}
	a.byEndpoints[[2]netip.AddrPort{client, server}] = info
	return &teeStream{inner: a.parser.NewStream(c), info: info}
}

// exchange is httpparse's emit callback.
func (a *analyzer) exchange(ex *httpparse.Exchange) {
	a.requests++
	if ex.Request != nil && ex.Request.Header.Get("X-OTAS-Agent-Session-Token") != "" {
		a.withToken++
	}
	if ex.Response != nil {
		a.complete++
	}
	info := a.byEndpoints[[2]netip.AddrPort{ex.Client, ex.Server}]
	if info == nil {
		info = a.byEndpoints[[2]netip.AddrPort{ex.Server, ex.Client}]
	}
	if info != nil {
		info.exchanges++
		// The parser found HTTP/1.x where the first bytes did not tell
		// (a connection joined mid-body).
		if info.decided && (info.kind == kindOther || info.kind == kindEmpty) {
			info.kind = kindHTTP1
		}
	}
}

// teeStream hands a connection's bytes to the parser and keeps the first
// bytes of each side for classification.
type teeStream struct {
	inner reassembly.Stream
	info  *streamInfo
}

func (t *teeStream) Data(c reassembly.Chunk) {
	i := t.info
	i.bytes[c.Side] += uint64(len(c.Bytes))
	if !i.decided && i.gaps == 0 {
		keep, first := headKeep, i.head[c.Side]
		if len(first) == 0 {
			first = c.Bytes
		}
		if c.Side == i.clientSide && len(first) > 0 && first[0] == tlsRecordHandshake {
			keep = tlsHeadKeep
		}
		if room := keep - len(i.head[c.Side]); room > 0 {
			i.head[c.Side] = append(i.head[c.Side], c.Bytes[:min(room, len(c.Bytes))]...)
		}
		i.decideEarly()
	}
	t.inner.Data(c)
}

// decideEarly classifies as soon as the client's first bytes are conclusive.
func (i *streamInfo) decideEarly() {
	client := i.head[i.clientSide]
	switch {
	case len(client) >= 5 && client[0] == tlsRecordHandshake:
		if _, ok := parseClientHello(client); ok || len(client) >= tlsHeadKeep {
			i.classify()
		}
	case len(client) >= len(h2Preface) || len(client) >= 16 && !looksLikeTLS(client):
		i.classify()
	}
}

func (t *teeStream) Gap(s reassembly.Side, n int, ts time.Time) {
	t.info.gaps++
	t.inner.Gap(s, n, ts)
}

func (t *teeStream) End(s reassembly.Side, ts time.Time) { t.inner.End(s, ts) }

func (t *teeStream) Close(reason reassembly.CloseReason, ts time.Time) {
	t.inner.Close(reason, ts)
	if !t.info.decided {
		t.info.classify()
	}
}

// classify names what the connection carries from its first bytes. An
// HTTP/1.x exchange parsed on it later makes it HTTP/1.x (see exchange).
func (i *streamInfo) classify() {
	i.decided = true
	client, server := i.head[i.clientSide], i.head[i.clientSide.Other()]
	switch {
	case len(client) == 0 && len(server) == 0:
		i.kind = kindEmpty
	case looksLikeTLS(client) || looksLikeTLS(server):
		i.kind = kindTLS
		if h, ok := parseClientHello(client); ok {
			i.hello = h
		}
	case isH2Preface(client):
		i.kind = kindH2
	case isHTTP1Request(client) || isHTTP1Response(server) || i.exchanges > 0:
		i.kind = kindHTTP1
	default:
		i.kind = kindOther
	}
	// The heads are needed no longer.
	i.head = [2][]byte{}
}

// streamCounts tallies connections by kind, with the SNIs and ALPN offers.
type streamCounts struct {
	byKind   map[string]int
	snis     []string
	alpnH2   int
	withData int
}

func (a *analyzer) streamCounts() streamCounts {
	sc := streamCounts{byKind: map[string]int{}}
	seen := map[string]bool{}
	for _, s := range a.streams {
		if !s.decided {
			s.classify()
		}
		sc.byKind[s.kind]++
		if s.kind != kindEmpty {
			sc.withData++
		}
		if s.kind != kindTLS {
			continue
		}
		if n := s.hello.SNI; n != "" && !seen[n] {
			seen[n] = true
			sc.snis = append(sc.snis, n)
		}
		for _, p := range s.hello.ALPN {
			if p == "h2" {
				sc.alpnH2++
				break
			}
		}
	}
	sort.Strings(sc.snis)
	return sc
}
