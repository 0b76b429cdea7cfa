package cross

import (
	"os/exec"
	"strings"
	"testing"
)

// allowed are the module paths (prefixes) the device binary may link. A
// new dependency fails this test until it is added here on purpose, with
// its cost in mind (make bench prints what each one costs).
var allowed = []string{
	"github.com/graft-dev/graft",
	"github.com/eclipse/paho.mqtt.golang",               // MQTT
	"github.com/gorilla/websocket",                      // paho's websocket transport
	"github.com/fxamacker/cbor/v2",                      // manifest and wire CBOR
	"github.com/x448/float16",                           // cbor
	"github.com/theupdateframework/go-tuf/v2",           // TUF client
	"github.com/secure-systems-lab/go-securesystemslib", // go-tuf: canonical JSON
	// go-tuf's signature verifiers: graft's own tuf/sigstore stands in for
	// upstream sigstore (go.mod's replace; TestSigstoreReplaced checks it)
	"github.com/sigstore/sigstore/pkg/signature",
	"github.com/sigstore/sigstore/pkg/cryptoutils",
	"github.com/cenkalti/backoff",   // go-tuf fetcher
	"github.com/klauspost/compress", // zstd images
	"golang.org/x/sys/unix",
	"golang.org/x/sys/cpu",
	"golang.org/x/crypto",
	"golang.org/x/net",
	"golang.org/x/sync",
	"golang.org/x/term",
}

// forbidden are our own packages that must never reach the device binary.
var forbidden = []string{
	"github.com/graft-dev/graft/tools/",
	"github.com/graft-dev/graft/agent/simboard",
	"github.com/graft-dev/graft/agent/agenttest",
	"github.com/graft-dev/graft/tuf/repo",
	"github.com/mochi-mqtt/",
	"testing",
	"runtime/cgo",
	// upstream sigstore's chain: 3.1 MiB of arm64 binary and most of the
	// package-init cost (protobuf descriptors, reflect's MethodByName)
	"google.golang.org/protobuf",
	"github.com/sigstore/protobuf-specs",
	"github.com/google/go-containerregistry",
}

// TestDeviceBinaryDeps keeps graft-agent free of cgo and of packages
// outside the allow-list, on every architecture it ships for.
func TestDeviceBinaryDeps(t *testing.T) {
	for _, tgt := range Targets {
		t.Run(tgt.Name, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}} {{len .CgoFiles}}", "github.com/graft-dev/graft/agent/cmd/graft-agent")
			cmd.Env = tgt.Env()
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				pkg, std, cgo := f[0], f[1] == "true", f[2] != "0"
				if cgo {
					t.Errorf("%s uses cgo", pkg)
				}
				for _, bad := range forbidden {
					if pkg == strings.TrimSuffix(bad, "/") || strings.HasPrefix(pkg, bad) {
						t.Errorf("%s must not be linked into graft-agent", pkg)
					}
				}
				if std || allowedPkg(pkg) {
					continue
				}
				t.Errorf("%s is not in the device binary's allow-list (cross/deps_test.go)", pkg)
			}
		})
	}
}

func allowedPkg(pkg string) bool {
	for _, a := range allowed {
		if pkg == a || strings.HasPrefix(pkg, a+"/") {
			return true
		}
	}
	return false
}

// TestSigstoreReplaced: the sigstore packages go-tuf imports must come from
// graft's tuf/sigstore, never from upstream (whose protobuf chain costs the
// device 3 MiB and most of its idle RSS).
func TestSigstoreReplaced(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{with .Replace}}{{.Path}}{{end}}", "github.com/sigstore/sigstore").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "./tuf/sigstore" {
		t.Fatalf("github.com/sigstore/sigstore is replaced by %q, want ./tuf/sigstore", got)
	}
}
