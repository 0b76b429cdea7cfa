package rig

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/mqtt/mqtttest"
	"github.com/graft-dev/graft/tuf/repo"
)

// The scenarios boot real Debian kernels under Debian's U-Boot in QEMU
// (TCG). They need qemu-system-arm, u-boot-qemu and the rig's tools
// (make test installs them) and the Debian archive for the kernels (cached
// outside the repository).

var (
	reBoot    = regexp.MustCompile(`graft-boot: slot ([AB]) `)
	reAgentUp = regexp.MustCompile(`graft-init: starting .*graft-agent|graft-agent started`)
)

// world is the fleet side: a real mosquitto and a TUF repository, both on
// the host's loopback, which the guest reaches at 10.0.2.2.
type world struct {
	t      *testing.T
	broker *mqtttest.Broker
	repo   *agenttest.Repo
	fleet  *agenttest.Fleet
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, broker: mqtttest.StartMosquitto(t), repo: agenttest.NewRepo(t, repo.Options{})}
	w.fleet = agenttest.Watch(t, w.broker.URL())
	w.fleet.OnStatus = func(s transport.Status) {
		line := fmt.Sprintf("fleet sees %s: %s %s", s.Device, s.State, s.Release)
		if s.Total > 0 {
			line += fmt.Sprintf(" %d%%", s.Done*100/s.Total)
		}
		if s.Slot != "" {
			line += " (booted " + s.Slot + ")"
		}
		if s.Reason != "" {
			line += " — " + s.Reason
		}
		t.Log(line)
	}
	return w
}

// device provisions a guest of arch whose slot A holds v1.
func (w *world) device(ctx context.Context, arch Arch, id string) *Guest {
	root, err := w.repo.Root()
	if err != nil {
		w.t.Fatal(err)
	}
	g, err := NewGuest(ctx, w.t.TempDir(), GuestSpec{
		Arch: arch, DeviceID: id, Broker: w.broker.URL(), RepoURL: w.repo.URL, Root: root, Logf: w.t.Logf,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return g
}

// release publishes a slot image as a release for g's board.
func (w *world) release(ctx context.Context, g *Guest, name string, seq uint64, failing bool) []byte {
	path, err := g.SlotImage(ctx, name, failing)
	if err != nil {
		w.t.Fatal(err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		w.t.Fatal(err)
	}
	_, goarch := Board(g.Arch)
	w.repo.Publish(w.t, agenttest.Release{Name: name, Sequence: seq, Boards: []string{g.Board}, Arch: goarch,
		Image: img, Compression: manifest.CompressionZstd})
	w.t.Logf("released %s: %.1f MiB slot image (kernel + initramfs%s), zstd in TUF", name, float64(len(img))/(1<<20),
		map[bool]string{true: " whose init fails", false: ""}[failing])
	return img
}

// console keeps the serial console in a buffer and, with
// GRAFT_RIG_CONSOLE=1, shows it.
func consoleOut(t *testing.T) io.Writer {
	if os.Getenv("GRAFT_RIG_CONSOLE") != "" {
		return prefixed{t: t}
	}
	return io.Discard
}

type prefixed struct{ t *testing.T }

func (p prefixed) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		p.t.Log("console │ " + l)
	}
	return len(b), nil
}

func boots(vm *VM) []string {
	var s []string
	for _, l := range vm.Lines() {
		if m := reBoot.FindStringSubmatch(l); m != nil {
			s = append(s, m[1])
		}
	}
	return s
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func slotHash(t *testing.T, d *Disk, name string, n int) [32]byte {
	r, err := d.Slot(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func journalOf(t *testing.T, d *Disk) journal.Record {
	b, err := d.ReadData("journal.json")
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/journal.json"
	os.WriteFile(path, b, 0o600)
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return j.Record()
}

// updateAndRollback is scenarios 1 and 2 on one device: v2 goes to slot B
// over MQTT and TUF, U-Boot tries it, health passes, B is marked good;
// then v3, whose init fails, is tried in A, panics (panic=1 resets), and
// U-Boot falls back to B; the agent reports the rollback and its reason.
func updateAndRollback(t *testing.T, arch Arch, withRollback bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	w := newWorld(t)
	id := "qemu-" + string(arch)
	g := w.device(ctx, arch, id)
	v2 := w.release(ctx, g, "v2", 2, false)

	start := time.Now()
	vm, err := g.Boot(ctx, consoleOut(t))
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	nctx, nstop := context.WithCancel(ctx)
	ndone := make(chan struct{})
	go func() { narrateBoots(nctx, t, vm); close(ndone) }()
	defer func() { nstop(); <-ndone }()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nconsole (end):\n%s", append(args, tail(vm.Lines(), 60))...)
	}
	octx, ocancel := context.WithTimeout(ctx, 3*time.Minute)
	_, err = w.fleet.WaitFor(octx, id, func(s transport.Status) bool { return s.State == transport.StateIdle })
	ocancel()
	if err != nil {
		fail("device never came online: %v", err)
	}
	t.Logf("scenario 1 (%s): booted slot A and online after %.1f s", arch, time.Since(start).Seconds())
	w.fleet.Notify(t, id, "v2")
	st, err := w.fleet.WaitFinal(ctx, id, "v2")
	if err != nil {
		fail("v2: %v", err)
	}
	if st.State != transport.StateCommitted || st.Slot != "B" || st.Path != "ab" {
		fail("v2 ended %+v, want committed in slot B", st)
	}
	s1 := time.Since(start)
	t.Logf("scenario 1 (%s): v2 committed in slot B after %.1f s; boots %v", arch, s1.Seconds(), boots(vm))
	if got := boots(vm); strings.Join(got, "") != "AB" {
		fail("boots %v, want A then B", got)
	}
	if !withRollback {
		vm.Kill()
		vm.Wait()
		checkDisk(t, g.Disk, "B A", "B", v2)
		if j := journalOf(t, g.Disk); j.Installed.Name != "v2" || j.Installed.Slot != "B" || j.Update != nil {
			t.Errorf("journal on the data partition: %+v", j)
		}
		return
	}

	w.release(ctx, g, "v3", 3, true)
	start2 := time.Now()
	n := len(boots(vm))
	w.fleet.Notify(t, id, "v3")
	st, err = w.fleet.WaitFinal(ctx, id, "v3")
	if err != nil {
		fail("v3: %v", err)
	}
	if st.State != transport.StateRolledBack || st.Slot != "B" || st.Reason == "" {
		fail("v3 ended %+v, want rolled back to slot B with a reason", st)
	}
	got := boots(vm)[n:]
	t.Logf("scenario 2 (%s): v3 rolled back after %.1f s; boots %v; reason: %s", arch, time.Since(start2).Seconds(), got, st.Reason)
	if strings.Join(got, "") != "ABAB" {
		fail("boots after v3 %v, want A (tried once, panics), B, A again (no verdict yet), B", got)
	}
	if !slicesContain(vm.Lines(), "graft-init: this image is built to fail") {
		fail("v3's init never ran in slot A")
	}
	vm.Kill()
	vm.Wait()
	checkDisk(t, g.Disk, "B A", "B", v2)
	if j := journalOf(t, g.Disk); j.Installed.Name != "v2" || j.RolledBack != 3 || j.Update != nil {
		t.Errorf("journal on the data partition: %+v", j)
	}
}

var reNarrate = regexp.MustCompile(`graft-boot: slot|built to fail|Kernel panic - not syncing|graft-init: starting /bin`)

// narrateBoots logs the console lines that tell the boot story: which
// slot U-Boot picked, panics, the agent starting.
func narrateBoots(ctx context.Context, t *testing.T, vm *VM) {
	seen := 0
	for ctx.Err() == nil {
		lines := vm.Lines()
		for _, l := range lines[seen:] {
			if reNarrate.MatchString(l) {
				t.Log("console: " + strings.TrimSpace(l))
			}
		}
		seen = len(lines)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func slicesContain(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// checkDisk reads the powered-off disk: boot order, the good slot's
// attempts, and the good slot's bytes.
func checkDisk(t *testing.T, d *Disk, order, good string, img []byte) {
	t.Helper()
	env, err := d.Env()
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOT_ORDER"] != order || env["BOOT_"+good+"_LEFT"] != "3" {
		t.Errorf("uboot.env %v: want BOOT_ORDER %q and slot %s with 3 attempts", env, order, good)
	}
	if slotHash(t, d, good, len(img)) != sha256.Sum256(img) {
		t.Errorf("slot %s does not hold the released image", good)
	}
}

// TestARM64UpdateAndRollback is scenarios 1 and 2.
func TestARM64UpdateAndRollback(t *testing.T) { updateAndRollback(t, ARM64, true) }

// TestARMv7Update is scenario 4: scenario 1 on qemu-system-arm -M virt
// with Debian's armmp kernel and U-Boot qemu_arm.
func TestARMv7Update(t *testing.T) { updateAndRollback(t, ARMHF, false) }

// lastFinal returns the final status of release, if it has one.
func lastFinal(events []transport.Status, release string) (transport.Status, bool) {
	for _, s := range events {
		if s.Release == release && agenttest.Final(s) {
			return s, true
		}
	}
	return transport.Status{}, false
}
