package userpatch_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
	"github.com/graft-dev/graft/manifest/ulp"
)

// Environment of TestSeizeDeniedChild, set by TestSeizeDenied.
const (
	deniedPIDEnv    = "GRAFT_ULP_DENIED_PID"
	deniedBundleEnv = "GRAFT_ULP_DENIED_BUNDLE"
)

// TestSeizeDenied: when the kernel refuses the seize with EPERM while
// /proc stays readable — exactly what Yama's ptrace_scope does; here an
// agent subprocess whose seccomp filter answers PTRACE_SEIZE with EPERM,
// since this kernel has no Yama and root passes every other check —
// Apply fails with ErrDenied and the reason, not ErrGone, and the
// manager reports the process failed, not skipped.
func TestSeizeDenied(t *testing.T) {
	hostOnly(t)
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "1")
	p.waitFor(t, userpatchtest.GTBefore)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestSeizeDeniedChild$", "-test.v")
	cmd.Env = append(os.Environ(), deniedPIDEnv+"="+strconv.Itoa(p.pid()), deniedBundleEnv+"="+f.Path(userpatchtest.GTBundle))
	out, err := cmd.CombinedOutput()
	t.Logf("agent denied ptrace:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSeizeDeniedChild") {
		t.Fatalf("the agent subprocess failed: %v", err)
	}
	p.waitFor(t, userpatchtest.GTBefore)
	p.alive(t)
}

// denySeize installs, in every thread of this process, a seccomp filter
// that fails ptrace(PTRACE_SEIZE, ...) with EPERM.
func denySeize() error {
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		nrAt = 0  // seccomp_data.nr
		a0At = 16 // seccomp_data.args[0], low word (little-endian)
	)
	prog := []unix.SockFilter{
		{Code: ldW, K: nrAt},
		{Code: jeq, Jt: 0, Jf: 3, K: unix.SYS_PTRACE},
		{Code: ldW, K: a0At},
		{Code: jeq, Jt: 0, Jf: 1, K: unix.PTRACE_SEIZE},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fp)))
	if errno != 0 {
		return errno
	}
	return nil
}

// TestSeizeDeniedChild is TestSeizeDenied's agent, run under setpriv.
func TestSeizeDeniedChild(t *testing.T) {
	pid, _ := strconv.Atoi(os.Getenv(deniedPIDEnv))
	if pid == 0 {
		t.Skip("run by TestSeizeDenied")
	}
	if err := denySeize(); err != nil {
		t.Fatalf("seccomp: %v", err)
	}
	raw, err := os.ReadFile(os.Getenv(deniedBundleEnv))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ulp.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	pt := userpatch.NewPatcher()
	defer pt.Close()
	_, err = pt.Apply(context.Background(), pid, b, userpatch.Options{})
	t.Logf("Apply: %v", err)
	if !errors.Is(err, userpatch.ErrDenied) || errors.Is(err, userpatch.ErrGone) {
		t.Fatalf("Apply = %v, want ErrDenied (and not ErrGone)", err)
	}
	m, err := userpatch.NewManager(nil, nil, userpatch.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	res, err := m.Add(context.Background(), b, "unused")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.PID == pid {
			t.Logf("manager: %+v", r)
			if r.Result != userpatch.ResultFailed || !strings.Contains(r.Reason, "CAP_SYS_PTRACE") {
				t.Fatalf("manager result %+v, want failed with the reason", r)
			}
			return
		}
	}
	t.Fatalf("manager results %+v: pid %d missing", res, pid)
}
