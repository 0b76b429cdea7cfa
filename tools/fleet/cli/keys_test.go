package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
)

// TestRepoKeysRotateDelegate drives the key commands as an operator
// would: list the keys, delegate releases/rpi4-*/* to a board team's
// role, publish a release signed by that role (a device finds it), refuse
// one outside its paths, then rotate the targets key with the root key
// offline: prepare, sign the copy offline, merge and publish.
func TestRepoKeysRotateDelegate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := newRepo(t)
	must := func(args ...string) string {
		t.Helper()
		code, out, stderr := run(ctx, args...)
		if code != cli.ExitOK {
			t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	var keys struct {
		Roles []struct {
			Role      string   `json:"role"`
			Threshold int      `json:"threshold"`
			Held      []string `json:"held"`
		} `json:"roles"`
		Prepared int64 `json:"prepared_root"`
	}
	if err := json.Unmarshal([]byte(must("repo", "keys", "--dir", dir, "--json")), &keys); err != nil || len(keys.Roles) != 4 {
		t.Fatalf("repo keys --json: %v %+v", err, keys)
	}
	if out := must("repo", "keys", "--dir", dir, "--seal"); !strings.Contains(out, "sealed 0 key files") {
		t.Fatalf("repo keys --seal on sealed keys: %q", out)
	}

	must("repo", "delegate", "rpi4", "--dir", dir, "--paths", "releases/rpi4-*/*", "--threshold", "1")
	imgPath, _ := writeImage(t, 64<<10)
	must("release", "add", "--repo", dir, "--role", "rpi4", "--name", "rpi4-v2", "--version", "2.0.0",
		"--sequence", "2", "--board", "rpi4", "--image", imgPath)
	c := device(t, dir)
	if _, err := c.Target(ctx, "releases/rpi4-v2/manifest.cbor"); err != nil {
		t.Fatalf("the device does not find the team's release: %v", err)
	}
	code, _, stderr := run(ctx, "release", "add", "--repo", dir, "--role", "rpi4", "--name", "x86-v3", "--version", "3.0.0",
		"--sequence", "3", "--board", "x86", "--image", imgPath)
	if code != 1 || !strings.Contains(stderr, "not delegated") {
		t.Fatalf("a team release outside its paths: exit %d: %s", code, stderr)
	}

	// the root key goes offline
	offline := t.TempDir()
	if err := os.Rename(filepath.Join(dir, "keys", "root-1.json"), filepath.Join(offline, "root-1.json")); err != nil {
		t.Fatal(err)
	}
	var rot struct {
		Published bool   `json:"published"`
		Prepared  string `json:"prepared"`
	}
	if err := json.Unmarshal([]byte(must("repo", "rotate", "targets", "--dir", dir, "--keys", "2", "--threshold", "2", "--json")), &rot); err != nil || rot.Published || rot.Prepared == "" {
		t.Fatalf("repo rotate with the root key offline: %v %+v", err, rot)
	}
	carried := filepath.Join(offline, "root.json")
	b, err := os.ReadFile(rot.Prepared)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(carried, b, 0o644)
	must("repo", "root", "sign", "--key", filepath.Join(offline, "root-1.json"), carried)
	must("repo", "root", "merge", "--dir", dir, carried)
	if err := json.Unmarshal([]byte(must("repo", "keys", "--dir", dir, "--json")), &keys); err != nil {
		t.Fatal(err)
	}
	if keys.Roles[1].Role != "targets" || keys.Roles[1].Threshold != 2 || len(keys.Roles[1].Held) != 2 || keys.Prepared != 0 {
		t.Fatalf("after the merge: %+v", keys)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("device refresh after the rotation: %v", err)
	}
	if _, err := c.Target(ctx, "releases/rpi4-v2/manifest.cbor"); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
}
