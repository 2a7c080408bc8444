package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The smallest heap goals the collector is given. A replay's live heap with
// one worker is 5–15 MB, so with GOGC=100 it collected ~40 times a second,
// each time also scanning the binary's 5 MB of globals: ~10% of its CPU. A
// 32 MB goal made it 12–14% faster for ~45 MB more peak RSS, and 64 MB another
// 13% (CPU seconds, alternated runs) for ~50 MB more: a replay is a batch job,
// and with every core (the default) its live heap is above 64 MB anyway, so
// replay takes 64 MB. A live capture runs for weeks on every node, where the
// footprint counts: 32 MB. A larger live heap (many connections) keeps the
// usual GOGC=100, and a memory limit still caps it all.
const (
	liveHeapFloor   = 32 << 20
	replayHeapFloor = 64 << 20
)

// gcPercentFor is the GOGC that puts the heap goal at floor bytes, given the
// live heap and the roots the collector also counts (globals and stacks): the
// runtime's goal is live + (live+roots)·GOGC/100. Never below the default 100,
// nor above 2000.
func gcPercentFor(live, roots, floor uint64) int {
	if live >= floor/2 || live+roots == 0 {
		return 100
	}
	return int(min(max((floor-live)*100/(live+roots), 100), 2000))
}

// gcTick is allocated after each collection and dies at the next one, whose
// end its cleanup reports. It holds a pointer so that it is not a tiny object,
// which may never be collected on its own.
type gcTick struct{ _ *byte }

// startHeapFloor sets GOGC after every collection so that the heap goal stays
// at least floor bytes, unless the environment sets GOGC (the user's choice
// wins). stop restores the GOGC there was.
func startHeapFloor(floor uint64) (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/globals:bytes"}, {Name: "/gc/scan/stack:bytes"}}
	// mu orders the cleanups' settings and stop's restoring.
	var mu sync.Mutex
	stopped := false
	prev := debug.SetGCPercent(100)
	current := 100
	var arm func()
	arm = func() {
		runtime.AddCleanup(new(gcTick), func(struct{}) {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return
			}
			metrics.Read(samples)
			if p := gcPercentFor(samples[0].Value.Uint64(), samples[1].Value.Uint64()+samples[2].Value.Uint64(), floor); p != current {
				current = p
				debug.SetGCPercent(p)
			}
			arm()
		}, struct{}{})
	}
	arm()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		debug.SetGCPercent(prev)
	}
}
