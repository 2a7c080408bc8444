#!/usr/bin/env bash
# Live-capture throughput: a Go load generator sends HTTP requests through a
# veth pair at increasing rates while otas-sniff captures the server side, and
# a table compares exchanges emitted with exchanges the clients completed,
# with kernel drops, the sniffer's CPU share and its peak RSS. Needs root.
#
#   sudo bench/live.sh                      # rates 1000 2000 5000 8000, 10 s each
#   RATES="5000" SECONDS_PER_RATE=30 sudo bench/live.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"1000 2000 5000 8000"}
SECS=${SECONDS_PER_RATE:-10}
OUT=${OUT:-bench/RESULTS-live.md}
[ "$(id -u)" = 0 ] || { echo "bench/live.sh needs root (network namespaces)"; exit 1; }

work=$(mktemp -d)
suffix=$$
cli=otbc$suffix srv=otbs$suffix
cleanup() {
	[ -n "${srvpid:-}" ] && kill "$srvpid" 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	ip netns del "$srv" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/otas-sniff" ./cmd/otas-sniff
go build -o "$work/loadgen" ./bench/loadgen

ip netns add "$cli"
ip netns add "$srv"
ip -n "$cli" link set lo up
ip -n "$srv" link set lo up
ip -n "$cli" link add vcli type veth peer name vsrv netns "$srv"
ip -n "$cli" addr add 10.78.0.1/24 dev vcli
ip -n "$srv" addr add 10.78.0.2/24 dev vsrv
ip -n "$cli" link set vcli up
ip -n "$srv" link set vsrv up

ip netns exec "$srv" "$work/loadgen" server -addr 10.78.0.2:8000 &
srvpid=$!
sleep 0.5

ticks=$(getconf CLK_TCK)
rows=()
for rate in $RATES; do
	events="$work/events-$rate.jsonl"
	ip netns exec "$srv" "$work/otas-sniff" -i vsrv -p 8000 -o "jsonl:$events" --stats-interval 0 2>"$work/sniff-$rate.log" &
	spid=$!
	until grep -q "msg=capturing" "$work/sniff-$rate.log" 2>/dev/null; do sleep 0.05; done
	cpu0=$(awk '{print $14+$15}' "/proc/$spid/stat")
	t0=$(date +%s.%N)
	ip netns exec "$cli" "$work/loadgen" client -url http://10.78.0.2:8000/api/items -rate "$rate" -duration "${SECS}s" >"$work/client-$rate.json"
	sleep 1 # the last answers reach the sniffer
	cpu1=$(awk '{print $14+$15}' "/proc/$spid/stat")
	t1=$(date +%s.%N)
	hwm=$(awk '/VmHWM/{print $2}' "/proc/$spid/status")
	kill -TERM "$spid"
	wait "$spid" || true
	completed=$(sed -E 's/.*"completed":([0-9]+).*/\1/' "$work/client-$rate.json")
	sent=$(sed -E 's/.*"sent":([0-9]+).*/\1/' "$work/client-$rate.json")
	emitted=$(grep -c '"status_code":200' "$events" || true)
	summary=$(grep -E "^otas-sniff: [0-9]+ packets" "$work/sniff-$rate.log" || true)
	kdrops=$(sed -nE 's/.*drops: ([0-9]+) kernel.*/\1/p' <<<"$summary")
	qdrops=$(sed -nE 's/.* ([0-9]+) queue.*/\1/p' <<<"$summary")
	packets=$(sed -nE 's/^otas-sniff: ([0-9]+) packets.*/\1/p' <<<"$summary")
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" 'BEGIN{printf "%.0f%%", 100*(b-a)/hz/(t1-t0)}')
	pct=$(awk -v e="$emitted" -v c="$completed" 'BEGIN{ if (c>0) printf "%.2f%%", 100*e/c; else print "-" }')
	row="| $rate | $sent | $completed | $emitted | $pct | ${packets:-?} | ${kdrops:-0} | ${qdrops:-0} | $cpu | $((hwm / 1024)) MiB |"
	echo "$row"
	rows+=("$row")
done

{
	echo "# Live capture throughput"
	echo
	echo "Measured by \`bench/live.sh\` on $(date -u +%Y-%m-%d), kernel $(uname -r), $(nproc) CPUs (\`nproc\`),"
	echo "${SECS} s per rate. A Go client (\`bench/loadgen\`, 32 keep-alive connections, open loop) sends"
	echo "GET requests through a veth pair to a Go net/http server answering ~100 bytes of JSON; otas-sniff"
	echo "captures the server's end (\`-i vsrv -p 8000 -o jsonl:FILE\`, default flags: immediate mode,"
	echo "64 MiB ring). Client, server and sniffer share the same CPUs."
	echo
	echo "| req/s offered | sent | completed by clients | exchanges emitted | emitted / completed | packets | kernel drops | queue drops | sniffer CPU (of one core) | sniffer peak RSS |"
	echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	printf '%s\n' "${rows[@]}"
	echo
	echo "CPU is (utime+stime) of the sniffer over the run from /proc/PID/stat; peak RSS is VmHWM from"
	echo "/proc/PID/status, which includes the mapped capture ring pages the kernel has filled."
} >"$OUT"
echo "wrote $OUT"
