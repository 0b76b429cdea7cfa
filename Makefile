# graft — make demo (the sim board end to end) and make test (the suite).
GO      ?= go
VERSION ?= 0.1.0
PKG      = github.com/graft-dev/graft
# the agent's TUF time floor never goes below its build (commit) time
BUILD_TIME ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS  = -s -w -X $(PKG)/agent/daemon.version=$(VERSION) -X $(PKG)/agent/daemon.buildTime=$(BUILD_TIME)
GOFLAGS_BUILD = -trimpath -ldflags '$(LDFLAGS)'
export CGO_ENABLED = 0

HOSTARCH := $(shell $(GO) env GOARCH)
BINS     = graft-agent graft-fleet graft-flash
CMD_graft-agent = ./agent/cmd/graft-agent
CMD_graft-fleet = ./tools/fleet/cmd/graft-fleet
CMD_graft-flash = ./tools/flash/cmd/graft-flash
# graft-flash runs on a factory station: amd64 and arm64 hosts.
FLASH_HOSTS = amd64 arm64
CMD_graft-demo  = ./tools/demo/cmd/graft-demo

.PHONY: all build cross demo demo-arm64 test bench deps vet clean

all: build

build: $(addprefix out/$(HOSTARCH)/,$(BINS) graft-demo)

out/$(HOSTARCH)/%: FORCE
	@mkdir -p $(@D)
	$(GO) build $(GOFLAGS_BUILD) -o $@ $(CMD_$*)

FORCE:

## cross: static binaries for arm64, armv7 and amd64 in out/<arch>/, with sizes; graft-flash for amd64 and arm64 stations
cross:
	$(GO) run ./cross/cmd/graft-cross -version $(VERSION) -out out
	@for a in $(FLASH_HOSTS); do \
	  GOOS=linux GOARCH=$$a $(GO) build $(GOFLAGS_BUILD) -o out/$$a/graft-flash $(CMD_graft-flash) || exit 1; \
	  echo "out/$$a/graft-flash $$(stat -c %s out/$$a/graft-flash) bytes"; \
	done

## deps: the Debian packages the tests and the demo use (idempotent)
deps:
	@sh cross/debian-deps.sh

## demo: a device on the sim board takes v2 over MQTT+TUF, keeps it, then rolls back v3
demo: deps build
	out/$(HOSTARCH)/graft-demo -bin out/$(HOSTARCH)

## demo-arm64: the real thing — Debian arm64 kernel, Debian U-Boot, QEMU: an update kept, then a bad one rolled back
demo-arm64: deps
	@bash -o pipefail -c "$(GO) test -count=1 -v -timeout 20m -run 'TestARM64UpdateAndRollback' ./test/arm64-qemu/ \
		| sed -un 's/^ *\(guest\|scenario_test\)\.go:[0-9]*: /▸ /p; /^--- /p; /^ok\|^FAIL/p'"

## arm64-livepatch-kernel: build a small arm64 kernel with CONFIG_LIVEPATCH=y from Debian's linux-source-7.x (cached outside the repository; about 15 minutes the first time), then run agent/klp's live patch scenario on it
.PHONY: arm64-livepatch-kernel
arm64-livepatch-kernel: deps
	@GRAFT_DEBIAN_EXTRA="bison flex libelf-dev bc" sh cross/debian-deps.sh
	GRAFT_BUILD_KLP_KERNEL=1 $(GO) test -count=1 -v -timeout 120m -run '^TestBuildLivepatchKernel$$' ./test/arm64-qemu/
	$(GO) test -count=1 -v -timeout 15m -run '^TestKLPARM64$$' ./test/arm64-qemu/

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

## test: vet, then every test (fuzz seeds included) against real mosquitto, fw_printenv, grub-editenv
test: deps vet
	$(GO) test -count=1 -timeout 20m ./... github.com/theupdateframework/go-tuf/v2/metadata/updater

## bench: A/B install throughput vs dd+sha256sum, idle RSS, live-patch stop times, fleet broker rates with mTLS, telemetry costs, binary sizes and dependency costs (figures only, no timed assertions)
bench: deps
	@echo "== install vs dd+sha256sum, idle RSS (shared machine: figures are noisy)"
	@log=$$(mktemp); GRAFT_BENCH=1 $(GO) test -count=1 -timeout 10m -v -run '^(TestInstallVsDD|TestIdleRSSBench)$$' ./agent/slot/ ./agent/daemon/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then cat $$log; else grep -Ev '^(=== |--- PASS|PASS$$|ok )' $$log; fi; rm -f $$log; exit $$rc
	@echo "== userspace live patches: stop time per apply (2 busy threads), 100 processes, later processes"
	@log=$$(mktemp); GRAFT_BENCH=1 $(GO) test -count=1 -timeout 10m -v -run '^(TestStopTimeBench|TestHundredProcessesBench)$$' ./agent/userpatch/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then cat $$log; else grep -Ev '^(=== |--- PASS|PASS$$|ok )' $$log; fi; rm -f $$log; exit $$rc
	@echo "== go test -bench BenchmarkInstall (64 MiB image onto a file slot)"
	@log=$$(mktemp); $(GO) test -count=1 -run '^$$' -bench '^BenchmarkInstall$$' -benchtime 3x ./agent/slot/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then cat $$log; else grep -E '^(Benchmark|cpu:)' $$log; fi; rm -f $$log; exit $$rc
	@echo "== fleet database: status events stored per second (one transaction each, and 256 per transaction as serve stores a burst), size per million events"
	@log=$$(mktemp); $(GO) test -count=1 -run '^$$' -bench '^BenchmarkIngestStatus(Batched)?$$' -benchtime 20000x ./tools/fleet/store/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then cat $$log; else grep -E '^(Benchmark|cpu:)' $$log; fi; rm -f $$log; exit $$rc
	@echo "== kernel live patch, Debian amd64 under QEMU: agent checks, finit_module, wait until sysfs shows the transition done, and the kernel's own transition time from its log"
	@log=$$(mktemp); $(GO) test -count=1 -timeout 15m -v -run '^TestKLPAgentAMD64$$' ./test/arm64-qemu/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then tail -50 $$log; else grep -E 'klp-bench:' $$log; fi; rm -f $$log; exit $$rc
	@echo "== graft-agent footprint: sizes against the previous release, package init cost"
	@log=$$(mktemp); GRAFT_BENCH=1 $(GO) test -count=1 -timeout 10m -v -run '^TestFootprintBench$$' ./cross/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then cat $$log; else grep -E '^footprint:' $$log; fi; rm -f $$log; exit $$rc
	@echo "== factory provisioning over a pty (graft-flash ↔ provisioning mode): per device and 4 in parallel, serial control vs image"
	@log=$$(mktemp); GRAFT_BENCH=1 $(GO) test -count=1 -timeout 10m -v -run '^TestProvisionBench$$' ./tools/flash/station/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then tail -50 $$log; else grep -E 'flash-bench:' $$log; fi; rm -f $$log; exit $$rc
	@echo "== graft-fleet serve with mutual TLS: connections, device messages, group fan-out, as many simulated devices as file descriptors allow (GRAFT_BENCH_DEVICES caps)"
	@log=$$(mktemp); GRAFT_BENCH=1 $(GO) test -count=1 -timeout 15m -v -run '^TestFleetMTLSBench$$' ./tools/fleet/serve/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then tail -50 $$log; else grep -E 'fleet-bench:' $$log | sed 's/^ *bench_test.go:[0-9]*: //'; fi; rm -f $$log; exit $$rc
	@echo "== telemetry: one sample on the device (time, allocations), reports stored per second by serve, a /metrics scrape of 10,000 devices"
	@log=$$(mktemp); $(GO) test -count=1 -run '^$$' -bench '^(BenchmarkSample|BenchmarkIngestTelemetry|BenchmarkScrape10k)$$' -benchtime 2s ./agent/telemetry/ ./tools/fleet/store/ ./tools/fleet/metrics/ >$$log 2>&1; \
	  rc=$$?; if [ $$rc -ne 0 ]; then cat $$log; else grep -E '^Benchmark' $$log; fi; rm -f $$log; exit $$rc
	@echo "== device binary sizes and dependency costs"
	$(GO) run ./cross/cmd/graft-cross -version $(VERSION) -out out -deps

clean:
	rm -rf out
