package cross

import (
	"errors"
	"fmt"
	"runtime"
)

// ErrUnknownArch is returned by CC and Tool for a GOARCH without a Debian
// cross toolchain.
var ErrUnknownArch = errors.New("cross: no Debian toolchain for GOARCH")

// triplets are the GNU triplets of Debian's toolchains per GOARCH
// (gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf, gcc-x86-64-linux-gnu).
var triplets = map[string]string{
	"amd64": "x86_64-linux-gnu",
	"arm64": "aarch64-linux-gnu",
	"arm":   "arm-linux-gnueabihf",
}

// Triplet returns the GNU triplet Debian's toolchain for goarch is named
// after, e.g. "aarch64-linux-gnu" for arm64.
func Triplet(goarch string) (string, error) {
	t, ok := triplets[goarch]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownArch, goarch)
	}
	return t, nil
}

// CC returns the Debian C compiler that builds for goarch: plain "gcc" for
// the host's own architecture (amd64 on graft's build machines),
// "aarch64-linux-gnu-gcc" for arm64 and "arm-linux-gnueabihf-gcc" for arm
// (armv7 hard-float, Thumb-2 by default, as Debian's armhf is built).
func CC(goarch string) (string, error) { return Tool(goarch, "gcc") }

// Tool returns the name of a toolchain program (gcc, objdump, readelf, ld,
// nm, ...) for goarch: the bare name for the host's architecture, else the
// name prefixed with the triplet, e.g. Tool("arm64", "objdump") =
// "aarch64-linux-gnu-objdump".
func Tool(goarch, name string) (string, error) {
	t, err := Triplet(goarch)
	if err != nil {
		return "", err
	}
	if name == "" {
		return "", fmt.Errorf("cross: empty tool name for %s", goarch)
	}
	if goarch == runtime.GOARCH {
		return name, nil
	}
	return t + "-" + name, nil
}
