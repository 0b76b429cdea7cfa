package userpatch_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/manifest"
)

// TestScope: a patch scoped to other uids, or to other executables,
// leaves the process alone and reports it skipped as out of scope; a
// scope naming its executable patches it.
func TestScope(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "1")
	p.waitFor(t, userpatchtest.GTBefore)
	b := bundle(t, f, userpatchtest.GTBundle)
	for _, tc := range []struct {
		name  string
		scope manifest.Scope
		want  userpatch.Result
	}{
		{"other uid", manifest.Scope{UIDs: []uint32{4242}}, userpatch.ResultSkipped},
		{"other executables", manifest.Scope{Executables: []string{"/usr/sbin/*"}}, userpatch.ResultSkipped},
		{"other unit", manifest.Scope{Units: []string{"no-such-graft-test.service"}}, userpatch.ResultSkipped},
		{"its executable", manifest.Scope{Executables: []string{f.Path("gt*")}}, userpatch.ResultApplied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := userpatch.NewManager(nil, nil, userpatch.Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			res, err := m.AddIn(context.Background(), b, "unused", tc.scope)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(res, func(r userpatch.ProcResult) bool { return r.PID == p.pid() })
			if i < 0 || res[i].Result != tc.want || (tc.want == userpatch.ResultSkipped && !strings.HasPrefix(res[i].Reason, "out of scope")) {
				t.Fatalf("results %+v: want pid %d %s", res, p.pid(), tc.want)
			}
			t.Logf("%s (%s): %s %s", tc.name, userpatch.ScopeText(tc.scope), res[i].Result, res[i].Reason)
			if tc.want == userpatch.ResultApplied {
				p.waitFor(t, userpatchtest.GTAfter)
				if _, err := m.Remove(context.Background(), b.Name); err != nil {
					t.Fatal(err)
				}
			}
			p.waitFor(t, userpatchtest.GTBefore)
		})
	}
}

// TestScopeOtherPIDNamespace: by default a process in another PID
// namespace (a container) is out of scope; a scope that includes other
// namespaces patches it.
func TestScopeOtherPIDNamespace(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare (util-linux)")
	}
	p := startCmd(t, f, exec.Command(unshare, "--pid", "--fork", f.Path(userpatchtest.GTProg), "1"))
	p.waitFor(t, userpatchtest.GTBefore)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.pid(), p.pid()))
	inner, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if inner == 0 {
		t.Fatalf("no process under unshare (%q)", b)
	}
	t.Cleanup(func() { syscall.Kill(inner, syscall.SIGKILL) }) // before start's cleanup waits for the pipe
	bun := bundle(t, f, userpatchtest.GTBundle)
	for _, tc := range []struct {
		scope manifest.Scope
		want  userpatch.Result
	}{
		{manifest.Scope{}, userpatch.ResultSkipped},
		{manifest.Scope{OtherPIDNamespaces: true}, userpatch.ResultApplied},
	} {
		m, err := userpatch.NewManager(nil, nil, userpatch.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.AddIn(context.Background(), bun, "unused", tc.scope)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(res, func(r userpatch.ProcResult) bool { return r.PID == inner })
		if i < 0 || res[i].Result != tc.want {
			t.Fatalf("scope %q: results %+v, want pid %d %s", userpatch.ScopeText(tc.scope), res, inner, tc.want)
		}
		t.Logf("scope %q: %s %s", userpatch.ScopeText(tc.scope), res[i].Result, res[i].Reason)
		if tc.want == userpatch.ResultApplied {
			p.waitFor(t, userpatchtest.GTAfter)
			if _, err := m.Remove(context.Background(), bun.Name); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
	}
	p.waitFor(t, userpatchtest.GTBefore)
}
