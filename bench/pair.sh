#!/usr/bin/env bash
# Paired A/B of two builds on a shared host: each round runs both at the same
# time, one per CPU (pinned, swapping CPUs every round), each replaying the
# same capture with one worker on one core, and prints the ratio of their
# CPU seconds (user+sys). Both runs of a round see the same host, so its
# drift (the same binary took 1.7-2.8 s over one session here) cancels out
# of the ratio; the median of the rounds is the figure.
#
#   bench/pair.sh OLD_BINARY NEW_BINARY [ROUNDS] [CAPTURE]
#
# Needs two CPUs and taskset. A ratio under 1 means NEW takes less CPU.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS] [CAPTURE]" >&2; exit 2; }
old=$1 new=$2 rounds=${3:-12}
cap=${4:-${TMPDIR:-/tmp}/otas-sniff-bench-100000.pcap}
[ -s "$cap" ] || { echo "no capture at $cap: make one with go run ./bench/gencap -exchanges 100000 -o $cap" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # cpu binary out
	GOMAXPROCS=1 taskset -c "$1" /usr/bin/time -f "%U %S" -o "$3" "$2" replay -q --workers 1 "$cap" -o jsonl:/dev/null 2>/dev/null
}
for i in $(seq "$rounds"); do
	a=$((i % 2)) b=$(((i + 1) % 2))
	run "$a" "$old" "$tmp/old" &
	run "$b" "$new" "$tmp/new" &
	wait
	paste "$tmp/old" "$tmp/new" | awk '{ o = $1 + $2; n = $3 + $4; printf "%.3f %.3f %.4f\n", o, n, n / o }'
done | tee "$tmp/rounds"
sort -g -k3 "$tmp/rounds" | awk '{ r[NR] = $3; o += $1; n += $2 }
	END { printf "new/old CPU: median %.3f, range %.3f-%.3f over %d rounds; mean CPU s %.3f -> %.3f\n", r[int((NR + 1) / 2)], r[1], r[NR], NR, o / NR, n / NR }'
