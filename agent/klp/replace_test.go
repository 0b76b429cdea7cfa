package klp

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// liveModule is a synthetic livepatch module called name for running.
func liveModule(name string) []byte {
	return synthModule(modinfo("livepatch=Y", "name="+name, "vermagic="+testVermagic))
}

// TestApplierRecordsWhatTheKernelDid: the manifest's replace flag is a
// claim; what the kernel did (which patches are still enabled in sysfs
// after the load) decides what the Applier keeps, reloads at boot and
// reports as active.
func TestApplierRecordsWhatTheKernelDid(t *testing.T) {
	const running = "6.1.0-50-amd64"
	tests := []struct {
		name          string
		manifestSays  bool // the second patch's manifest replace flag
		kernelReplace bool // the second module was built with .replace = true
		wantKept      []string
		wantActive    []string
	}{
		{"stacked although the manifest said replace", true, false,
			[]string{"graft_klp_a", "graft_klp_b"}, []string{"kpatch-graft_klp_a", "kpatch-graft_klp_b"}},
		{"replaced although the manifest did not say so", false, true,
			[]string{"graft_klp_b"}, []string{"kpatch-graft_klp_b"}},
		{"replaced as the manifest said", true, true,
			[]string{"graft_klp_b"}, []string{"kpatch-graft_klp_b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeSys(t, true, running, "")
			k := withFakeKernel(t, s)
			k.replace["graft_klp_b"] = tt.kernelReplace
			dir := t.TempDir()
			a := NewApplier(dir, s, 0, nil)
			ca, fa := component(t, liveModule("graft_klp_a"), "graft_klp_a", running)
			if _, err := a.Apply(t.Context(), ca, fa); err != nil {
				t.Fatal(err)
			}
			cb, fb := component(t, liveModule("graft_klp_b"), "graft_klp_b", running)
			cb.KernelPatch.Replace = tt.manifestSays
			summary, err := a.Apply(t.Context(), cb, fb)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("summary: %s", summary)
			st, err := a.State()
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, p := range st {
				kept = append(kept, p.Name)
			}
			if !slices.Equal(kept, tt.wantKept) || !slices.Equal(k.enabled(), tt.wantKept) {
				t.Errorf("kept %v, sysfs enabled %v; want %v", kept, k.enabled(), tt.wantKept)
			}
			if !slices.Equal(k.modules(), tt.wantKept) {
				t.Errorf("modules loaded %v, want %v (a replaced patch's module is unloaded)", k.modules(), tt.wantKept)
			}
			active, err := a.ActiveComponents()
			if err != nil || !slices.Equal(active, tt.wantActive) {
				t.Errorf("ActiveComponents = %v, %v; want %v", active, err, tt.wantActive)
			}
			if tt.kernelReplace != strings.Contains(summary, "replaced [graft_klp_a]") {
				t.Errorf("summary %q does not say what the kernel did", summary)
			}
			_, err = os.Stat(filepath.Join(dir, "graft_klp_a.ko"))
			if kept := slices.Contains(tt.wantKept, "graft_klp_a"); kept != (err == nil) {
				t.Errorf("kept copy of graft_klp_a: %v, want kept %v", err, kept)
			}
			// After a reboot the kept patches come back as the kernel
			// had them.
			k.reboot()
			if _, err := a.Restore(t.Context()); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(k.enabled(), tt.wantKept) {
				t.Errorf("after a reboot, sysfs enabled %v; want %v", k.enabled(), tt.wantKept)
			}
		})
	}
}

// TestRestoreFollowsReplace: a state that still lists a patch the next
// one replaced (an agent stopped between the load and saving its state)
// is corrected at the next start: the reload of the replacing patch
// replaces it again, and it is dropped, not kept as active.
func TestRestoreFollowsReplace(t *testing.T) {
	const running = "6.1.0-50-amd64"
	s := fakeSys(t, true, running, "")
	k := withFakeKernel(t, s)
	k.replace["graft_klp_b"] = true
	dir := t.TempDir()
	a := NewApplier(dir, s, 0, nil)
	var st []Active
	for _, n := range []string{"graft_klp_a", "graft_klp_b"} {
		mod := liveModule(n)
		c, _ := component(t, mod, n, running)
		if err := os.WriteFile(filepath.Join(dir, n+".ko"), mod, 0o600); err != nil {
			t.Fatal(err)
		}
		st = append(st, Active{Name: n, Component: c.Name, Release: running, SHA256: c.KernelPatch.SHA256})
	}
	if err := a.save(st); err != nil {
		t.Fatal(err)
	}
	rs, err := a.Restore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Dropped == "" || rs[0].Reloaded || !rs[1].Reloaded {
		t.Errorf("Restore = %+v; want graft_klp_a dropped (replaced), graft_klp_b reloaded", rs)
	}
	got, _ := a.State()
	if len(got) != 1 || got[0].Name != "graft_klp_b" {
		t.Errorf("state after Restore = %+v, want only graft_klp_b", got)
	}
	if active, _ := a.ActiveComponents(); !slices.Equal(active, []string{"kpatch-graft_klp_b"}) {
		t.Errorf("ActiveComponents = %v", active)
	}
}

// TestApplyPassesModuleParams: the component's parameters reach
// finit_module, are kept, and are given again at the reload after a
// reboot.
func TestApplyPassesModuleParams(t *testing.T) {
	const running = "6.1.0-50-amd64"
	s := fakeSys(t, true, running, "")
	k := withFakeKernel(t, s)
	a := NewApplier(t.TempDir(), s, 0, nil)
	c, files := component(t, liveModule("graft_klp_a"), "graft_klp_a", running)
	c.KernelPatch.Params = []string{"replace=1", "debug"}
	if _, err := a.Apply(t.Context(), c, files); err != nil {
		t.Fatal(err)
	}
	k.reboot()
	if _, err := a.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"graft_klp_a replace=1 debug", "graft_klp_a replace=1 debug"}
	if !slices.Equal(k.loads, want) {
		t.Errorf("finit_module calls %q, want %q", k.loads, want)
	}
	if st, _ := a.State(); len(st) != 1 || !slices.Equal(st[0].Params, c.KernelPatch.Params) {
		t.Errorf("state %+v: want the params kept", st)
	}
	// graft-agent patches shows them (List).
	if l, err := a.List(); err != nil || len(l) != 1 || !slices.Equal(l[0].Params, c.KernelPatch.Params) {
		t.Errorf("List = %+v, %v; want the params", l, err)
	}
}

func TestKernelTransitionFromLog(t *testing.T) {
	var recs []kmsgRecord
	for _, raw := range []string{
		"5,900,1000000,-;livepatch: enabling patch 'graft_klp_a'\n",
		"5,901,1000350,-;livepatch: 'graft_klp_a': starting patching transition\n",
		"5,902,1001250,-;livepatch: 'graft_klp_a': patching complete\n",
	} {
		r, ok := parseKmsg([]byte(raw))
		if !ok {
			t.Fatalf("parseKmsg(%q) failed", raw)
		}
		recs = append(recs, r)
	}
	if got, done, ok := kernelTransition(recs, "graft_klp_a"); !ok || got.Microseconds() != 1250 || done != 1001250 {
		t.Errorf("kernelTransition = %v, %d, %v; want 1.25ms, done at 1001250µs", got, done, ok)
	}
	if _, _, ok := kernelTransition(recs[:2], "graft_klp_a"); ok {
		t.Error("kernelTransition without the completion is ok")
	}
	if _, _, ok := kernelTransition(recs, "graft_klp_b"); ok {
		t.Error("kernelTransition of another patch is ok")
	}
}

// FuzzKmsgRecord: any kernel log record parses without panicking, and a
// parsed timestamp is never negative.
func FuzzKmsgRecord(f *testing.F) {
	f.Add([]byte("5,902,1001250,-;livepatch: 'graft_klp_a': patching complete\n"))
	f.Add([]byte("6,1,-5,-;x"))
	f.Add([]byte(";"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseKmsg(b)
		if ok && r.usec < 0 {
			t.Fatalf("parseKmsg(%q) usec %d", b, r.usec)
		}
		kernelTransition([]kmsgRecord{r, r}, "graft_klp_a")
	})
}
