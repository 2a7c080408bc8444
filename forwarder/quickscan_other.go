//go:build !amd64 || purego

package forwarder

// hasAVX512 is false: there is no quickScanAVX512 here.
const hasAVX512 = false

// quickScanAVX2 is never called here: newQuickTables returns nil.
func quickScanAVX2(body []byte, i int, t *quickTables, carry uint32) (at int, colons, bes uint32, hit bool, cards uint32) {
	panic("forwarder: no AVX2 kernel on this architecture")
}

// quickScanAVX512 is never called here: hasAVX512 is false.
func quickScanAVX512(body []byte, i int, t *quickTables, carry uint64) (at int, colons, bes uint64, hit bool, cards uint64) {
	panic("forwarder: no AVX-512 kernel on this architecture")
}
