# syntax=docker/dockerfile:1
# otas-sniff container image. Every build step lives in scripts/docker-build-steps.sh,
# which `scripts/docker-build-steps.sh check` also runs on a host, so the two agree.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse --short HEAD) -t otas-sniff .

# Builder and runtime share a Debian release so libpcap's soname matches.
FROM golang:1.26-bookworm AS build
ARG VERSION=dev
ARG COMMIT=unknown
# cap_net_raw+ep is enough without promiscuous mode, and then needs no NET_ADMIN.
ARG FILE_CAPS=cap_net_raw,cap_net_admin+ep
WORKDIR /src
COPY scripts/docker-build-steps.sh scripts/
RUN bash scripts/docker-build-steps.sh deps
# Modules first: the download layer survives source edits.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    VERSION="$VERSION" COMMIT="$COMMIT" FILE_CAPS="$FILE_CAPS" bash scripts/docker-build-steps.sh build /out/otas-sniff

FROM debian:bookworm-slim
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="otas-sniff" \
      org.opencontainers.image.description="Passive HTTP sniffer that reports API calls to OTAS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.source="https://github.com/otas/otas-sniff" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# The script is bind-mounted, not copied: it stays out of the image.
RUN --mount=type=bind,source=scripts/docker-build-steps.sh,target=/tmp/scripts/docker-build-steps.sh \
    cd /tmp && OTAS_IN_IMAGE_BUILD=1 bash scripts/docker-build-steps.sh runtime
# BuildKit keeps the security.capability xattr set by setcap in the builder.
COPY --from=build /out/otas-sniff /usr/local/bin/otas-sniff
# Non-root: the binary's file capabilities grant NET_RAW/NET_ADMIN when the
# container's bounding set has them (--cap-add, or the DaemonSet's capabilities.add).
USER 65532:65532
VOLUME ["/var/lib/otas-sniff"]
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/otas-sniff"]
