package forwarder

import (
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// guarded returns n bytes that end where a page that may not be touched starts.
func guarded(t *testing.T, n int) []byte {
	page := os.Getpagesize()
	size := (n+page-1)/page*page + page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	require.NoError(t, syscall.Mprotect(mem[size-page:], syscall.PROT_NONE))
	return mem[size-page-n : size-page : size-page]
}

// escapeAVX2 reads nothing after src and writes nothing after len(dst) (a
// fault would stop the test), writes what encoding/json does for what it
// took, and only stops where it must: near src's end, at a byte of 0x80 or
// more, or short of room.
func TestEscapeAVX2Bounds(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2 (or purego): escapeAVX2 not tested")
	}
	pieces := []string{"a", "b", "/", `"`, `\`, "\n", "\t", "\x00", "\x1f", "<", "&", "\x7f", "é"}
	srcMem, dstMem := guarded(t, 512), guarded(t, 1024)
	rng := rand.New(rand.NewPCG(5, 6))
	for n := range 300 {
		for rep := range 8 {
			// Mostly bytes written as they are, any, only two-byte escapes and
			// bytes written as they are (spread by VPSHUFB), or only escapes
			// (one by one, loading up to the last byte).
			var sb strings.Builder
			for sb.Len() < n {
				var p string
				switch rep % 4 {
				case 0:
					p = pieces[rng.IntN(3)]
					if rng.IntN(3) == 0 {
						p = pieces[rng.IntN(len(pieces))]
					}
				case 1:
					p = pieces[rng.IntN(len(pieces))]
				case 2:
					p = pieces[rng.IntN(7)]
				case 3:
					p = pieces[3+rng.IntN(6)]
				}
				sb.WriteString(p)
			}
			src := srcMem[len(srcMem)-n:]
			copy(src, sb.String()[:n])
			s := unsafe.String(unsafe.SliceData(src), n)
			for _, room := range []int{0, 1, 31, 32, 39, 40, 41, 50, 63, 64, 65, 70, 80, 100, 130, 200, 1024} {
				dst := dstMem[len(dstMem)-room:]
				for k := range dst {
					dst[k] = '#'
				}
				i0, j0 := min(rep, n), min(rep, room)
				for _, k := range [][2]bool{{false, false}, {true, false}, {false, hasWideEscape}, {true, hasWideEscape}} {
					html, wide := k[0], k[1]
					ni, nj := escapeAVX2(dst, j0, s, i0, html, wide)
					require.True(t, i0 <= ni && ni <= n && j0 <= nj && nj <= room, "%q room %d: %d, %d", s, room, ni, nj)
					require.Equal(t, strings.Repeat("#", j0), string(dst[:j0]))
					want := encodingJSON(t, s[i0:ni], html)
					require.Equal(t, want[1:len(want)-1], string(dst[j0:nj]), "%q room %d html %v", s, room, html)
					require.True(t, n-ni < escAVX2Min || s[ni] >= 0x80 || room-nj < 64, "%q room %d html %v: stopped at %d, %d", s, room, html, ni, nj)
				}
			}
		}
	}
}

// quickScanAVX2 and quickScanAVX512 read nothing after the body (a fault
// would stop the test): bodies of every length up to three blocks and more
// end against a page that may not be touched, with what the quick check
// looks for near their end.
func TestQuickScanAVX2Bounds(t *testing.T) {
	r := NewRedactor(RedactorOptions{Params: []string{"q"}})
	if r.quick == nil {
		t.Skip("no AVX2 (or purego): quickScanAVX2 not tested")
	}
	mem := guarded(t, 256)
	rng := rand.New(rand.NewPCG(7, 8))
	ends := []string{"", `"q":`, `"password" :`, "\\", "eyJ", "bearer x", "4111111111111", "\xc4\xb0", "\xe2", `","id":7}`}
	for n := range 200 {
		for _, end := range ends {
			if len(end) > n {
				continue
			}
			body := mem[len(mem)-n:]
			for k := range body[:n-len(end)] {
				body[k] = `{"a":1,x "`[rng.IntN(10)]
			}
			copy(body[n-len(end):], end)
			want := mayChangeJSONRef(r, body)
			require.Equal(t, want, r.mayChangeJSONVectorWith(body, false), "AVX2 %q", body)
			if r.wide {
				require.Equal(t, want, r.mayChangeJSONVectorWith(body, true), "AVX-512 %q", body)
			}
		}
	}
}
