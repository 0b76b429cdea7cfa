package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/transport"
)

// buildBinaries builds graft-agent and graft-fleet as `make build` does.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, pkg := range map[string]string{
		"graft-agent": "github.com/graft-dev/graft/agent/cmd/graft-agent",
		"graft-fleet": "github.com/graft-dev/graft/tools/fleet/cmd/graft-fleet",
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/graft-dev/graft/agent/daemon.version=0.1.0", "-o", filepath.Join(dir, name), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return dir
}

// TestDemo is `make demo` as a test: v2 is installed in slot B, tried,
// found healthy and kept; v3 fails its health check in slot A and the
// device falls back to B and says why.
func TestDemo(t *testing.T) {
	bin := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	sum, err := Run(ctx, Options{BinDir: bin, Out: &out, Keep: true, ImageSize: 4 << 20})
	if sum != nil && sum.WorkDir != "" {
		t.Cleanup(func() { os.RemoveAll(sum.WorkDir) })
	}
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if got, want := sum.Boots, []string{"A", "B", "A", "B"}; !equal(got, want) {
		t.Errorf("boots %v, want %v", got, want)
	}
	count := map[string]int{}
	for _, s := range sum.Events {
		count[s.Release+" "+string(s.State)]++
		if s.State == transport.StateCommitted && (s.Release != "v2" || s.Slot != "B" || s.Path != "ab") {
			t.Errorf("unexpected commit %+v", s)
		}
		if s.State == transport.StateRolledBack && (s.Release != "v3" || s.Slot != "B" || s.Reason == "") {
			t.Errorf("rollback %+v: want v3 back in slot B with a reason", s)
		}
	}
	if count["v2 committed"] != 1 || count["v3 rolled-back"] != 1 {
		t.Errorf("final events %v: want v2 committed once and v3 rolled-back once", count)
	}

	dev := filepath.Join(sum.WorkDir, "device")
	j, err := journal.Open(filepath.Join(dev, "journal.json"))
	if err != nil {
		t.Fatal(err)
	}
	rec := j.Record()
	if rec.Update != nil || rec.Installed.Name != "v2" || rec.Installed.Slot != "B" || rec.RolledBack != 3 {
		t.Errorf("journal %+v: want v2 installed in B, nothing in flight, sequence 3 rolled back", rec)
	}
	env, err := bootenv.NewUBoot(bootenv.FWLocation{Device: filepath.Join(dev, "uboot.env"), Size: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	vars, err := env.Load()
	if err != nil {
		t.Fatal(err)
	}
	if vars["BOOT_ORDER"] != "B A" || vars["BOOT_B_LEFT"] != "3" || vars["BOOT_A_LEFT"] != "0" {
		t.Errorf("boot state %v: want order B A, B with 3 attempts, A marked bad", vars)
	}
	slotB, err := os.ReadFile(filepath.Join(dev, "slot-b.img"))
	if err != nil {
		t.Fatal(err)
	}
	if want := image("v2", true, 4<<20); !bytes.Equal(slotB[:len(want)], want) {
		t.Error("slot B does not hold the v2 image")
	}
	if testing.Verbose() {
		t.Log("\n" + out.String())
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
