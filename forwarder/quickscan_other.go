//go:build !amd64

package forwarder

// haveAVX2 is false: the AVX2 kernels are written for amd64 only.
const haveAVX2 = false

// quickScanAVX2 is never called here: newQuickTables returns nil.
func quickScanAVX2(body []byte, i int, t *quickTables, carry uint32) (at int, colons, bes uint32, hit bool, cards uint32) {
	panic("forwarder: no AVX2 kernel on this architecture")
}
