package main

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name              string
		live, roots, want uint64
	}{
		{"small heap, globals", 5 * mib, 5 * mib, 270},
		{"half the floor and more: the default", 16 * mib, 5 * mib, 100},
		{"100,000 connections", 170 * mib, 5 * mib, 100},
		{"nothing measured yet", 0, 0, 100},
		{"a tiny heap: capped", 100 << 10, 100 << 10, 2000},
		{"large roots: never below 100", 15 * mib, 30 * mib, 100},
	} {
		assert.EqualValues(t, tc.want, gcPercentFor(tc.live, tc.roots, liveHeapFloor), tc.name)
	}
	// A replay's floor: twice the goal for the same small heap.
	assert.EqualValues(t, 590, gcPercentFor(5*mib, 5*mib, replayHeapFloor))
	assert.EqualValues(t, 100, gcPercentFor(40*mib, 5*mib, replayHeapFloor), "a replay with every core: above half the floor")
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// After a collection, a small heap gets a GOGC that puts its goal at the
// floor; stopping restores the GOGC there was; a GOGC from the environment is
// left alone.
func TestHeapFloor(t *testing.T) {
	stop := startHeapFloor(liveHeapFloor)
	deadline := time.Now().Add(5 * time.Second)
	for gogc() == 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	assert.Greater(t, gogc(), uint64(100), "GOGC raised for a small heap")
	stop()
	assert.EqualValues(t, 100, gogc(), "GOGC restored")

	t.Setenv("GOGC", "150")
	stop = startHeapFloor(liveHeapFloor)
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	assert.EqualValues(t, 100, gogc(), "the environment's GOGC is the user's (the runtime read it at start)")
	stop()
}
