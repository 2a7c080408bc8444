#!/usr/bin/env bash
# Peak memory of a replay against the size of the capture: a small and a large
# (about 1 GB) generated capture, replayed into a JSONL file. Peak RSS should not
# grow with the file. Prints one line per size and the ratio large/small.
#
#   bench/memory.sh            # needs bin/otas-sniff (make build)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench/out}
mkdir -p "$out"
[ -x bin/otas-sniff ] || make build >/dev/null
go build -o "$out/maxrss" ./bench/maxrss
go build -o "$out/gencap" ./bench/gencap
small=${SMALL_EXCHANGES:-25000}
large=${LARGE_EXCHANGES:-250000}
declare -A rss
for n in "$small" "$large"; do
	f="$out/api-$n.pcap"
	[ -s "$f" ] || "$out/gencap" -exchanges "$n" -o "$f"
	size_mb=$(( $(stat -c %s "$f") / 1000000 ))
	line=$("$out/maxrss" -- bin/otas-sniff replay "$f" -o "jsonl:/dev/null" 2>&1 | grep '^maxrss:')
	rss[$n]=$(sed -E 's/.*peak_rss_mb=([0-9.]+).*/\1/' <<<"$line")
	echo "capture ${size_mb} MB ($n exchanges): $line"
done
awk -v a="${rss[$small]}" -v b="${rss[$large]}" 'BEGIN { printf "peak RSS large/small: %.2f (%.1f MB vs %.1f MB); cores: '"$(nproc)"'\n", b/a, b, a }'
