#!/usr/bin/env bash
# make bench: every figure of the performance issue in one table.
#
#   1. offline, one core: replay vs a bare read-and-decode loop, and vs tshark
#   2. offline, all cores: --workers = cores vs one worker
#   4. memory: peak RSS with 100,000 connections each waiting for a response
#   5. allocations per packet on the replay path
#   6. replay into the otas sink against the in-process server
#   3. live packet rates through a veth, both engines (bench/live-pps.sh): as
#      root only (network namespaces); otherwise the table says so
#
# Needs bin/otas-sniff (make build); installs tshark (and, as root, tcpreplay)
# from Debian when missing.
# BENCH_EXCHANGES sets the size of the generated capture (default 160000
# exchanges, about 1M packets).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench/out}
n=${BENCH_EXCHANGES:-160000}
mkdir -p "$out"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
command -v tshark >/dev/null || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tshark >/dev/null; }
[ -x bin/otas-sniff ] || make build >/dev/null
go build -o "$out/gencap" ./bench/gencap
go build -o "$out/maxrss" ./bench/maxrss
cap="$out/api-$n.pcap"
[ -s "$cap" ] || "$out/gencap" -exchanges "$n" -o "$cap"
pending="$out/pending-100000.pcap"
[ -s "$pending" ] || "$out/gencap" -pending 100000 -o "$pending"

declare -A fig
# 1, 2, 5: BenchmarkReplay measures the bare loop, one worker on one
# core and all workers on all cores on the same file, five rounds in turn,
# each figure from its fastest round, and the medians of the rounds' ratios.
BENCH_EXCHANGES=$n go test ./cmd/otas-sniff -run '^$' -bench '^BenchmarkReplay$' -benchtime 5x | tee "$out/replay.txt"
# go test separates a benchmark's metrics with tabs.
metric() { grep -oE "[0-9.e+]+ $1([[:space:]]|$)" "$out/replay.txt" | head -1 | cut -d' ' -f1; }
fig[bare]=$(metric bare-packets/s)
fig[one]=$(metric packets/s)
fig[ratio]=$(metric ratio-to-bare)
fig[all]=$(metric allcore-packets/s)
fig[speedup]=$(metric allcore-speedup)
fig[allratio]=$(metric allcore-ratio-to-bare)
fig[ratio_med]=$(metric ratio-to-bare-median)
fig[allratio_med]=$(metric allcore-ratio-to-bare-median)
fig[allocs]=$(metric allocs/packet)

# 1: tshark on the same file (its rate, packets/s, from its own wall time).
packets=$(bin/otas-sniff replay -q --workers 1 "$cap" -o jsonl:/dev/null 2>&1 | grep -oE '^otas-sniff: [0-9]+ packets' | grep -oE '[0-9]+')
start=$(date +%s.%N)
tshark -r "$cap" -Y http -T fields -e http.request.method >/dev/null 2>&1
tshark_s=$(echo "$(date +%s.%N) - $start" | bc)
fig[tshark]=$(echo "$packets / $tshark_s" | bc)

# 4: peak RSS with 100,000 connections each holding a request; and the same
# capture under --max-streams 50000, which evicts (and counts) the idlest.
rss() { "$out/maxrss" -- bin/otas-sniff replay -q "$@" -o jsonl:/dev/null 2>&1 | grep -oE 'peak_rss_mb=[0-9.]+' | cut -d= -f2; }
fig[rss]=$(rss "$pending")
fig[rss_evict]=$(rss --max-streams 50000 "$pending")
fig[rss_limit]=$(rss --memory-limit 230MiB "$pending")

# 6: replay into the otas sink against the in-process server.
go test ./cmd/otas-sniff -run '^$' -bench '^BenchmarkReplayOTAS$' -benchtime 1x | tee "$out/otas.txt"
otas_metric() { grep -oE "[0-9.e+-]+ $1([[:space:]]|$)" "$out/otas.txt" | head -1 | cut -d' ' -f1; }
fig[otas]=$(otas_metric otas-vs-discard)
fig[otas_wait]=$(otas_metric otas-queue-wait-share)
fig[otas_drain]=$(otas_metric otas-drain-share)

# 3: live, as root.
live="needs root: run sudo make bench"
if [ "$(id -u)" = 0 ]; then
	RATES=${RATES:-"50000 100000 200000"} bench/live-pps.sh | tee "$out/live.txt"
	live="see the table below"
fi

printf '\n| figure | measured | goal |\n| --- | --- | --- |\n'
printf '| cores | %s | |\n' "$(nproc)"
printf '| bare read+decode loop, packets/s (1 core) | %.0f | |\n' "${fig[bare]}"
printf '| replay, one worker, packets/s (1 core) | %.0f | |\n' "${fig[one]}"
printf '| replay / bare loop (1 core) | %.3f | >= 0.25 (#2), >= 0.50 (#7) |\n' "${fig[ratio]}"
printf '| same, median of the rounds (each against its own bare loop) | %.3f | |\n' "${fig[ratio_med]}"
printf '| tshark -Y http, packets/s | %s | |\n' "${fig[tshark]}"
printf '| replay / tshark | %.1fx | >= 30x |\n' "$(echo "${fig[one]} / ${fig[tshark]}" | bc -l)"
printf '| replay, all cores, packets/s | %.0f | |\n' "${fig[all]}"
printf '| all cores / one core | %.2fx | >= 1.6x |\n' "${fig[speedup]}"
printf '| replay, all cores / bare loop (1 core) | %.3f | >= 0.25 (#2) |\n' "${fig[allratio]}"
printf '| same, median of the rounds | %.3f | |\n' "${fig[allratio_med]}"
printf '| allocations per packet | %.2f | <= 1 |\n' "${fig[allocs]}"
printf '| peak RSS, 100k waiting connections, MB | %s | <= 256 |\n' "${fig[rss]}"
printf '| same, --memory-limit 230MiB, MB | %s | <= 256 |\n' "${fig[rss_limit]}"
printf '| same, --max-streams 50000, MB | %s | |\n' "${fig[rss_evict]}"
printf '| replay into otas (in-process server) / into a discarding sink | %s | ~1 |\n' "${fig[otas]}"
printf '| share of the otas replay waiting for room in the upload queue | %s | ~0 |\n' "${fig[otas_wait]}"
printf '| share of the otas replay draining the queue at the end | %s | |\n' "${fig[otas_drain]}"
printf '| live: exchanges emitted / in file at 50k-200k packets/s | %s | lossless at 200k |\n' "$live"
if [ -s "$out/live.txt" ] && [ "$(id -u)" = 0 ]; then
	printf '\n'
	cat "$out/live.txt"
fi
