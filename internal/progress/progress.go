// Package progress draws a progress bar for replay on a terminal: bytes read of
// the input's size, exchanges found per second, and the time left. It stays
// silent when its output is not a terminal or the user asked for quiet.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// describeEvery limits how often the exchange rate in the description is
// recomputed; the bar itself redraws at most as often as its throttle.
const describeEvery = 200 * time.Millisecond

// Enabled reports whether a bar belongs on f: f is a terminal and quiet is off.
// Redirected to a file or a pipe, a bar's carriage returns would be noise.
func Enabled(f *os.File, quiet bool) bool {
	return !quiet && f != nil && term.IsTerminal(int(f.Fd()))
}

// Bar is a replay progress bar. A disabled Bar writes nothing and passes reads
// through; every method is safe on it and for concurrent use.
type Bar struct {
	bar          *progressbar.ProgressBar // nil when disabled
	start        time.Time
	exchanges    atomic.Int64
	lastDescribe atomic.Int64 // UnixNano of the last description update
}

// New returns a bar drawn on w for total bytes (total ≤ 0: unknown, e.g. a
// pipe, drawn as a spinner with no ETA). When enabled is false nothing is ever
// written; callers decide with Enabled, tests force it.
func New(w io.Writer, total int64, enabled bool) *Bar {
	b := &Bar{start: time.Now()}
	if !enabled {
		return b
	}
	max := int64(-1)
	if total > 0 {
		// One more than the input's size: reading the last byte is not the end
		// (reassembly still flushes), so only Finish completes the bar.
		max = total + 1
	}
	b.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(describe(0, 0)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
	return b
}

func describe(exchanges int64, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(exchanges) / s
	}
	return fmt.Sprintf("%d exchanges (%.0f/s)", exchanges, rate)
}

// Reader counts the bytes read through r on the bar.
func (b *Bar) Reader(r io.Reader) io.Reader {
	if b.bar == nil {
		return r
	}
	return &countingReader{r: r, bar: b}
}

type countingReader struct {
	r   io.Reader
	bar *Bar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.bar.Add(int64(n))
	}
	return n, err
}

// Add moves the bar n bytes on, for input not read through Reader.
func (b *Bar) Add(n int64) {
	if b.bar == nil {
		return
	}
	_ = b.bar.Add64(n) // drawing errors must not stop a replay
}

// AddExchange counts one exchange for the rate shown.
func (b *Bar) AddExchange() {
	n := b.exchanges.Add(1)
	if b.bar == nil {
		return
	}
	now := time.Now()
	last := b.lastDescribe.Load()
	if now.UnixNano()-last < int64(describeEvery) || !b.lastDescribe.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	b.bar.Describe(describe(n, now.Sub(b.start)))
}

// Exchanges is how many exchanges were counted.
func (b *Bar) Exchanges() int64 { return b.exchanges.Load() }

// Finish draws the final state (the full bar, the exchange count and rate) and
// ends the line.
func (b *Bar) Finish() error {
	if b.bar == nil {
		return nil
	}
	b.bar.Describe(describe(b.exchanges.Load(), time.Since(b.start)))
	if err := b.bar.Finish(); err != nil {
		return fmt.Errorf("progress bar: %w", err)
	}
	return nil
}
