package rig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/transport"
)

// The kernel live-patch scenarios: graft-agent on Debian's amd64 kernel
// (livepatch support) applies, stacks, replaces and reloads real
// livepatch modules from TUF, falls back to the A/B image when a
// transition stalls; on Debian's arm64 kernel (no livepatch support) the
// same kind of release takes the A/B path.

// The test modules (agent/klp/testdata; see each source).
const (
	klpA         = "graft_klp_a"     // /proc/cmdline shows marker A
	klpB         = "graft_klp_b"     // cumulative (.replace): marker B
	klpStallMod  = "graft_stall"     // plain module: a kthread parked in graft_stall_sleep
	klpStallLive = "graft_klp_stall" // live patch of graft_stall_sleep: never completes
)

var (
	reCmdline  = regexp.MustCompile(`klp-guest: cmdline: (.*)$`)
	reKLPTimes = regexp.MustCompile(`msg="patch enabled".*patch=(\S+).*checks=(\S+) finit_module=(\S+) sysfs_wait=(\S+) kernel_transition=(\S+) done_in_init=(\S+)`)
)

// TestKLPAgentGuest is the guest side of TestKLPAgentAMD64: inside the
// QEMU guest (GRAFT_KLP_AGENT_GUEST=1) it mounts the disk as the board
// qemu-virt-amd64 expects it, loads the stall scenario's plain module,
// starts graft-agent and prints /proc/cmdline whenever it changes. It
// must never run on a host: it mounts over /boot.
func TestKLPAgentGuest(t *testing.T) {
	if os.Getenv("GRAFT_KLP_AGENT_GUEST") != "1" {
		t.Skip("runs only inside the QEMU guest (GRAFT_KLP_AGENT_GUEST=1)")
	}
	for _, m := range []struct{ dev, dir, fstype string }{
		{"/dev/vda1", "/boot", "vfat"}, {"/dev/vda4", "/var/lib/graft", "ext4"},
	} {
		for i := 0; i < 500; i++ {
			if _, err := os.Stat(m.dev); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(m.dev, m.dir, m.fstype, unix.MS_NOATIME, ""); err != nil {
			t.Fatalf("mount %s: %v", m.dev, err)
		}
	}
	f, err := os.Open("/klp/" + klpStallMod + ".ko")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		t.Fatalf("loading %s: %v", klpStallMod, err)
	}
	f.Close()
	go func() {
		last := ""
		for {
			b, _ := os.ReadFile("/proc/cmdline")
			line, _, _ := strings.Cut(string(b), "\n")
			if line != last {
				fmt.Printf("klp-guest: cmdline: %s\n", line)
				last = line
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	cmd := exec.Command("/klp/graft-agent", "run", "--config", "/var/lib/graft/agent.conf")
	cmd.Stdout, cmd.Stderr, cmd.Dir = os.Stdout, os.Stderr, "/"
	err = cmd.Run()
	unix.Sync()
	t.Fatalf("graft-agent exited: %v", err)
}

// guestConsole collects a guest's console lines as they arrive.
type guestConsole struct {
	mu     sync.Mutex
	lines  []string
	buf    bytes.Buffer
	change chan struct{}
	t      *testing.T
}

func newGuestConsole(t *testing.T) *guestConsole {
	return &guestConsole{change: make(chan struct{}), t: t}
}

func (c *guestConsole) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	for {
		line, err := c.buf.ReadString('\n')
		if err != nil {
			c.buf.WriteString(line)
			break
		}
		line = strings.TrimRight(line, "\r\n")
		c.lines = append(c.lines, line)
		if os.Getenv("GRAFT_RIG_CONSOLE") != "" {
			c.t.Log("console │ " + line)
		}
	}
	close(c.change)
	c.change = make(chan struct{})
	return len(p), nil
}

// waitCmdline waits for the guest to print /proc/cmdline with want in it,
// on or after line from.
func (c *guestConsole) waitCmdline(ctx context.Context, from int, want string) (int, error) {
	for {
		c.mu.Lock()
		lines, ch := c.lines, c.change
		c.mu.Unlock()
		for i := from; i < len(lines); i++ {
			if m := reCmdline.FindStringSubmatch(lines[i]); m != nil && strings.Contains(m[1], want) {
				return i + 1, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("no /proc/cmdline with %q: %w\n%s", want, ctx.Err(), strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
}

// cmdlines returns the /proc/cmdline lines printed from line from on.
func (c *guestConsole) cmdlines(from int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines[min(from, len(c.lines)):] {
		if m := reCmdline.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

func (c *guestConsole) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.lines) }

func (c *guestConsole) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// klpModules builds the test modules against Debian's amd64 kernel.
func klpModules(t *testing.T, ctx context.Context, k *Kernel) map[string][]byte {
	out := map[string][]byte{}
	for _, m := range []string{klpA, klpB, klpStallMod, klpStallLive} {
		ko, err := BuildModule(ctx, k, filepath.Join("..", "..", "agent", "klp", "testdata", m))
		if err != nil {
			t.Fatal(err)
		}
		if out[m], err = os.ReadFile(ko); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// kpatch is one kernel patch of a test release.
type kpatch struct {
	module  []byte
	name    string
	release string
	replace bool
}

// publishLive publishes a release for board: its kernel patches (built
// with tools/fleet/release as graft-fleet release add does) and, when img
// is set, the fallback image.
func (w *world) publishLive(name string, seq uint64, board, arch string, img []byte, patches ...kpatch) {
	t := w.t
	m := release.NewManifest(release.Spec{Name: name, Version: fmt.Sprintf("%d.0.0", seq), Sequence: seq, Boards: []string{board}, Arch: arch})
	fallback := ""
	if img != nil {
		fallback = "rootfs"
		target := path.Join("releases", name, "rootfs.img")
		if _, err := w.repo.AddTarget(target, bytes.NewReader(img), nil); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(img)
		m.Components = append(m.Components, manifest.Component{Kind: manifest.KindImage, Name: "rootfs", Image: &manifest.Image{
			SlotGroup: "rootfs", Target: target, Size: uint64(len(img)), SHA256: sum[:]}})
	}
	for _, p := range patches {
		c, lt, err := release.KernelPatchComponent(name, release.KernelPatch{Module: p.module, KernelRelease: p.release, PatchName: p.name, Replace: p.replace}, fallback)
		if errors.Is(err, release.ErrInvalidSpec) {
			// Bad input on purpose (not a module): past the fleet tool's
			// check, as a hostile or broken publisher could.
			sum := sha256.Sum256(p.module)
			lt = release.LiveTarget{Name: release.KernelPatchTarget(name, p.name), Data: p.module}
			c = manifest.Component{Kind: manifest.KindKernelPatch, Name: p.name, KernelPatch: &manifest.KernelPatch{
				Target: lt.Name, SHA256: sum[:], Release: p.release, Name: p.name, Fallback: fallback}}
		} else if err != nil {
			t.Fatal(err)
		}
		if _, err := w.repo.AddTarget(lt.Name, bytes.NewReader(lt.Data), nil); err != nil {
			t.Fatal(err)
		}
		m.Components = append(m.Components, c)
	}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	w.repo.PublishRaw(t, name, raw)
}

// amd64Guest is the qemu-virt-amd64 device of TestKLPAgentAMD64.
type amd64Guest struct {
	dir, disk string
	kernel    *Kernel
	files     []File
}

// boot starts the guest with slot booted; QEMU exits when the guest
// reboots (the test then plays GRUB) or when ctx ends.
func (g *amd64Guest) boot(ctx context.Context, t *testing.T, booted string, con *guestConsole) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := RunGuest(ctx, g.dir, RunSpec{
			Arch: AMD64, Kernel: g.kernel, Files: g.files,
			Argv:    []string{"/klp/rig.test", "-test.run", "^TestKLPAgentGuest$", "-test.v"},
			Env:     []string{"GRAFT_KLP_AGENT_GUEST=1"},
			Cmdline: "rauc.slot=" + booted,
			Console: con,
			Timeout: 6 * time.Minute,
			Extra:   []string{"-drive", "if=none,file=" + g.disk + ",format=raw,id=hd0", "-device", "virtio-blk-pci,drive=hd0"},
		})
		done <- err
	}()
	return done
}

// TestKLPAgentAMD64 is the kernel live-patch scenario on one amd64 device
// (Debian's kernel, livepatch modules built against its headers):
//
//  1. bad input — a module without livepatch=Y, a patch for another
//     kernel, a file that is no module — is refused, nothing loaded;
//  2. graft_klp_a goes live: /proc/cmdline changes;
//  3. graft_klp_b, cumulative, replaces it; then graft_klp_a again,
//     its manifest claiming replace: the kernel stacks it on b (the
//     module has no .replace), and the agent says so instead of
//     believing the manifest;
//  4. graft_klp_a again with graft_klp_stall: a is found applied
//     (stacked on b), the stall hits the transition deadline and is
//     reversed, a is reverted, and the engine falls back to the image:
//     slot B written, the try armed in grubenv, reboot;
//  5. the test plays GRUB and boots slot B with the same kernel: the
//     agent reloads graft_klp_b and commits the image.
func TestKLPAgentAMD64(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the test modules are built natively for amd64")
	}
	for _, tool := range []string{"qemu-system-x86_64", "make", "gcc-12", "sfdisk", "mkfs.vfat", "mkfs.ext4", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := FetchKernel(ctx, AMD64, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	mods := klpModules(t, ctx, k)
	dir := t.TempDir()
	g := &amd64Guest{dir: dir, disk: filepath.Join(dir, "disk.img"), kernel: k}
	agent, testBin := filepath.Join(dir, "graft-agent"), filepath.Join(dir, "rig.test")
	if err := BuildGo(ctx, AMD64, "github.com/graft-dev/graft/agent/cmd/graft-agent", agent); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", testBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	stallKo := filepath.Join(dir, klpStallMod+".ko")
	os.WriteFile(stallKo, mods[klpStallMod], 0o644)
	g.files = []File{{Path: "/klp/rig.test", Src: testBin}, {Path: "/klp/graft-agent", Src: agent}, {Path: "/klp/" + klpStallMod + ".ko", Src: stallKo}}

	w := newWorld(t)
	const id = "qemu-amd64-klp"
	root, err := w.repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	broker, _ := GuestURL(w.broker.URL())
	repoURL, _ := GuestURL(w.repo.URL)
	c := config.Default()
	c.DeviceID, c.Board, c.Broker, c.KeepAlive = id, "qemu-virt-amd64", broker, 10*time.Second
	c.MetadataURL, c.TargetsURL = repoURL+"/metadata", repoURL+"/targets"
	c.TransitionTimeout = 10 * time.Second
	conf, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	slotA := filepath.Join(dir, "slot-a.img")
	os.WriteFile(slotA, agenttest.Image("v1", true, 1<<20), 0o644)
	disk, err := BuildAMD64Disk(ctx, AMD64DiskSpec{SlotA: slotA, Data: map[string][]byte{"agent.conf": conf, "tuf/root.json": root}}, g.disk)
	if err != nil {
		t.Fatal(err)
	}

	con := newGuestConsole(t)
	start := time.Now()
	vmctx, vmstop := context.WithCancel(ctx)
	defer vmstop()
	done := g.boot(vmctx, t, "A", con)
	fail := func(format string, args ...any) {
		t.Helper()
		lines := strings.Split(con.text(), "\n")
		t.Fatalf(format+"\nconsole (end):\n%s", append(args, strings.Join(lines[max(0, len(lines)-60):], "\n"))...)
	}
	wait := func(d time.Duration, ok func(transport.Status) bool) transport.Status {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		st, err := w.fleet.WaitFor(wctx, id, ok)
		if err != nil {
			fail("%v", err)
		}
		return st
	}
	wait(3*time.Minute, func(s transport.Status) bool { return s.State == transport.StateIdle })
	orig := con.cmdlines(0)
	if len(orig) == 0 || !strings.Contains(orig[0], "rauc.slot=A") {
		fail("guest printed no /proc/cmdline: %q", orig)
	}
	t.Logf("booted slot A, agent online after %.1f s", time.Since(start).Seconds())

	// 1. Bad input: refused before finit_module, nothing loaded.
	seq := uint64(1)
	bad := []struct {
		name  string
		patch kpatch
		want  transport.State
	}{
		{"module without livepatch=Y", kpatch{mods[klpStallMod], klpStallMod, k.Release, false}, transport.StateFailed},
		{"patch for another kernel", kpatch{mods[klpA], klpA, "6.1.0-1-amd64", false}, transport.StateRefused},
		{"not a module", kpatch{[]byte("graft_klp_a livepatch=Y vermagic=" + k.Release + "\n"), klpA, k.Release, false}, transport.StateFailed},
	}
	for _, b := range bad {
		seq++
		name := fmt.Sprintf("bad%d", seq)
		w.publishLive(name, seq, "qemu-virt-amd64", "amd64", nil, b.patch)
		w.fleet.Notify(t, id, name)
		st := wait(time.Minute, func(s transport.Status) bool {
			return s.Release == name && (agenttest.Final(s) || s.State == transport.StateRefused)
		})
		if st.State != b.want || st.Reason == "" {
			fail("%s: %+v, want %s with a reason", b.name, st, b.want)
		}
		t.Logf("bad input, %s: %s — %s", b.name, st.State, st.Reason)
	}
	if got := con.cmdlines(0); len(got) != 1 {
		fail("/proc/cmdline changed on bad input: %q", got)
	}

	img := agenttest.Image("v5", true, 2<<20)
	live := func(name string, want string, from int, patches ...kpatch) int {
		t.Helper()
		seq++
		w.publishLive(name, seq, "qemu-virt-amd64", "amd64", img, patches...)
		w.fleet.Notify(t, id, name)
		st := wait(2*time.Minute, func(s transport.Status) bool { return s.Release == name && agenttest.Final(s) })
		if st.State != transport.StateCommitted || st.Path != "live" || st.Slot != "A" {
			fail("%s: %+v, want committed live in slot A", name, st)
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		n, err := con.waitCmdline(cctx, from, want)
		if err != nil {
			fail("%s: %v", name, err)
		}
		t.Logf("%s committed live: %s; /proc/cmdline now %q", name, st.Reason, con.cmdlines(n - 1)[0])
		return n
	}
	// 2. and 3.
	at := live("v5", "graft-klp-a:", con.len(), kpatch{mods[klpA], klpA, k.Release, false})
	at = live("v6", "graft-klp-b:", at, kpatch{mods[klpB], klpB, k.Release, true})
	// 3b. What the kernel did, not the manifest: a again, its manifest
	// claiming replace, but the module was not built with .replace: the
	// kernel stacks it on b, and the agent records and reports that.
	live("v6b", "graft-klp-a:", at, kpatch{mods[klpA], klpA, k.Release, true})
	for rel, want := range map[string]string{"v6": "replaced [graft_klp_a]", "v6b": "stacked (the manifest said replace"} {
		found := false
		for _, s := range w.fleet.Of(id) {
			found = found || s.Release == rel && s.State == transport.StateCommitted && strings.Contains(s.Reason, want)
		}
		if !found {
			fail("%s: no committed status saying %q (what the kernel did)", rel, want)
		}
	}

	// 4. a stacks on b, the stall is reversed, a reverted: the image.
	seq++
	w.publishLive("v7", seq, "qemu-virt-amd64", "amd64", img, kpatch{mods[klpA], klpA, k.Release, false}, kpatch{mods[klpStallLive], klpStallLive, k.Release, false})
	w.fleet.Notify(t, id, "v7")
	st := wait(3*time.Minute, func(s transport.Status) bool { return s.Release == "v7" && s.State == transport.StateRebooting })
	if st.Path != "ab" {
		fail("v7: %+v, want the A/B path after the stall", st)
	}
	for _, s := range w.fleet.Of(id) {
		if s.Release == "v7" && s.Path == "ab" && s.State == transport.StateDownloading && s.Reason != "" {
			t.Logf("v7 fell back to the image: %s", s.Reason)
			break
		}
	}
	if got := con.cmdlines(at); len(got) < 2 || !strings.Contains(got[0], "graft-klp-a:") || !strings.Contains(got[len(got)-1], "graft-klp-b:") {
		fail("v7: /proc/cmdline went %q, want marker A (applied) then B again (A reverted)", got)
	}
	select {
	case err := <-done:
		t.Logf("guest rebooted (QEMU exits on reboot): %v", errors.Unwrap(err) != nil)
	case <-time.After(2 * time.Minute):
		fail("v7: the guest did not reboot")
	}
	times := reKLPTimes.FindAllStringSubmatch(con.text(), -1)

	// 5. GRUB's part: pick the slot as the boot script does.
	env, err := disk.GrubEnv()
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOT_ORDER"] != "B A" || env["BOOT_B_LEFT"] != "1" {
		t.Fatalf("grubenv %v: want slot B armed for one try", env)
	}
	if slotHash(t, disk, "B", len(img)) != sha256.Sum256(img) {
		t.Fatal("slot B does not hold the image")
	}
	s, err := slot.ParseState(env, []string{"A", "B"})
	if err != nil {
		t.Fatal(err)
	}
	next, st2, _ := s.Select(3)
	st2.Apply(env)
	if err := disk.SetGrubEnv(env); err != nil {
		t.Fatal(err)
	}
	con2 := newGuestConsole(t)
	done = g.boot(vmctx, t, next, con2)
	st = wait(3*time.Minute, func(s transport.Status) bool { return s.Release == "v7" && agenttest.Final(s) })
	if st.State != transport.StateCommitted || st.Slot != "B" || st.Path != "ab" {
		fail("v7 after the reboot: %+v, want committed in slot B", st)
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if _, err := con2.waitCmdline(cctx, 0, "graft-klp-b:"); err != nil {
		fail("after the reboot into the same kernel: %v", err)
	}
	if !strings.Contains(con2.text(), "kernel live patch reloaded") {
		fail("the agent did not say it reloaded graft_klp_b")
	}
	t.Logf("rebooted into slot B, same kernel: graft_klp_b reloaded, v7 committed; whole scenario %.1f s", time.Since(start).Seconds())
	times = append(times, reKLPTimes.FindAllStringSubmatch(con2.text(), -1)...)
	for _, m := range times {
		kt := m[5] + " (enabling → patching complete)"
		switch {
		case m[5] == "0s":
			kt = "not in the kernel log"
		case m[6] == "true":
			kt += ", complete before finit_module returned (inside module init)"
		default:
			kt += ", complete after finit_module returned"
		}
		t.Logf("klp-bench: %s agent checks %s; finit_module %s; sysfs read as done %s after finit_module returned; kernel transition by its log %s",
			m[1], m[2], m[3], m[4], kt)
	}
	vmstop()
	<-done
}

var _ io.Writer = (*guestConsole)(nil)

// TestARM64KernelPatchTakesAB: Debian's arm64 kernel has no livepatch
// support, so a release carrying a kernel live patch and its fallback
// image takes the A/B path under the real U-Boot rig, and the report says
// why.
func TestARM64KernelPatchTakesAB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	w := newWorld(t)
	const id = "qemu-arm64-klp"
	g := w.device(ctx, ARM64, id)
	p, err := g.SlotImage(ctx, "v2", false)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// An ELF relocatable as far as the fleet tool looks; the agent never
	// fetches it, since this kernel cannot load live patches at all.
	ko := make([]byte, 64)
	copy(ko, "\x7fELF\x02\x01\x01")
	ko[16] = 1
	w.publishLive("v2", 2, g.Board, "arm64", img, kpatch{ko, "graft_klp_a", g.Kernel.Release, false})

	vm, err := g.Boot(ctx, consoleOut(t))
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nconsole (end):\n%s", append(args, tail(vm.Lines(), 60))...)
	}
	octx, ocancel := context.WithTimeout(ctx, 3*time.Minute)
	defer ocancel()
	if _, err := w.fleet.WaitFor(octx, id, func(s transport.Status) bool { return s.State == transport.StateIdle }); err != nil {
		fail("device never came online: %v", err)
	}
	w.fleet.Notify(t, id, "v2")
	st, err := w.fleet.WaitFinal(ctx, id, "v2")
	if err != nil {
		fail("v2: %v", err)
	}
	if st.State != transport.StateCommitted || st.Slot != "B" || st.Path != "ab" {
		fail("v2 ended %+v, want committed in slot B on the A/B path", st)
	}
	why := ""
	for _, s := range w.fleet.Of(id) {
		if s.Release == "v2" && s.State == transport.StateDownloading && s.Path == "ab" {
			why = s.Reason
			break
		}
	}
	if why == "" {
		fail("no report of why v2 took the A/B path")
	}
	t.Logf("arm64 (%s): v2 took the A/B path: %s", g.Kernel.Release, why)
}
