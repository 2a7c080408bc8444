package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The Go runtime's soft memory limit makes the collector work harder as the
// heap nears it, so peak RSS tracks the live heap instead of twice it (the
// default GOGC headroom). In a container the limit is derived from the
// cgroup's, leaving room for what is not Go heap (stacks, the capture ring's
// pages the kernel filled, libpcap).

// memoryLimitShare is the part of a cgroup memory limit given to the Go heap.
const memoryLimitShare = 0.8

// memoryLimit resolves the --memory-limit flag: "auto" (the default) is 80% of
// the cgroup's memory limit when there is one, else none, and never overrides
// a GOMEMLIMIT the environment sets; "off" is none; otherwise a size like
// 256MiB, 1GiB or 300MB. It returns the limit in bytes, 0 for none.
func memoryLimit(flag, gomemlimit string, cgroupLimit func() int64) (int64, error) {
	switch v := strings.TrimSpace(flag); v {
	case "", "auto":
		if gomemlimit != "" {
			return 0, nil
		}
		if l := cgroupLimit(); l > 0 {
			return int64(float64(l) * memoryLimitShare), nil
		}
		return 0, nil
	case "off", "0":
		return 0, nil
	default:
		n, err := parseSize(v)
		if err != nil || n < 16<<20 {
			return 0, usageErrorf("--memory-limit must be auto, off, or a size of at least 16MiB like 256MiB or 1GiB, not %q", v)
		}
		return n, nil
	}
}

// applyMemoryLimit sets the runtime's soft memory limit from the flag.
func applyMemoryLimit(flag string) error {
	n, err := memoryLimit(flag, os.Getenv("GOMEMLIMIT"), cgroupMemoryLimit)
	if err != nil || n == 0 {
		return err
	}
	debug.SetMemoryLimit(n)
	return nil
}

// parseSize reads a byte count with an optional unit: B, KB, MB, GB (powers
// of 1000) or KiB, MiB, GiB (powers of 1024).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return int64(f * mult), nil
}

// cgroupMemoryLimit returns this process's cgroup memory limit in bytes (v2
// memory.max, or v1 memory.limit_in_bytes), or 0 when there is none.
func cgroupMemoryLimit() int64 {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(v, 10, 64)
		// v2 says "max"; v1 says a number near 2^63 for no limit.
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0
		}
		return n
	}
	return 0
}
