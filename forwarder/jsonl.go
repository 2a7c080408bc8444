package forwarder

import (
	"bufio"
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
	w    *bufio.Writer
	// buf is reused for each event's encoding.
	buf    []byte
	closer io.Closer
	// flushEach makes each event visible at once (a terminal or a pipe to jq).
	flushEach bool
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
	return &JSONLSink{name: name, w: bufio.NewWriterSize(w, 64<<10), closer: c, flushEach: flushEach}
}

// Write encodes ev as one line.
func (s *JSONLSink) Write(_ context.Context, ev *Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := ev.AppendJSON(s.buf[:0], false)
	if err != nil {
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	if err := s.w.WriteByte('\n'); err != nil {
		return fmt.Errorf("write %s: %w", s.name, err)
	}
	if s.flushEach {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("write %s: %w", s.name, err)
		}
	}
	return nil
}

// Close flushes and closes the file.
func (s *JSONLSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", s.name, err)
	}
	if s.closer != nil {
		if err := s.closer.Close(); err != nil {
			return fmt.Errorf("close %s: %w", s.name, err)
		}
	}
	return nil
}
