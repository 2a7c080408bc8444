package capture

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"
)

// Errors a file source returns, wrapped with the file name and where in the
// file it happened. Test for them with errors.Is. A missing or unreadable file
// gives an error wrapping fs.ErrNotExist or fs.ErrPermission.
var (
	// ErrNotCapture means the input is neither pcap nor pcapng (gzipped or not).
	ErrNotCapture = errors.New("not a pcap or pcapng capture")
	// ErrUnsupportedLinkType means the capture's link layer is not one the
	// decoder reads; see SupportedLinkTypes.
	ErrUnsupportedLinkType = errors.New("unsupported link type")
	// ErrTruncated means the file ends in the middle of a header, packet or
	// block. Every packet before the cut has been returned when Next returns it.
	ErrTruncated = errors.New("capture file is truncated")
	// ErrCorrupt means a record or block is malformed (not merely cut short).
	ErrCorrupt = errors.New("capture file is corrupt")
)

// FileOptions configures OpenFiles.
type FileOptions struct {
	// Stdin is read for the path "-"; os.Stdin when nil. If it has a
	// SetReadDeadline method (as pipes and *os.File do), a blocked read is
	// interrupted when the context given to Next is cancelled.
	Stdin io.Reader
	// OnRead, when set, is told how many bytes were read from a file (not
	// from standard input), for a progress bar.
	OnRead func(n int)
}

// readCounter reports the bytes read through it.
type readCounter struct {
	r      io.Reader
	onRead func(int)
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.onRead(n)
	return n, err
}

// stdinName is Segment.Source and the name in errors for the path "-".
const stdinName = "stdin"

// readBufferSize is the read-ahead of each input. It is at least bufio's
// default size, so pcapgo's readers adopt our bufio.Reader instead of adding
// one, and the byte offsets in errors stay exact.
const readBufferSize = 64 << 10

// OpenFiles opens capture files for reading; "-" reads opts.Stdin. Each file
// is pcap (any byte order, micro- or nanosecond timestamps) or pcapng (any
// number of sections and interfaces), either possibly gzip-compressed, told
// apart by their first bytes. Several files are merged by packet timestamp, as
// mergecap does, so captures of the same period taken at different places
// interleave. Segment.Source is the path as given ("stdin" for "-").
//
// OpenFiles reads each file's header, so it fails early for a missing file, a
// file that is not a capture, or a pcap with an unsupported link type.
func OpenFiles(paths []string, opts FileOptions) (Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("no capture file given: name one, or - for standard input")
	}
	s := &fileSource{dec: NewDecoder()}
	usedStdin := false
	for _, path := range paths {
		var in *input
		var err error
		if path == "-" {
			if usedStdin {
				s.Close()
				return nil, errors.New("- (standard input) is given more than once: it can be read only once")
			}
			usedStdin = true
			r := opts.Stdin
			if r == nil {
				r = os.Stdin
			}
			in, err = openInput(stdinName, r, nil)
		} else {
			f, openErr := os.Open(path)
			if openErr != nil {
				s.Close()
				// The *PathError names the file and wraps fs.ErrNotExist or
				// fs.ErrPermission.
				return nil, fmt.Errorf("open capture: %w", openErr)
			}
			var r io.Reader = f
			if opts.OnRead != nil {
				r = &readCounter{r: f, onRead: opts.OnRead}
			}
			in, err = openInput(path, r, f)
			if err != nil {
				f.Close()
			}
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		s.inputs = append(s.inputs, in)
	}
	return s, nil
}

// fileSource merges the packets of its inputs by timestamp and decodes them.
type fileSource struct {
	inputs []*input
	dec    *Decoder
	// errs are the inputs' errors, returned once every input is exhausted so
	// that no packet that could be read is lost to another file's error.
	errs   []error
	err    error // the final error, returned again by later calls
	closed bool

	mu        sync.Mutex // guards the two below: the context watch runs apart
	watched   context.Context
	stopWatch func() bool
	// seen is the context of the last Next call, read and written by Next's
	// goroutine alone: the lock above, taken for every packet, cost the
	// replay's reader 1% of its time.
	seen context.Context
}

// input is one capture file being read.
type input struct {
	name   string
	closer io.Closer // nil for standard input, which the caller owns
	// raw is the reader under any decompression; for interrupting reads.
	raw io.Reader
	// counter and buf are the decompressed stream; counter.n minus what buf
	// holds is the offset of the next byte the capture reader takes.
	counter    *countingReader
	buf        *bufio.Reader
	compressed bool

	pcap     *pcapgo.Reader
	ng       *pcapgo.NgReader
	linkType layers.LinkType // pcap's; pcapng's is per interface

	packets      uint64 // records read
	recordOffset int64  // where the record being read starts
	sawSupported bool   // pcapng: an interface we can decode has been seen

	// The pending record, read but not yet handed on; the merge compares its
	// timestamp with the other inputs'. It is valid until this input reads again.
	pending  bool
	data     []byte
	ci       gopacket.CaptureInfo
	pendLink layers.LinkType
	done     bool
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (in *input) offset() int64 { return in.counter.n - int64(in.buf.Buffered()) }

// where describes a byte offset for a user, saying when it is past gunzip.
func (in *input) where(off int64) string {
	if in.compressed {
		return fmt.Sprintf("byte %d of the decompressed data", off)
	}
	return fmt.Sprintf("byte %d", off)
}

var (
	magicGzip   = []byte{0x1f, 0x8b}
	magicPcapng = []byte{0x0a, 0x0d, 0x0d, 0x0a}
)

// isPcapMagic reports whether b starts with one of the four pcap magics:
// micro- or nanosecond timestamps, written on a little- or big-endian host.
func isPcapMagic(b []byte) bool {
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		return true
	}
	return false
}

// openInput detects the format of r by its first bytes and reads its header.
func openInput(name string, r io.Reader, closer io.Closer) (*input, error) {
	in := &input{name: name, closer: closer, raw: r}
	in.counter = &countingReader{r: r}
	in.buf = bufio.NewReaderSize(in.counter, readBufferSize)
	for {
		head, err := in.buf.Peek(4)
		if len(head) == 0 && errors.Is(err, io.EOF) {
			if in.compressed {
				return nil, fmt.Errorf("%s: %w: it is gzip-compressed but holds nothing", name, ErrTruncated)
			}
			return nil, fmt.Errorf("%s is empty (0 bytes): %w; record one with tcpdump -w", name, ErrNotCapture)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%s: %w: the gzip stream ends before the capture's file header", name, ErrTruncated)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, in.readError(err, "reading the file header")
		}
		switch {
		case len(head) >= 2 && head[0] == magicGzip[0] && head[1] == magicGzip[1]:
			zr, err := gzip.NewReader(in.buf)
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("%s: %w: it ends inside the gzip header", name, ErrTruncated)
				}
				return nil, fmt.Errorf("%s: gzip data is damaged (%v): %w", name, err, ErrNotCapture)
			}
			in.compressed = true
			in.counter = &countingReader{r: zr}
			in.buf = bufio.NewReaderSize(in.counter, readBufferSize)
			continue
		case len(head) == 4 && isPcapMagic(head):
			return in, in.openPcap()
		case len(head) == 4 && string(head) == string(magicPcapng):
			return in, in.openPcapng()
		}
		return nil, fmt.Errorf("%s is %w (first bytes %s); record one with tcpdump -w", name, ErrNotCapture, describeBytes(in.buf))
	}
}

// describeBytes shows up to the first 8 bytes in hex, and as text when they
// are printable, which says what a wrongly given file is (HTML, JSON, ...).
func describeBytes(buf *bufio.Reader) string {
	head, _ := buf.Peek(8)
	hex := make([]string, len(head))
	printable := true
	for i, b := range head {
		hex[i] = fmt.Sprintf("%02x", b)
		if b < 0x20 || b > 0x7e {
			printable = false
		}
	}
	s := strings.Join(hex, " ")
	if printable {
		s += fmt.Sprintf(" %q", head)
	}
	return s
}

func (in *input) openPcap() error {
	r, err := pcapgo.NewReader(in.buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w: it ends inside the 24-byte pcap file header, at %s", in.name, ErrTruncated, in.where(in.offset()))
		}
		return fmt.Errorf("%s has a pcap magic number but is %w: %v", in.name, ErrNotCapture, err)
	}
	if !LinkTypeSupported(r.LinkType()) {
		return fmt.Errorf("%s: %w %d (%v); otas-sniff reads %s", in.name, ErrUnsupportedLinkType, r.LinkType(), r.LinkType(), supportedLinkTypesText())
	}
	in.pcap, in.linkType = r, r.LinkType()
	return nil
}

func (in *input) openPcapng() error {
	// Mixed link types: each packet's interface says how to decode it.
	r, err := pcapgo.NewNgReader(in.buf, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w: it ends inside the pcapng section header, at %s", in.name, ErrTruncated, in.where(in.offset()))
		}
		return fmt.Errorf("%s has a pcapng magic number but is %w: %v", in.name, ErrNotCapture, err)
	}
	in.ng = r
	return nil
}

// readError wraps an error from reading the input with what the user needs.
func (in *input) readError(err error, doing string) error {
	return fmt.Errorf("%s: %s: %w", in.name, doing, err)
}

// read reads the next record into the pending slot. It returns io.EOF at a
// clean end, and other errors wrapped with the file, packet and offset.
func (in *input) read() error {
	in.recordOffset = in.offset()
	var err error
	if in.pcap != nil {
		in.data, in.ci, err = in.pcap.ZeroCopyReadPacketData()
		in.pendLink = in.linkType
	} else {
		in.data, in.ci, err = in.ng.ZeroCopyReadPacketData()
		if err == nil {
			in.pendLink = in.ci.AncillaryData[0].(layers.LinkType)
		}
	}
	if err != nil {
		return in.recordError(err)
	}
	in.packets++
	if in.ng != nil && !in.sawSupported {
		if err := in.checkInterfaces(); err != nil {
			return err
		}
	}
	in.pending = true
	return nil
}

// checkInterfaces fails a pcapng whose interfaces, as far as read when its
// first packet comes, are all of link types we cannot decode. Packets on an
// unsupported interface next to a supported one are only counted.
func (in *input) checkInterfaces() error {
	var types []string
	for i := 0; i < in.ng.NInterfaces(); i++ {
		intf, err := in.ng.Interface(i)
		if err != nil {
			continue
		}
		if LinkTypeSupported(intf.LinkType) {
			in.sawSupported = true
			return nil
		}
		types = append(types, fmt.Sprintf("%d (%v)", intf.LinkType, intf.LinkType))
	}
	return fmt.Errorf("%s: %w: its interfaces have link type %s; otas-sniff reads %s", in.name, ErrUnsupportedLinkType, strings.Join(types, ", "), supportedLinkTypesText())
}

// recordError turns a reader error into io.EOF or an error naming the file,
// the packet and the byte offset.
func (in *input) recordError(err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: %w: packet %d is cut off at %s, where the data ends (its record starts at %s; the %d packets before it were read)",
			in.name, ErrTruncated, in.packets+1, in.where(in.offset()), in.where(in.recordOffset), in.packets)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %w: packet %d, record at %s: %v", in.name, ErrCorrupt, in.packets+1, in.where(in.recordOffset), err)
}

// Next returns the next TCP segment of all inputs by timestamp. When an input
// fails, the others are read to their end first; then Next returns the error
// (or the errors joined), and keeps returning it. It returns io.EOF when every
// input ended cleanly.
func (s *fileSource) Next(ctx context.Context) (*Segment, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.closed {
		return nil, errors.New("capture source is closed")
	}
	s.watch(ctx)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		in, err := s.earliest(ctx)
		if err != nil {
			return nil, err
		}
		if in == nil {
			s.err = io.EOF
			if len(s.errs) > 0 {
				s.err = errors.Join(s.errs...)
			}
			return nil, s.err
		}
		in.pending = false
		if seg, ok := s.dec.Decode(in.data, in.ci, in.pendLink); ok {
			seg.Source = in.name
			return seg, nil
		}
	}
}

// earliest fills every input's pending record and returns the input whose
// record is the oldest (the first given on a tie), or nil when all are done.
func (s *fileSource) earliest(ctx context.Context) (*input, error) {
	var best *input
	for _, in := range s.inputs {
		if in.done {
			continue
		}
		if !in.pending {
			if err := in.read(); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				in.done = true
				if err != io.EOF {
					s.errs = append(s.errs, err)
				}
				continue
			}
		}
		if best == nil || in.ci.Timestamp.Before(best.ci.Timestamp) {
			best = in
		}
	}
	return best, nil
}

// watch arranges for a cancelled ctx to interrupt a read blocked on a pipe.
func (s *fileSource) watch(ctx context.Context) {
	if ctx == s.seen || ctx.Done() == nil {
		return
	}
	s.seen = ctx
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watched == ctx {
		return
	}
	if s.stopWatch != nil {
		s.stopWatch()
	}
	s.watched = ctx
	s.stopWatch = context.AfterFunc(ctx, s.interrupt)
}

// interrupt makes blocked reads return, without closing readers we don't own.
func (s *fileSource) interrupt() {
	for _, in := range s.inputs {
		if d, ok := in.raw.(interface{ SetReadDeadline(time.Time) error }); ok {
			_ = d.SetReadDeadline(time.Now())
		}
	}
}

// Stats reports what has been read and decoded so far; safe to call while
// another goroutine calls Next.
func (s *fileSource) Stats() Stats { return s.dec.Stats() }

// Close closes the files OpenFiles opened; standard input is left open.
func (s *fileSource) Close() error {
	s.mu.Lock()
	if s.stopWatch != nil {
		s.stopWatch()
		s.stopWatch = nil
	}
	s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, in := range s.inputs {
		if in.closer == nil {
			// Standard input stays open; lift a deadline a cancellation set.
			if d, ok := in.raw.(interface{ SetReadDeadline(time.Time) error }); ok && s.watched != nil && s.watched.Err() != nil {
				_ = d.SetReadDeadline(time.Time{})
			}
			continue
		}
		if err := in.closer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", in.name, err))
		}
	}
	return errors.Join(errs...)
}
