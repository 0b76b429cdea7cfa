package rig

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/transport"
)

// envWrite is one write of an environment copy, seen on the disk image.
type envWrite struct {
	copy     int // 0 or 1
	at       time.Time
	old, new []byte
}

// envWatcher polls both environment copies of a running guest's disk and
// records every write: QEMU writes U-Boot's "virtio write" and the
// guest's fsync'd writes straight into the image file.
type envWatcher struct {
	mu     sync.Mutex
	writes []envWrite
	stop   chan struct{}
	done   chan struct{}
}

func watchEnv(d *Disk) *envWatcher {
	w := &envWatcher{stop: make(chan struct{}), done: make(chan struct{})}
	var last [2][]byte
	for i := range last {
		last[i], _ = d.EnvCopy(i)
	}
	go func() {
		defer close(w.done)
		for {
			for i := range last {
				b, err := d.EnvCopy(i)
				if err == nil && !bytes.Equal(b, last[i]) {
					now := time.Now()
					w.mu.Lock()
					// A poll can read a copy while QEMU is writing it:
					// changes of one copy close together are one write.
					if n := len(w.writes); n > 0 && w.writes[n-1].copy == i && now.Sub(w.writes[n-1].at) < 100*time.Millisecond {
						w.writes[n-1].new = b
					} else {
						w.writes = append(w.writes, envWrite{copy: i, at: now, old: last[i], new: b})
					}
					w.mu.Unlock()
					last[i] = b
				}
			}
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return w
}

// close stops the watcher after one last look and returns the writes.
func (w *envWatcher) close() []envWrite {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// waitWrite waits for a write after since whose new environment
// satisfies match (any write when match is nil).
func (w *envWatcher) waitWrite(ctx context.Context, since time.Time, match func(bootenv.Env) bool) (envWrite, bool) {
	for {
		w.mu.Lock()
		for _, wr := range w.writes {
			env, _, err := bootenv.DecodeUBoot(wr.new, true)
			if wr.at.After(since) && (match == nil || err == nil && match(env)) {
				w.mu.Unlock()
				return wr, true
			}
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return envWrite{}, false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// cutPhase is a moment of the update at which the power is cut.
type cutPhase struct {
	name string
	// trigger waits until the phase is under way in this boot.
	trigger func(ctx context.Context, c *cutRun) error
	// env: the cut falls on the next environment write after the trigger.
	env bool
	// envWait is how long the next environment write may take to come.
	envWait time.Duration
	// match picks the phase's write by what it writes (nil: the first
	// write after the trigger); slack is how long before the trigger it
	// may have landed (a status reaches the fleet after the device moved on).
	match func(bootenv.Env) bool
	slack time.Duration
	// tear: the write is torn every time, not half of the time.
	tear bool
	// The cut comes minDelay to maxDelay after the trigger (or the write).
	minDelay, maxDelay time.Duration
	slow               bool // throttle the target download
}

// cutRun is the state of the power-cut scenario that the phases read.
type cutRun struct {
	w         *world
	g         *Guest
	vm        *VM
	id        string
	current   string
	bootStart int64
}

func consoleTrigger(re string) func(context.Context, *cutRun) error {
	pattern := regexp.MustCompile(re)
	return func(ctx context.Context, c *cutRun) error {
		_, err := c.vm.WaitFor(ctx, pattern)
		return err
	}
}

func statusTrigger(ok func(transport.Status) bool) func(context.Context, *cutRun) error {
	return func(ctx context.Context, c *cutRun) error {
		_, err := c.w.fleet.WaitFor(ctx, c.id, func(s transport.Status) bool {
			return s.Time >= c.bootStart && s.Release == c.current && ok(s)
		})
		return err
	}
}

var (
	// At 1 MiB/s a download crosses a 4 MiB checkpoint (tuf.Download's
	// fsync and journal step) 3 to 6 s after its first progress report.
	phaseDownload = cutPhase{name: "download", slow: true, minDelay: 3 * time.Second, maxDelay: 6 * time.Second,
		trigger: statusTrigger(func(s transport.Status) bool { return s.State == transport.StateDownloading && s.Done > 0 })}
	phaseSlotWrite = cutPhase{name: "slot write", maxDelay: 3 * time.Second,
		trigger: consoleTrigger(`msg="writing slot"`)}
	phaseArm = cutPhase{name: "agent's env write arming the try", env: true, envWait: time.Minute, maxDelay: 40 * time.Millisecond,
		match:   firstSlotLeft("1"),
		trigger: consoleTrigger(`msg="writing slot"`)}
	phaseUBoot = cutPhase{name: "U-Boot's env write", env: true, envWait: 5 * time.Second, maxDelay: 20 * time.Millisecond,
		trigger: consoleTrigger(`graft-boot: saving env copy`)}
	phaseCommit = cutPhase{name: "agent's env write marking the new slot good", env: true, envWait: time.Minute, maxDelay: 40 * time.Millisecond,
		match: firstSlotLeft("3"), slack: 2 * time.Second,
		trigger: statusTrigger(func(s transport.Status) bool { return s.State == transport.StateVerifying })}
	phaseStart = cutPhase{name: "agent's env write at start", env: true, tear: true, envWait: 5 * time.Second, maxDelay: 40 * time.Millisecond,
		trigger: consoleTrigger(`graft-agent started`)}
)

// firstSlotLeft matches an environment whose first slot in BOOT_ORDER
// has left attempts: "1" is the try the agent arms, "3" the slot it marks
// good.
func firstSlotLeft(left string) func(bootenv.Env) bool {
	return func(env bootenv.Env) bool {
		order := strings.Fields(env["BOOT_ORDER"])
		return len(order) > 1 && env["BOOT_"+order[0]+"_LEFT"] == left
	}
}

// TestARM64PowerCuts is scenario 3: QEMU is killed at random moments of
// updates: during a slow download (so one download spans several boots),
// while the slot is written, and during every kind of environment write —
// U-Boot's at each boot, the agent's at start, when it arms the try and
// when it marks the new slot good. A cut during an environment write
// tears the copy being written at a random byte half of the time, and
// always in the two cuts after the commit (a SIGKILLed QEMU cannot tear
// one virtio request, a power cut can tear a flash write); else the write
// completes. After every cut the next boot
// must reach the agent, in the slot of the committed release unless an
// update had armed a try; the journal's committed release never goes
// back; the update in flight completes on the agent's retries.
// GRAFT_RIG_SEED replays a run.
func TestARM64PowerCuts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GRAFT_RIG_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("power-cut seed %d (GRAFT_RIG_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	w := newWorld(t)
	c := &cutRun{w: w, id: "qemu-cuts"}
	c.g = w.device(ctx, ARM64, c.id)
	seq := uint64(2)
	var img []byte
	release := func() {
		c.current = "v" + strconv.FormatUint(seq, 10)
		img = w.release(ctx, c.g, c.current, seq, false)
		w.fleet.Notify(t, c.id, c.current)
	}
	release()
	const slowRate = 1 << 20 // bytes per second in the download phases

	// The last two come after the commit and tear their write: U-Boot's
	// first save after the commit (the committed release must survive
	// it), then the agent's at start.
	uBootTorn := phaseUBoot
	uBootTorn.tear = true
	phases := []cutPhase{phaseDownload, phaseDownload, phaseSlotWrite, phaseArm, phaseUBoot,
		phaseCommit, uBootTorn, phaseStart}
	var outcomes []string
	var committed journal.Release // the journal's committed release, as read between boots
	for cut := 0; ; cut++ {
		before, hasJournal := readJournal(c.g.Disk)
		if hasJournal && before.Installed.Sequence < committed.Sequence {
			t.Fatalf("cut %d: the journal's committed release went back from %s to %s", cut, committed.Name, before.Installed.Name)
		}
		if hasJournal {
			committed = before.Installed
		}
		c.bootStart = time.Now().UnixMilli()
		var ph cutPhase
		if cut < len(phases) {
			ph = phases[cut]
		}
		w.repo.BytesPerSecond.Store(map[bool]int64{true: slowRate}[ph.slow])
		vm, err := c.g.Boot(ctx, consoleOut(t))
		if err != nil {
			t.Fatal(err)
		}
		c.vm = vm
		watch := watchEnv(c.g.Disk)
		fail := func(format string, args ...any) {
			t.Helper()
			vm.Kill()
			vm.Wait()
			watch.close()
			t.Fatalf(format+"\ncuts so far:\n%s\nconsole (end):\n%s", append(args, strings.Join(outcomes, "\n"), tail(vm.Lines(), 60))...)
		}
		// Every boot reaches the agent, in a good slot.
		if ph.name != phaseUBoot.name {
			if _, err := vm.WaitFor(ctx, reAgentUp); err != nil {
				fail("boot after cut %d did not reach the agent: %v", cut, err)
			}
			if got := boots(vm); hasJournal {
				if want := expectedSlot(before); want != "" && got[0] != want {
					fail("boot after cut %d: U-Boot booted slot %s, but the journal says %s (%s) with no try armed: the committed release was lost", cut, got[0], want, before.Installed.Name)
				}
			}
		}
		if cut >= len(phases) {
			// Let this boot settle: the release committed, or the agent
			// idle with it installed.
			st, err := w.fleet.WaitFor(ctx, c.id, func(s transport.Status) bool {
				return s.Time >= c.bootStart && (s.Release == c.current && agenttest.Final(s) || s.State == transport.StateIdle && s.Installed == c.current)
			})
			if err != nil || st.State == transport.StateRolledBack || st.State == transport.StateFailed {
				fail("after %d cuts %s did not complete: %+v %v", cut, c.current, st, err)
			}
			vm.Kill()
			vm.Wait()
			watch.close()
			final, _ := lastFinal(w.fleet.Of(c.id), c.current)
			t.Logf("after %d power cuts %s is committed in slot %s; the cuts:\n%s", cut, c.current, final.Slot, strings.Join(outcomes, "\n"))
			other := map[string]string{"A": "B", "B": "A"}[final.Slot]
			checkDisk(t, c.g.Disk, final.Slot+" "+other, final.Slot, img)
			if j, _ := readJournal(c.g.Disk); j.Installed.Name != c.current || j.Update != nil {
				t.Errorf("journal after the last boot: %+v", j)
			}
			return
		}

		// Wait for the phase; whenever the release in flight ends, give
		// the device the next one so there is always work to cut into.
		var werr error
		var triggered time.Time
		for deadline := time.Now().Add(90 * time.Second); ; {
			if st, ok := lastFinal(w.fleet.Of(c.id), c.current); ok {
				t.Logf("%s ended %s; releasing the next one", c.current, st.State)
				seq++
				release()
			}
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			werr = ph.trigger(pctx, c)
			pcancel()
			// Console lines come before the writes they announce.
			triggered = time.Now().Add(-ph.slack)
			if werr == nil || time.Now().After(deadline) {
				break
			}
		}
		var hit envWrite
		wrote := false
		if ph.env && werr == nil {
			wctx, wcancel := context.WithTimeout(ctx, ph.envWait)
			hit, wrote = watch.waitWrite(wctx, triggered, ph.match)
			wcancel()
		}
		delay := ph.minDelay + time.Duration(rng.Int64N(int64(ph.maxDelay-ph.minDelay)+1))
		time.Sleep(delay)
		vm.Kill()
		vm.Wait()
		writes := watch.close()
		note := fmt.Sprintf("#%d %s +%dms (boots %v)", cut+1, ph.name, delay.Milliseconds(), boots(vm))
		switch {
		case werr != nil:
			note += " (phase not reached: cut anyway)"
		case ph.env && !wrote:
			note += " (no environment write followed: cut anyway)"
		case ph.env:
			// The cut hit the last write since the phase's.
			for _, wr := range writes {
				if !wr.at.Before(hit.at) {
					hit = wr
				}
			}
			note += fmt.Sprintf(" hit the write of copy %d", hit.copy+1)
			at := -1
			if ph.tear || rng.IntN(2) == 0 {
				at = tearCopy(t, c.g.Disk, hit, rng)
			}
			switch {
			case at >= 0:
				note += fmt.Sprintf(", torn at byte %d", at)
			case ph.tear:
				note += ", which changed only the copy's counter byte (a tear leaves it valid)"
			default:
				note += ", which completed"
			}
		case ph.slow:
			var total int64
			for _, s := range w.fleet.Of(c.id) {
				if s.Release == c.current && s.State == transport.StateDownloading && s.Total > 0 {
					total = s.Total
				}
			}
			if j, ok := readJournal(c.g.Disk); ok && j.Update != nil {
				note += fmt.Sprintf(", %.1f of %.1f MiB journalled", float64(j.Update.Offset)/(1<<20), float64(total)/(1<<20))
			}
		}
		note += " → " + envNote(c.g.Disk)
		outcomes = append(outcomes, note)
		t.Logf("power cut %s", note)
	}
}

// tearCopy leaves the copy wr wrote half written: new bytes up to a
// random byte between the first and the last that the write changed, the
// old bytes from there on, so the copy is neither the old nor the new
// one. It returns the byte, or -1 when the write changed a single byte
// and cannot be torn (it then counts as completed).
func tearCopy(t *testing.T, d *Disk, wr envWrite, rng *rand.Rand) int {
	t.Helper()
	first, last := -1, -1
	for i := range wr.new {
		if wr.new[i] != wr.old[i] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first == last {
		return -1
	}
	at := first + 1 + rng.IntN(last-first)
	torn := append(bytes.Clone(wr.new[:at]), wr.old[at:]...)
	if err := d.WriteEnvCopy(wr.copy, torn); err != nil {
		t.Fatal(err)
	}
	return at
}

// envNote describes both copies and the environment they give.
func envNote(d *Disk) string {
	var parts []string
	for i := range 2 {
		b, err := d.EnvCopy(i)
		if err != nil {
			parts = append(parts, fmt.Sprintf("copy %d unreadable", i+1))
			continue
		}
		if _, flags, err := bootenv.DecodeUBoot(b, true); err != nil {
			parts = append(parts, fmt.Sprintf("copy %d bad CRC", i+1))
		} else {
			parts = append(parts, fmt.Sprintf("copy %d flags %d", i+1, flags))
		}
	}
	env, err := d.Env()
	if err != nil {
		return strings.Join(parts, ", ") + ": " + err.Error()
	}
	return fmt.Sprintf("%s: BOOT_ORDER=%q A_LEFT=%s B_LEFT=%s", strings.Join(parts, ", "), env["BOOT_ORDER"], env["BOOT_A_LEFT"], env["BOOT_B_LEFT"])
}

// readJournal reads the agent's journal from the powered-off disk; false
// before the agent first wrote one.
func readJournal(d *Disk) (journal.Record, bool) {
	b, err := d.ReadData("journal.json")
	if err != nil {
		return journal.Record{}, false
	}
	dir, err := os.MkdirTemp("", "graft-journal-")
	if err != nil {
		return journal.Record{}, false
	}
	defer os.RemoveAll(dir)
	path := dir + "/journal.json"
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return journal.Record{}, false
	}
	j, err := journal.Open(path)
	if err != nil {
		return journal.Record{}, false
	}
	return j.Record(), true
}

// expectedSlot is the slot U-Boot must boot next given the journal: the
// committed release's (the slot the update started from while nothing is
// armed), or "" when a try may be armed and either slot may boot.
func expectedSlot(j journal.Record) string {
	u := j.Update
	if u == nil {
		return j.Installed.Slot
	}
	if u.Path == "live" {
		return u.From
	}
	switch u.Step {
	case journal.StepPlanned, journal.StepDownloading, journal.StepDownloaded, journal.StepInstalling, journal.StepInstalled:
		return u.From
	}
	return ""
}
