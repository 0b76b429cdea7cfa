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
	"github.com/secure-systems-lab/go-securesystemslib", // go-tuf: canonical JSON, signatures
	"github.com/sigstore/sigstore/pkg/signature",        // go-tuf: signature verifiers
	"github.com/sigstore/sigstore/pkg/cryptoutils",
	"github.com/sigstore/protobuf-specs",              // sigstore
	"github.com/google/go-containerregistry/pkg/name", // sigstore
	"github.com/opencontainers/go-digest",             // sigstore
	"github.com/cenkalti/backoff",                     // go-tuf fetcher
	"google.golang.org/protobuf",                      // sigstore
	"google.golang.org/genproto/googleapis/api",       // sigstore
	"github.com/klauspost/compress",                   // zstd images
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
