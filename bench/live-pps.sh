#!/usr/bin/env bash
# Live capture at packet rates: tcpreplay pushes a generated capture onto one
# end of a veth pair at increasing packets/s while otas-sniff captures the
# other end, and a table compares exchanges emitted with exchanges in the file,
# with kernel drops, the sniffer's CPU and its peak RSS. Needs root.
#
#   sudo bench/live-pps.sh                       # rates 25000 50000 100000 200000, both engines
#   RATES="200000" WORKERS=2 ENGINES=afpacket FANOUT=2 sudo bench/live-pps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"25000 50000 100000 200000"}
EXCHANGES=${EXCHANGES:-20000}
WORKERS=${WORKERS:-0}
ENGINES=${ENGINES:-"libpcap afpacket"}
FANOUT=${FANOUT:-1}
[ "$(id -u)" = 0 ] || { echo "bench/live-pps.sh needs root (network namespaces)"; exit 1; }
command -v tcpreplay >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpreplay >/dev/null; }

work=$(mktemp -d)
tx=otptx$$ rx=otprx$$
cleanup() {
	ip netns del "$tx" 2>/dev/null || true
	ip netns del "$rx" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/otas-sniff" ./cmd/otas-sniff
go build -o "$work/gencap" ./bench/gencap
go build -o "$work/maxrss" ./bench/maxrss
cap="$work/api.pcap"
"$work/gencap" -exchanges "$EXCHANGES" -o "$cap" 2>/dev/null
# What the file holds, counted by the same parser offline.
want=$("$work/otas-sniff" replay -q "$cap" -o jsonl:/dev/null 2>&1 | grep -oE '[0-9]+ exchanges' | head -1 | cut -d' ' -f1)
packets=$("$work/otas-sniff" replay -q "$cap" -o jsonl:/dev/null 2>&1 | grep -oE '^otas-sniff: [0-9]+' | grep -oE '[0-9]+')

ip netns add "$tx"
ip netns add "$rx"
ip -n "$tx" link add vtx type veth peer name vrx netns "$rx"
ip -n "$tx" link set vtx up
ip -n "$rx" link set vrx up

printf '| engine | packets/s asked | packets/s sent | exchanges emitted / in file | kernel drops | sniffer CPU (cores) | peak RSS MB |\n| --- | --- | --- | --- | --- | --- | --- |\n'
for engine in $ENGINES; do
for rate in $RATES; do
	log="$work/sniff-$engine-$rate.log"
	engine_args=(--engine "$engine")
	[ "$engine" = libpcap ] || engine_args+=(--fanout "$FANOUT")
	# The sniffer stops by itself a few seconds after the last packet, flushes
	# and prints its summary.
	secs=$(( packets / rate + 6 ))
	ip netns exec "$rx" "$work/maxrss" -- "$work/otas-sniff" -i vrx -o jsonl:/dev/null --workers "$WORKERS" "${engine_args[@]}" \
		--stats-interval 0 --idle-timeout 5s --duration "${secs}s" >"$log" 2>&1 &
	spid=$!
	sleep 2
	sent=$(ip netns exec "$tx" tcpreplay -i vtx --pps "$rate" "$cap" 2>&1 | grep -oE '[0-9.]+ pps' | tail -1 | cut -d' ' -f1)
	wait "$spid" || true
	[ -z "${KEEP_LOGS:-}" ] || cp "$log" "$KEEP_LOGS/"
	got=$(grep -oE '[0-9]+ exchanges' "$log" | tail -1 | cut -d' ' -f1)
	drops=$(grep -oE 'drops: [0-9]+ kernel' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
	cpu=$(grep -oE 'cpu_s=[0-9.]+' "$log" | cut -d= -f2)
	wall=$(grep -oE 'wall_s=[0-9.]+' "$log" | cut -d= -f2)
	rss=$(grep -oE 'peak_rss_mb=[0-9.]+' "$log" | cut -d= -f2)
	printf '| %s | %s | %s | %s / %s | %s | %.2f | %s |\n' "$engine" "$rate" "${sent:-?}" "${got:-0}" "$want" "${drops:-0}" \
		"$(echo "${cpu:-0} / ${wall:-1}" | bc -l)" "${rss:-?}"
done
done
echo "capture: $packets packets, $want exchanges; cores: $(nproc); workers: $WORKERS; afpacket fanout: $FANOUT"
