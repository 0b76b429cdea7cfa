# graft — make demo (the sim board end to end) and make test (the suite).
GO      ?= go
VERSION ?= 0.1.0
PKG      = github.com/graft-dev/graft
LDFLAGS  = -s -w -X $(PKG)/agent/daemon.version=$(VERSION)
GOFLAGS_BUILD = -trimpath -ldflags '$(LDFLAGS)'
export CGO_ENABLED = 0

HOSTARCH := $(shell $(GO) env GOARCH)
BINS     = graft-agent graft-fleet
CMD_graft-agent = ./agent/cmd/graft-agent
CMD_graft-fleet = ./tools/fleet/cmd/graft-fleet
CMD_graft-demo  = ./tools/demo/cmd/graft-demo

.PHONY: all build cross demo test bench deps vet clean

all: build

build: $(addprefix out/$(HOSTARCH)/,$(BINS) graft-demo)

out/$(HOSTARCH)/%: FORCE
	@mkdir -p $(@D)
	$(GO) build $(GOFLAGS_BUILD) -o $@ $(CMD_$*)

FORCE:

## cross: static binaries for arm64, armv7 and amd64 in out/<arch>/, with sizes
cross:
	$(GO) run ./cross/cmd/graft-cross -version $(VERSION) -out out

## deps: the Debian packages the tests and the demo use (idempotent)
deps:
	@sh cross/debian-deps.sh

## demo: a device on the sim board takes v2 over MQTT+TUF, keeps it, then rolls back v3
demo: deps build
	out/$(HOSTARCH)/graft-demo -bin out/$(HOSTARCH)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

## test: vet, then every test (fuzz seeds included) against real mosquitto, fw_printenv, grub-editenv
test: deps vet
	$(GO) test -count=1 -timeout 20m ./...

## bench: A/B install throughput vs dd+sha256sum, binary sizes, idle RSS
bench: deps
	GRAFT_BENCH=1 $(GO) test -count=1 -run 'Bench' -v ./agent/slot/ ./agent/daemon/ | grep -v '^=== RUN'
	$(GO) run ./cross/cmd/graft-cross -version $(VERSION) -out out -deps

clean:
	rm -rf out
