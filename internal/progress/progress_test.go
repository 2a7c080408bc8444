package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnabled(t *testing.T) {
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	defer tty.Close()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	defer pw.Close()
	file, err := os.Create(t.TempDir() + "/out")
	require.NoError(t, err)
	defer file.Close()

	tests := []struct {
		name  string
		f     *os.File
		quiet bool
		want  bool
	}{
		{"terminal", tty, false, true},
		{"terminal but quiet", tty, true, false},
		{"pipe", pw, false, false},
		{"file", file, false, false},
		{"nil", nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Enabled(tt.f, tt.quiet))
		})
	}
}

// readAll collects what the bar drew on the terminal side of a pty.
func readAll(t *testing.T, ptmx *os.File) func() string {
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
}

func TestBarOnPseudoTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	output := readAll(t, ptmx)

	input := strings.Repeat("x", 200_000)
	bar := New(tty, int64(len(input)), Enabled(tty, false))
	n, err := io.Copy(io.Discard, bar.Reader(strings.NewReader(input)))
	require.NoError(t, err)
	assert.Equal(t, int64(len(input)), n)
	for range 42 {
		bar.AddExchange()
	}
	require.NoError(t, bar.Finish())
	require.NoError(t, tty.Close())

	require.Eventually(t, func() bool { return strings.Contains(output(), "100%") }, 5*time.Second, 10*time.Millisecond)
	got := output()
	assert.Contains(t, got, "42 exchanges (")
	assert.Contains(t, got, "/s)")
	assert.Contains(t, got, "200 kB")
	assert.Equal(t, int64(42), bar.Exchanges())
}

func TestBarForcedOnBuffer(t *testing.T) {
	tests := []struct {
		name  string
		total int64
		want  []string
	}{
		{"known size shows percent and size", 50_000, []string{"100%", "50 kB", "7 exchanges"}},
		{"unknown size spins", 0, []string{"50 kB", "7 exchanges"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			bar := New(&buf, tt.total, true)
			_, err := io.Copy(io.Discard, bar.Reader(bytes.NewReader(make([]byte, 50_000))))
			require.NoError(t, err)
			for range 7 {
				bar.AddExchange()
			}
			require.NoError(t, bar.Finish())
			for _, w := range tt.want {
				assert.Contains(t, buf.String(), w)
			}
			assert.True(t, strings.HasSuffix(buf.String(), "\n"), "the line is ended when done")
		})
	}
}

func TestBarDisabledWritesNothing(t *testing.T) {
	var buf bytes.Buffer
	bar := New(&buf, 1000, false)
	r := strings.NewReader("some capture bytes")
	wrapped := bar.Reader(r)
	assert.Same(t, r, wrapped, "a disabled bar does not wrap the reader")
	data, err := io.ReadAll(wrapped)
	require.NoError(t, err)
	assert.Equal(t, "some capture bytes", string(data))
	bar.Add(10)
	bar.AddExchange()
	require.NoError(t, bar.Finish())
	assert.Empty(t, buf.String())
	assert.Equal(t, int64(1), bar.Exchanges())
}

func TestBarConcurrentUse(t *testing.T) {
	var buf lockedBuffer
	bar := New(&buf, 8*1000, true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				bar.Add(1)
				bar.AddExchange()
			}
		})
	}
	wg.Wait()
	require.NoError(t, bar.Finish())
	assert.Equal(t, int64(8000), bar.Exchanges())
	assert.Contains(t, buf.String(), "8000 exchanges")
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
