#!/usr/bin/env bash
# The container image's build steps in one place. The Dockerfile runs `deps` and
# `build` in its builder stage and `runtime` in its final stage; `check` (the
# default) runs the same build on this host and checks the binary and the
# Dockerfile, so that a host build and the image cannot drift apart.
#
#   scripts/docker-build-steps.sh deps            install the build's Debian packages
#   scripts/docker-build-steps.sh build OUT       build ./cmd/otas-sniff to OUT, set file caps
#   scripts/docker-build-steps.sh runtime         prepare the runtime image (run inside it only)
#   scripts/docker-build-steps.sh check [OUTDIR]  deps + build on the host, then verify
#
# VERSION and COMMIT (the Dockerfile's build args) go into the binary; FILE_CAPS
# overrides the file capabilities (for example cap_net_raw+ep without promiscuous mode).
set -euo pipefail

# What the builder needs: headers for cgo and setcap.
BUILD_DEBS=(libpcap-dev libcap2-bin)
# What the binary needs at run time besides libc (ca-certificates: HTTPS to OTAS).
RUNTIME_DEBS=(libpcap0.8 ca-certificates)
# The shared libraries the binary may link directly; anything else means the
# runtime image is missing a package.
ALLOWED_NEEDED=(libpcap.so.0.8 libc.so.6)
FILE_CAPS=${FILE_CAPS:-cap_net_raw,cap_net_admin+ep}
# The runtime user: numeric so Kubernetes can check runAsNonRoot without /etc/passwd.
RUN_UID=65532
SPOOL_DIR=/var/lib/otas-sniff

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="scripts/$(basename "${BASH_SOURCE[0]}")"

die() { echo "docker-build-steps: $*" >&2; exit 1; }
log() { echo "docker-build-steps: $*" >&2; }

ldflags() {
	echo "-s -w -X main.version=${VERSION:-dev} -X main.commit=${COMMIT:-unknown}"
}

apt_install() {
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cmd_deps() {
	apt_install "${BUILD_DEBS[@]}"
}

cmd_build() {
	local out=${1:?usage: build OUT}
	cd "$ROOT"
	# -trimpath: no build machine paths in the binary; cgo is required by libpcap.
	CGO_ENABLED=1 go build -trimpath -buildvcs=false -ldflags "$(ldflags)" -o "$out" ./cmd/otas-sniff
	# File capabilities let a non-root user open raw sockets (see deploy/README.md).
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo setcap "$FILE_CAPS" "$out"
	getcap "$out" | grep -q "cap_net_raw" || die "setcap left no capabilities on $out"
}

cmd_runtime() {
	[ -n "${OTAS_IN_IMAGE_BUILD:-}" ] ||
		die "runtime changes users and setuid bits: run it only inside the image build"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${RUNTIME_DEBS[@]}" >/dev/null
	rm -rf /var/lib/apt/lists/*
	groupadd --system --gid "$RUN_UID" otas
	useradd --system --uid "$RUN_UID" --gid "$RUN_UID" --home-dir /nonexistent --no-create-home \
		--shell /usr/sbin/nologin otas
	install -d -o "$RUN_UID" -g "$RUN_UID" -m 0750 "$SPOOL_DIR"
	# File caps need no_new_privs off; with no setuid binary left, turning it off
	# gains an attacker nothing beyond the capabilities already granted.
	find / -xdev -type f -perm /6000 -exec chmod a-s {} + 2>/dev/null || true
}

# check_binary verifies the built binary runs and needs only what the runtime image has.
check_binary() {
	local bin=$1
	"$bin" --help >/dev/null || die "$bin --help failed"
	log "--help exits 0"

	local needed
	needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
	[ -n "$needed" ] || die "no dynamic libraries: expected a cgo binary linked to libpcap"
	for lib in $needed; do
		local ok=no
		for a in "${ALLOWED_NEEDED[@]}"; do [ "$lib" = "$a" ] && ok=yes; done
		[ $ok = yes ] || die "$bin links $lib, which the runtime image does not provide"
	done
	grep -qx libpcap.so.0.8 <<<"$needed" || die "$bin does not link libpcap"
	log "links only: ${needed//$'\n'/ }"

	local ldd_out
	ldd_out=$(ldd "$bin")
	! grep -q "not found" <<<"$ldd_out" || die "unresolved libraries: $ldd_out"
	# Each direct library must come from libc6 or a package the runtime stage installs.
	for lib in $needed; do
		local path pkg
		path=$(awk -v l="$lib" '$1 == l {print $3}' <<<"$ldd_out")
		# dpkg knows a library by one of its names only (usrmerge, soname links).
		pkg=$({ dpkg -S "$path" || dpkg -S "$(readlink -f "$path")"; } 2>/dev/null | head -1 | cut -d: -f1 || true)
		case " libc6 ${RUNTIME_DEBS[*]} " in
		*" $pkg "*) ;;
		*) die "$lib ($path) comes from package '$pkg', which the runtime stage does not install" ;;
		esac
	done

	local caps
	caps=$(getcap "$bin")
	grep -q cap_net_raw <<<"$caps" || die "no file capabilities: $caps"
	log "file caps: ${caps#* }"

	# -trimpath keeps -ldflags out of the build info, so look for the values
	# themselves; the linker ignores -X for a variable main does not declare.
	local v
	for v in "version=${VERSION:-dev}" "commit=${COMMIT:-unknown}"; do
		if grep -qE "^[[:space:]]*(var[[:space:]]+)?([a-zA-Z]+[[:space:]]*,[[:space:]]*)*${v%%=*}([[:space:]]*,[[:space:]]*[a-zA-Z]+)*[[:space:]]+(string|=)" "$ROOT"/cmd/otas-sniff/*.go; then
			grep -qaF -- "${v#*=}" "$bin" || die "main.${v%%=*} is declared but ${v#*=} is not in the binary"
		else
			log "warning: cmd/otas-sniff declares no main.${v%%=*}: -X main.$v is ignored"
		fi
	done
}

# check_dockerfile verifies the Dockerfile builds through this script and nothing else.
check_dockerfile() {
	local df=$ROOT/Dockerfile
	[ -f "$df" ] || die "no Dockerfile at $df"
	local want
	for want in \
		"$SELF deps" \
		"$SELF build /out/otas-sniff" \
		"$SELF runtime" \
		"OTAS_IN_IMAGE_BUILD=1" \
		"ARG VERSION" \
		"ARG COMMIT" \
		"COPY --from=build /out/otas-sniff /usr/local/bin/otas-sniff" \
		'ENTRYPOINT ["/usr/local/bin/otas-sniff"]' \
		"USER $RUN_UID:$RUN_UID" \
		"FROM debian:bookworm-slim"; do
		grep -qF -- "$want" "$df" || die "Dockerfile lacks: $want"
	done
	# A go build or setcap of its own would bypass the shared steps.
	! grep -nE '^[^#]*(go build|setcap|apt-get install)' "$df" ||
		die "Dockerfile builds or installs outside $SELF (lines above)"
	# The builder's Go must be the one go.mod asks for (major.minor).
	local gomod_go image_go
	gomod_go=$(awk '$1 == "go" {split($2, v, "."); print v[1] "." v[2]}' "$ROOT/go.mod")
	image_go=$(sed -n 's/^FROM golang:\([0-9]*\.[0-9]*\).* AS build.*/\1/p' "$df")
	[ "$gomod_go" = "$image_go" ] || die "Dockerfile uses Go $image_go, go.mod wants $gomod_go"
	# The Debian release of builder and runtime must match, or libpcap's soname may not.
	grep -qE '^FROM golang:[0-9.]+-bookworm AS build' "$df" || die "builder is not on bookworm like the runtime"
	log "Dockerfile uses $SELF for every build step (Go $image_go, bookworm)"
}

cmd_check() {
	local outdir=${1:-}
	if [ -z "$outdir" ]; then
		outdir=$(mktemp -d)
		trap 'rm -rf "$outdir"' EXIT
	fi
	check_dockerfile
	cmd_deps
	cmd_build "$outdir/otas-sniff"
	check_binary "$outdir/otas-sniff"
	echo "docker-build-steps: OK ($outdir/otas-sniff)"
}

case "${1:-check}" in
deps) cmd_deps ;;
build) shift; cmd_build "$@" ;;
runtime) cmd_runtime ;;
check) shift || true; cmd_check "$@" ;;
*) die "unknown step '$1' (deps, build OUT, runtime, check [OUTDIR])" ;;
esac
