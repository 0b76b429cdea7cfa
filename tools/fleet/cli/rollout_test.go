package cli_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tools/fleet/rolloutctl"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// TestRolloutCommands: create, list, show, pause, resume and abort change
// the stored rollout; bad input is one error line and changes nothing.
func TestRolloutCommands(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "fleet.db")
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "b", "c", "d"} {
		if _, err := db.IngestStatus(ctx, transport.Status{EventID: "e-" + d, Device: d, State: transport.StateIdle}); err != nil {
			t.Fatal(err)
		}
	}
	db.UpsertInventory(ctx, store.Inventory{Device: "a", Groups: []string{"lab"}})
	db.Close()

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--release", "v2", "--target", "all", "--waves", "5%,1%"}, cli.ExitUsage, "waves must grow"},
		{[]string{"--release", "v2", "--target", "all", "--max-failures", "x"}, cli.ExitUsage, "--max-failures"},
		{[]string{"--release", "v2", "--target", "all", "--window", "9-5"}, cli.ExitUsage, "--window"},
		{[]string{"--release", "v2", "--target", "nope"}, cli.ExitUsage, "--target"},
		{[]string{"--target", "all"}, cli.ExitUsage, "--release is required"},
		{[]string{"--release", "v2", "--target", "group:none"}, cli.ExitFailure, "no such devices"},
	} {
		code, _, stderr := run(ctx, append([]string{"rollout", "create", "--db", path}, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("create %v: exit %d %q, want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if code, _, _ := run(ctx, "rollout", "list", "--db", path, "--json"); code != cli.ExitOK {
		t.Fatal("list failed")
	}
	if _, stdout, _ := run(ctx, "rollout", "list", "--db", path, "--json"); strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("refused creates stored something: %s", stdout)
	}

	code, stdout, stderr := run(ctx, "rollout", "create", "--db", path, "--release", "v2", "--target", "all", "--waves", "1,50%", "--json")
	var v rolloutctl.View
	if code != cli.ExitOK || json.Unmarshal([]byte(stdout), &v) != nil {
		t.Fatalf("create: exit %d %q %s", code, stdout, stderr)
	}
	if v.ID != "v2" || v.State != "running" || len(v.Waves) != 3 || v.Waves[0].Size != "1" || v.Totals.Pending != 4 {
		t.Fatalf("created %+v", v)
	}
	// A second rollout of the same release gets its own ID, same canary.
	code, stdout, _ = run(ctx, "rollout", "create", "--db", path, "--release", "v2", "--target", "group:lab", "--json")
	var v2 rolloutctl.View
	if code != cli.ExitOK || json.Unmarshal([]byte(stdout), &v2) != nil || v2.ID != "v2-2" || v2.Totals.Pending != 1 {
		t.Fatalf("second create: exit %d %q", code, stdout)
	}

	for _, step := range []struct {
		verb string
		code int
		want string
	}{
		{"resume", cli.ExitFailure, "is running: cannot resume"},
		{"pause", cli.ExitOK, "state   paused"},
		{"pause", cli.ExitFailure, "is paused: cannot pause"},
		{"resume", cli.ExitOK, "state   running"},
		{"abort", cli.ExitOK, "state   aborting"},
		{"resume", cli.ExitFailure, "cannot resume"},
	} {
		code, stdout, stderr := run(ctx, "rollout", step.verb, "v2", "--db", path)
		if code != step.code || !strings.Contains(stdout+stderr, step.want) {
			t.Fatalf("%s: exit %d %q %q, want %d %q", step.verb, code, stdout, stderr, step.code, step.want)
		}
	}
	if code, _, stderr := run(ctx, "rollout", "show", "nosuch", "--db", path); code != cli.ExitFailure || !strings.Contains(stderr, "nosuch") {
		t.Fatalf("show nosuch: exit %d %q", code, stderr)
	}
	code, stdout, _ = run(ctx, "rollout", "show", "v2", "--db", path, "--json")
	if code != cli.ExitOK || json.Unmarshal([]byte(stdout), &v) != nil || len(v.Members) != 4 || v.Members[0].Wave != 1 {
		t.Fatalf("show --json: %q", stdout)
	}
}
