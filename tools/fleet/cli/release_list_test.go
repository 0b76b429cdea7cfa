package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
)

// TestReleaseListShow: the published releases are listed by sequence with
// their components and targets; an unknown one is an error.
func TestReleaseListShow(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	imgPath, _ := writeImage(t, 64<<10)
	for _, r := range []struct{ name, seq string }{{"v2", "2"}, {"v3", "3"}} {
		if code, _, stderr := run(t.Context(), "release", "add", "--repo", dir, "--name", r.name, "--version", r.seq+".0.0",
			"--sequence", r.seq, "--board", "sim", "--image", imgPath); code != cli.ExitOK {
			t.Fatalf("release add %s: %s", r.name, stderr)
		}
	}
	code, stdout, stderr := run(t.Context(), "release", "list", "--repo", dir, "--json")
	var rels []struct {
		Name       string
		Sequence   uint64
		Boards     []string
		Components []struct {
			Kind, Name string
			Targets    []string
		}
		Targets []string
	}
	if code != cli.ExitOK || json.Unmarshal([]byte(stdout), &rels) != nil {
		t.Fatalf("list: exit %d %q %s", code, stdout, stderr)
	}
	if len(rels) != 2 || rels[0].Name != "v2" || rels[1].Sequence != 3 || len(rels[0].Components) != 1 ||
		rels[0].Components[0].Kind != "image" || rels[0].Components[0].Targets[0] != "releases/v2/rootfs.img" || len(rels[0].Targets) != 2 {
		t.Fatalf("list: %+v", rels)
	}
	if code, stdout, _ := run(t.Context(), "release", "show", "v3", "--repo", dir); code != cli.ExitOK || !strings.Contains(stdout, "sequence 3") {
		t.Fatalf("show v3: exit %d %q", code, stdout)
	}
	if code, _, stderr := run(t.Context(), "release", "show", "v9", "--repo", dir); code != cli.ExitFailure || !strings.Contains(stderr, `"v9"`) {
		t.Fatalf("show v9: exit %d %q", code, stderr)
	}
}
