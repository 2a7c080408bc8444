//go:build !amd64 || purego

package forwarder

// hasAVX2 is false: appendStringJSON and mayChangeJSON only have their pure
// Go steps here.
const hasAVX2 = false

// escapeAVX2 is never called without AVX2.
func escapeAVX2(dst []byte, j int, src string, i int, html, wide bool) (ni, nj int) {
	return i, j
}

// hasWideEscape is false: there is no escapeAVX2 here.
const hasWideEscape = false
