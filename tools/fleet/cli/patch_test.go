package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/cli"
)

// TestPatchBuildAndShow builds a real bundle with the host gcc through the
// command line, decodes what it wrote, and checks a refusal's exit.
func TestPatchBuildAndShow(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	src := filepath.Join("..", "patchbuild", "testdata", "demo.c")
	cc := func(out string, extra ...string) string {
		p := filepath.Join(dir, out)
		args := append([]string{"-O2", "-fPIC", "-ffunction-sections", "-fdata-sections", "-o", p, src}, extra...)
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, b)
		}
		return p
	}
	lib := cc("libdemo.so", "-shared")
	orig := cc("orig.o", "-c")
	fixed := cc("fixed.o", "-c", "-DFIX_GREET")
	out := filepath.Join(dir, "demo.ulp")

	code, stdout, stderr := run(t.Context(), "patch", "build", "--name", "demo-greet", "--target", lib,
		"--orig", orig, "--fixed", fixed, "-o", out, "--json")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Out      string `json:"out"`
		Replaced []struct {
			Symbol string `json:"symbol"`
			Target uint64 `json:"target"`
		} `json:"replaced"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json output: %v: %q", err, stdout)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ulp.Decode(raw)
	if err != nil {
		t.Fatalf("the written bundle does not decode: %v", err)
	}
	if len(rep.Replaced) != 1 || len(b.Funcs) != 1 || b.Funcs[0].Symbol != "demo_greet" || rep.Replaced[0].Target != b.Funcs[0].Target {
		t.Fatalf("report %+v, bundle funcs %+v", rep.Replaced, b.Funcs)
	}

	code, stdout, stderr = run(t.Context(), "patch", "show", out)
	if code != cli.ExitOK || !strings.Contains(stdout, "func demo_greet") {
		t.Fatalf("show: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// A bit flipped inside the code (well-formed CBOR still): one line
	// naming the checksum, exit 1.
	flipped := append([]byte{}, raw...)
	flipped[bytes.Index(flipped, b.Code)+3] ^= 0x01
	flippedPath := filepath.Join(dir, "flipped.ulp")
	if err := os.WriteFile(flippedPath, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run(t.Context(), "patch", "show", flippedPath)
	if code != cli.ExitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "checksum") {
		t.Fatalf("show of a flipped bundle: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	code, _, stderr = run(t.Context(), "patch", "build", "--name", "x", "--target", lib,
		"--orig", orig, "--fixed", orig, "-o", filepath.Join(dir, "x.ulp"))
	if code != cli.ExitFailure || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("nothing changed: exit %d, stderr %q; want exit 1 and one line", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.ulp")); !os.IsNotExist(err) {
		t.Fatalf("a refused build wrote its output: %v", err)
	}

	code, _, _ = run(t.Context(), "patch", "build", "--name", "x", "--target", lib, "-o", out)
	if code != cli.ExitUsage {
		t.Fatalf("missing --orig: exit %d, want %d", code, cli.ExitUsage)
	}
}
