#!/usr/bin/env bash
# Soak test: the built otas-sniff captures live on a veth pair between two
# network namespaces for DURATION under a steady mix of traffic (bench/soak:
# keep-alive, one connection per request, abandoned and garbage connections),
# while this script samples the sniffer's RSS, goroutines and open streams
# every INTERVAL seconds into a CSV and plots it with gnuplot. Needs root.
#
#   sudo bench/soak.sh 30m                  # writes bench/soak.csv, bench/soak-summary.txt, bench/soak.png
#   RATE=400 INTERVAL=10 sudo bench/soak.sh 2h
#
# A healthy run has flat curves after warm-up: RSS and goroutines bounded,
# open streams around (rate of long-lived connections x their lifetime).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-10m}
RATE=${RATE:-300}
INTERVAL=${INTERVAL:-5}
IDLE=${IDLE_TIMEOUT:-30s}
OUT=${OUT:-bench/soak}
[ "$(id -u)" = 0 ] || { echo "bench/soak.sh needs root (network namespaces)"; exit 1; }
case "$DURATION" in
*h) secs=$(( ${DURATION%h} * 3600 )) ;;
*m) secs=$(( ${DURATION%m} * 60 )) ;;
*s) secs=${DURATION%s} ;;
*) secs=$DURATION ;;
esac
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "DURATION is a whole number of s, m or h, like 30m"; exit 2; }
command -v gnuplot >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null; }
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }

work=$(mktemp -d)
suffix=$$
cli=otsc$suffix srv=otss$suffix
cleanup() {
	for p in ${clipid:-} ${spid:-} ${srvpid:-}; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	ip netns del "$srv" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/otas-sniff" ./cmd/otas-sniff
go build -o "$work/soak" ./bench/soak

ip netns add "$cli"
ip netns add "$srv"
ip -n "$cli" link set lo up
ip -n "$srv" link set lo up
ip -n "$cli" link add vcli type veth peer name vsrv netns "$srv"
ip -n "$cli" addr add 10.79.0.1/24 dev vcli
ip -n "$srv" addr add 10.79.0.2/24 dev vsrv
ip -n "$cli" link set vcli up
ip -n "$srv" link set vsrv up

ip netns exec "$srv" "$work/soak" server -addr 10.79.0.2:8000 &
srvpid=$!
ip netns exec "$srv" "$work/otas-sniff" -i vsrv -p 8000 -o "jsonl:/dev/null" \
	--idle-timeout "$IDLE" --stats-interval 0 --metrics-addr 127.0.0.1:9464 2>"$work/sniff.log" &
spid=$!
until grep -q "msg=capturing" "$work/sniff.log" 2>/dev/null; do
	kill -0 "$spid" 2>/dev/null || { cat "$work/sniff.log"; exit 1; }
	sleep 0.05
done

ip netns exec "$cli" "$work/soak" client -addr 10.79.0.2:8000 -rate "$RATE" -duration "${secs}s" >"$work/client.json" &
clipid=$!

metric() { awk -v n="$1" '$1==n {print $2; found=1} END {if (!found) print "NA"}' "$work/metrics.txt"; }
csv="$OUT.csv"
echo "seconds,rss_mib,goroutines,open_streams,streams_total,exchanges_total,heap_inuse_mib,packets_dropped" >"$csv"
t0=$(date +%s)
while kill -0 "$clipid" 2>/dev/null; do
	now=$(( $(date +%s) - t0 ))
	rss=$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$spid/status")
	ip netns exec "$srv" curl -s -m 2 http://127.0.0.1:9464/metrics >"$work/metrics.txt" || true
	heap=$(metric go_memstats_heap_inuse_bytes)
	[ "$heap" != NA ] && heap=$(awk -v h="$heap" 'BEGIN{printf "%.1f", h/1048576}')
	drops=$(awk '/^otas_sniff_packets_dropped_total/ {s += $2} END {printf "%d", s}' "$work/metrics.txt")
	echo "$now,$rss,$(metric go_goroutines),$(metric otas_sniff_open_streams),$(metric otas_sniff_tcp_streams_total),$(metric otas_sniff_exchanges_total),$heap,$drops" >>"$csv"
	sleep "$INTERVAL"
done
wait "$clipid" || true
clipid=
sleep 2 # the last answers reach the sniffer before it stops
kill -TERM "$spid"
wait "$spid" || true
spid=
client=$(cat "$work/client.json")
summary=$(grep -E "^otas-sniff: [0-9]+ packets" "$work/sniff.log" || true)
echo "client: $client"
echo "sniffer: $summary"

# Flatness: compare the second half's mean with the first half's after a
# warm-up of one tenth of the run; a leak shows as a growing second half.
awk -F, -v out="$OUT-summary.txt" -v client="$client" -v sniff="$summary" '
NR == 1 { next }
{ t[n] = $1; rss[n] = $2; g[n] = $3; o[n] = $4; h[n] = $7; n++ }
END {
	w = int(n / 10); mid = w + int((n - w) / 2)
	for (i = w; i < n; i++) {
		if (i < mid) { r1 += rss[i]; g1 += g[i]; o1 += o[i]; h1 += h[i]; c1++ } else { r2 += rss[i]; g2 += g[i]; o2 += o[i]; h2 += h[i]; c2++ }
		if (rss[i] > rmax) rmax = rss[i]; if (g[i] > gmax) gmax = g[i]; if (o[i] > omax) omax = o[i]
	}
	printf "samples: %d over %d s (warm-up %d samples skipped)\n", n, t[n-1], w > out
	printf "rss_mib: first-half mean %.1f, second-half mean %.1f, max %.1f\n", r1/c1, r2/c2, rmax >> out
	printf "heap_inuse_mib: first-half mean %.1f, second-half mean %.1f\n", h1/c1, h2/c2 >> out
	printf "goroutines: first-half mean %.1f, second-half mean %.1f, max %d\n", g1/c1, g2/c2, gmax >> out
	printf "open_streams: first-half mean %.1f, second-half mean %.1f, max %d\n", o1/c1, o2/c2, omax >> out
	# Flat: the mean of the second half within 10% (RSS) or 20% (goroutines,
	# open streams, which are small numbers) of the mean of the first half.
	flat = (r2 <= r1 * 1.10 && g2 <= g1 * 1.20 + 2 && o2 <= o1 * 1.20 + 10)
	printf "verdict: %s\n", (flat ? "flat (no growth between the halves of the run after warm-up)" : "GROWING: compare the halves above") >> out
	printf "client: %s\nsniffer: %s\n", client, sniff >> out
}' "$csv"
{
	echo "sniffer endpoint table (exchanges by endpoint; compare completed_by_endpoint above):"
	grep -E "^(METHOD|GET|POST|PUT|DELETE|HEAD) " "$work/sniff.log" || true
} >>"$OUT-summary.txt"
cat "$OUT-summary.txt"

gnuplot <<GP
set datafile separator ","
set terminal pngcairo size 1200,800 noenhanced font ",10"
set output "$OUT.png"
set multiplot layout 3,1 title "otas-sniff soak: ${DURATION} at ${RATE} req/s (bench/soak.sh)"
set xlabel "seconds"
set grid
set key top left
set ylabel "MiB"
set yrange [0:*]
plot "$csv" using 1:2 with lines lw 2 title "RSS", "" using 1:7 with lines lw 2 title "Go heap in use"
set ylabel "goroutines"
plot "$csv" using 1:3 with lines lw 2 title "goroutines"
set ylabel "streams"
plot "$csv" using 1:4 with lines lw 2 title "open streams"
unset multiplot
GP
echo "wrote $csv, $OUT-summary.txt and $OUT.png"
