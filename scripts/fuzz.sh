#!/usr/bin/env bash
# Runs every Go fuzz target of the module for SECONDS each (default 10) and
# fails on the first crash. A crashing input is written by Go under the
# package's testdata/fuzz/FuzzXxx/ directory, where `go test` replays it from
# then on as a regression case: commit it with the fix.
#
#   scripts/fuzz.sh          # 10 s per target (CI)
#   scripts/fuzz.sh 120      # a longer local run
#   FUZZ_MATCH=Decode scripts/fuzz.sh 60   # only targets whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-10}
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]"; exit 2; }
match=${FUZZ_MATCH:-}

# package directory and target name of every func FuzzXxx(f *testing.F).
mapfile -t targets < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	grep -v '^./deploy/' | sort |
	while read -r file; do
		dir=$(dirname "$file")
		grep -oE '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' |
			while read -r name; do echo "$dir $name"; done
	done)
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets found"; exit 1; }

failed=()
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	[ -z "$match" ] || [[ "$name" == *"$match"* ]] || continue
	echo "=== $dir $name (${secs}s)"
	log=$(mktemp)
	if ! go test "$dir" -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -parallel "${FUZZ_PARALLEL:-$(nproc)}" 2>&1 | tee "$log"; then
		# Go's fuzzer can end a time-boxed run with a bare "context deadline
		# exceeded" when a worker is busy at the deadline: no input failed.
		if grep -q "context deadline exceeded" "$log" && ! grep -q "Failing input written" "$log"; then
			echo "--- $name: the run hit Go's fuzz deadline race (no failing input); counted as passed"
			rm -f "$log"
			continue
		fi
		rm -f "$log"
		failed+=("$dir $name")
		# Show where Go saved the failing input.
		git status --porcelain -- "$dir/testdata/fuzz/$name" 2>/dev/null || true
		continue
	fi
	rm -f "$log"
done
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz targets that failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s without a failure"
