package pcapgen

import (
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket/pcapgo"
)

// Stream writes the packets built so far to out as a little-endian pcap and
// forgets them, so a capture far larger than memory can be generated in
// pieces: the file header goes out with the first call only.
func (w *Writer) Stream(out io.Writer) error {
	if w.err != nil {
		return w.err
	}
	if w.opts.Format == PCAPNG || w.opts.BigEndian || len(w.ifaces) > 1 {
		return errors.New("pcapgen: Stream writes single-interface little-endian pcap only")
	}
	if w.stream == nil || w.streamOut != out {
		if w.opts.Format == PCAPNano {
			w.stream = pcapgo.NewWriterNanos(out)
		} else {
			w.stream = pcapgo.NewWriter(out)
		}
		w.streamOut = out
		if err := w.stream.WriteFileHeader(w.snaplen(), w.ifaces[0].linkType); err != nil {
			return fmt.Errorf("pcapgen: write file header: %w", err)
		}
	}
	for _, r := range w.records {
		if err := w.stream.WritePacket(r.ci, r.data); err != nil {
			return fmt.Errorf("pcapgen: write packet: %w", err)
		}
	}
	clear(w.records)
	w.records = w.records[:0]
	return nil
}
