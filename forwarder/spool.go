package forwarder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The spool is a directory of append-only segment files, oldest first by name.
// Each record is
//
//	length uint32 | crc32c(payload) uint32 | payload
//	payload = attempts uint8 | token length uint16 | token | event JSON
//
// all little-endian. Records reach the file with one write(2) each batch, so a
// killed process leaves at most a torn last record, which reading skips (and
// counts). Segments are fsynced when they are closed. A segment is deleted only
// once every event read from it was uploaded, dropped for good or written again
// to a newer segment: delivery is at least once.

const spoolExt = ".spool"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errSpoolFull means the record did not fit under the cap even after the oldest
// segments were dropped.
var errSpoolFull = errors.New("spool full")

// spoolRecord is one event in the spool.
type spoolRecord struct {
	attempts uint8
	token    string
	data     []byte
}

type segment struct {
	seq     uint64
	path    string
	size    int64
	records int
	reading bool
	// scanned is set for segments found at start, whose damage was counted then.
	scanned bool
}

// spool is safe for concurrent use.
type spool struct {
	dir    string
	max    int64
	segMax int64
	// dropped is told how many records the cap threw away; corrupt how many torn
	// records were skipped.
	dropped func(n int)
	corrupt func(n int)

	mu     sync.Mutex
	segs   []*segment // oldest first; the last one is written to when cur != nil
	cur    *os.File
	total  int64
	events int64
	next   uint64
	lock   *os.File
	closed bool
}

// openSpool opens (creating) dir, takes its lock and indexes what an earlier
// process left.
func openSpool(dir string, maxBytes int64, dropped, corrupt func(int)) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	segMax := min(max(maxBytes/8, 64<<10), 4<<20)
	s := &spool{dir: dir, max: maxBytes, segMax: segMax, dropped: dropped, corrupt: corrupt, lock: lock, next: 1}
	names, err := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	if err != nil {
		unlockDir(lock)
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	for _, name := range names {
		seq, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(name), spoolExt), 10, 64)
		if err != nil {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		recs, bad, err := readSegment(name)
		if err != nil {
			unlockDir(lock)
			return nil, err
		}
		if bad > 0 && corrupt != nil {
			corrupt(bad)
		}
		if len(recs) == 0 {
			_ = os.Remove(name)
			continue
		}
		s.segs = append(s.segs, &segment{seq: seq, path: name, size: fi.Size(), records: len(recs), scanned: true})
		s.total += fi.Size()
		s.events += int64(len(recs))
		if seq >= s.next {
			s.next = seq + 1
		}
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].seq < s.segs[j].seq })
	return s, nil
}

func encodeRecord(dst []byte, r spoolRecord) []byte {
	tok := r.token
	if len(tok) > 0xffff {
		tok = ""
	}
	plen := 1 + 2 + len(tok) + len(r.data)
	var head [8]byte
	start := len(dst)
	dst = append(dst, head[:]...)
	dst = append(dst, r.attempts)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(tok)))
	dst = append(dst, tok...)
	dst = append(dst, r.data...)
	binary.LittleEndian.PutUint32(dst[start:], uint32(plen))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], crcTable))
	return dst
}

// readSegment decodes a segment, stopping at the first torn or corrupt record;
// bad counts the records given up (1 when the tail is torn).
func readSegment(path string) (recs []spoolRecord, bad int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: read %s: %w", path, err)
	}
	for len(b) > 0 {
		if len(b) < 8 {
			return recs, 1, nil
		}
		n := int(binary.LittleEndian.Uint32(b))
		sum := binary.LittleEndian.Uint32(b[4:])
		if n < 3 || n > len(b)-8 || crc32.Checksum(b[8:8+n], crcTable) != sum {
			return recs, 1, nil
		}
		p := b[8 : 8+n]
		tl := int(binary.LittleEndian.Uint16(p[1:]))
		if 3+tl > n {
			return recs, 1, nil
		}
		recs = append(recs, spoolRecord{attempts: p[0], token: string(p[3 : 3+tl]), data: append([]byte(nil), p[3+tl:]...)})
		b = b[8+n:]
	}
	return recs, 0, nil
}

// append writes recs to the current segment, rotating and enforcing the cap.
// It returns how many records were written; the rest did not fit.
func (s *spool) append(recs []spoolRecord) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("spool closed")
	}
	var buf []byte
	written := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := s.cur.Write(buf); err != nil {
			return fmt.Errorf("spool: write: %w", err)
		}
		buf = buf[:0]
		return nil
	}
	for _, r := range recs {
		rec := encodeRecord(nil, r)
		if !s.makeRoom(int64(len(rec))) {
			if err := flush(); err != nil {
				return written, err
			}
			return written, errSpoolFull
		}
		if s.cur == nil || s.segs[len(s.segs)-1].size >= s.segMax {
			if err := flush(); err != nil {
				return written, err
			}
			if err := s.rotate(); err != nil {
				return written, err
			}
		}
		buf = append(buf, rec...)
		seg := s.segs[len(s.segs)-1]
		seg.size += int64(len(rec))
		seg.records++
		s.total += int64(len(rec))
		s.events++
		written++
	}
	return written, flush()
}

// makeRoom drops the oldest segments not being read until n more bytes fit.
func (s *spool) makeRoom(n int64) bool {
	for s.total+n > s.max {
		victim := -1
		for i, seg := range s.segs {
			if seg.reading || (s.cur != nil && i == len(s.segs)-1) {
				continue
			}
			victim = i
			break
		}
		if victim < 0 {
			return false
		}
		seg := s.segs[victim]
		_ = os.Remove(seg.path)
		s.segs = append(s.segs[:victim], s.segs[victim+1:]...)
		s.total -= seg.size
		s.events -= int64(seg.records)
		if s.dropped != nil {
			s.dropped(seg.records)
		}
	}
	return true
}

// rotate closes the current segment (fsynced) and opens a new one. Called with mu.
func (s *spool) rotate() error {
	if err := s.closeCurrent(); err != nil {
		return err
	}
	seq := s.next
	s.next++
	path := filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, spoolExt))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	s.cur = f
	s.segs = append(s.segs, &segment{seq: seq, path: path})
	return nil
}

func (s *spool) closeCurrent() error {
	if s.cur == nil {
		return nil
	}
	f := s.cur
	s.cur = nil
	syncErr := f.Sync()
	closeErr := f.Close()
	if last := s.segs[len(s.segs)-1]; last.records == 0 {
		_ = os.Remove(last.path)
		s.segs = s.segs[:len(s.segs)-1]
	}
	if err := errors.Join(syncErr, closeErr); err != nil {
		return fmt.Errorf("spool: close segment: %w", err)
	}
	return nil
}

// take returns the oldest segment not being read, with its records, marking it
// read; the current segment is closed first when it is the only one. nil when the
// spool is empty.
func (s *spool) take() (*segment, []spoolRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, nil
	}
	for i, seg := range s.segs {
		if seg.reading {
			continue
		}
		if s.cur != nil && i == len(s.segs)-1 {
			if seg.records == 0 {
				return nil, nil, nil
			}
			if err := s.closeCurrent(); err != nil {
				return nil, nil, err
			}
		}
		recs, bad, err := readSegment(seg.path)
		if err != nil {
			return nil, nil, err
		}
		if bad > 0 && !seg.scanned && s.corrupt != nil {
			s.corrupt(bad)
		}
		seg.reading = true
		return seg, recs, nil
	}
	return nil, nil, nil
}

// done deletes a segment whose every event is accounted for.
func (s *spool) done(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.segs {
		if x == seg {
			_ = os.Remove(seg.path)
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			s.total -= seg.size
			s.events -= int64(seg.records)
			return
		}
	}
}

// backlog reports the events and bytes held.
func (s *spool) backlog() (events, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events, s.total
}

// close syncs and closes the current segment and releases the directory.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.closeCurrent()
	unlockDir(s.lock)
	return err
}
