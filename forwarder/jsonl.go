package forwarder

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
)

// JSONLSink writes one JSON object per line.
type JSONLSink struct {
	mu   sync.Mutex
	name string
	w    io.Writer
	// buf holds the lines not written yet, each encoded straight into it: a
	// bufio.Writer would copy every line once more.
	buf []byte
	// err is the first write error; every write after it fails with it.
	err    error
	closer io.Closer
	// flushEach makes each event visible at once (a terminal or a pipe to jq).
	flushEach bool
	// times keeps the date of the last second written for the next events.
	times timeFormat
}

// NewJSONLSink opens path for writing ("-" is standard output). Events reach a
// file in blocks; on standard output each event is flushed as it is written.
func NewJSONLSink(path string) (*JSONLSink, error) {
	if path == "-" {
		return newJSONLSink("stdout", os.Stdout, nil, true), nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open jsonl output: %w", err)
	}
	return newJSONLSink(path, f, f, false), nil
}

// NewJSONLWriter writes events to w, flushing each one; w is not closed.
func NewJSONLWriter(name string, w io.Writer) *JSONLSink {
	return newJSONLSink(name, w, nil, true)
}

func newJSONLSink(name string, w io.Writer, c io.Closer, flushEach bool) *JSONLSink {
	return &JSONLSink{name: name, w: w, closer: c, flushEach: flushEach}
}

// jsonlBlock is how many bytes of lines a file sink writes at once.
const jsonlBlock = 64 << 10

// Write encodes ev as one line.
func (s *JSONLSink) Write(_ context.Context, ev *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	b, err := ev.appendJSON(s.buf, false, &s.times)
	if err != nil {
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	s.buf = append(b, '\n')
	if s.flushEach || len(s.buf) >= jsonlBlock {
		return s.flush()
	}
	return nil
}

// flush writes the lines held.
func (s *JSONLSink) flush() error {
	if s.err == nil && len(s.buf) > 0 {
		if _, err := s.w.Write(s.buf); err != nil {
			s.err = fmt.Errorf("write %s: %w", s.name, err)
		}
		s.buf = s.buf[:0]
	}
	return s.err
}

// CopiesEvents marks JSONLSink an EventCopier: lines are encoded in Write.
func (s *JSONLSink) CopiesEvents() {}

// UsesEncodedBodies marks JSONLSink an EncodedBodiesSink: a line is the event's
// JSON encoding.
func (s *JSONLSink) UsesEncodedBodies() {}

// Close writes the lines held and closes the file, even when writing failed.
func (s *JSONLSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flush()
	if s.closer != nil {
		if cerr := s.closer.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", s.name, cerr)
		}
	}
	return err
}
