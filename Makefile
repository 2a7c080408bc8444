# One command to run the demo, one to run the tests; both install what they need
# on a fresh Debian machine with Go.
SHELL := /bin/bash
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEBS := libpcap-dev tcpdump tshark nftables iproute2 curl python3
BIN := bin/otas-sniff
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: deps build demo test test-short lint bench fixtures golden

# Debian packages the build and the tests need (skipped when all are there).
deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	go build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/otas-sniff

# The main job on the bundled demo capture: events as JSON lines on stdout.
demo: build
	./$(BIN) replay testdata/captures/go-api.pcap -o jsonl:-

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	go vet ./...

# Every test, with the race detector. Tests that need root say so when they skip.
test: deps lint
	go test -race -count=1 -timeout 20m ./...
	cd deploy && go vet ./... && go test -count=1 -timeout 10m ./...

test-short: deps
	go test -short -count=1 ./...

# Re-record the capture fixtures from real servers and clients (root, tcpdump).
fixtures: deps
	go run ./testdata/record -out testdata/captures

# Regenerate the golden event files from the fixtures.
golden:
	go test ./cmd/otas-sniff -run TestGolden -update

bench: build
	./bench/run.sh
