//go:build !linux

package capture

import "errors"

// openAFPacket: AF_PACKET exists only on Linux.
func openAFPacket(name string, opts LiveOptions) ([]ring, error) {
	return nil, errors.New("the afpacket engine needs Linux; use --engine libpcap")
}
