package klp

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guestSteps are TestGuest's subtests, in order; TestKLPInQEMU wants a
// PASS line for each.
var guestSteps = []string{"bad_input", "kernel_refusal", "load_and_revert", "replace", "stall", "kernel_health"}

// transitionDeadline is generous: TCG is slow, and a normal transition
// takes about a second there.
const transitionDeadline = 60 * time.Second

// TestGuest runs only inside the QEMU guest TestKLPInQEMU boots
// (GRAFT_KLP_GUEST=1): it loads real live patches into Debian's kernel.
// It must never run on a host.
func TestGuest(t *testing.T) {
	if os.Getenv("GRAFT_KLP_GUEST") != "1" {
		t.Skip("runs only inside the QEMU guest (GRAFT_KLP_GUEST=1)")
	}
	dir := os.Getenv("GRAFT_KLP_DIR")
	kos := map[string][]byte{}
	for _, m := range testModules {
		b, err := os.ReadFile(filepath.Join(dir, m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		kos[m] = b
	}
	s := &System{Logger: slog.New(slog.NewTextHandler(os.Stdout, nil))}
	release, err := uname()
	if err != nil {
		t.Fatal(err)
	}
	origCmdline := readFile(t, "/proc/cmdline")
	if strings.Contains(origCmdline, "graft-klp") {
		t.Fatalf("/proc/cmdline already patched: %q", origCmdline)
	}
	steps := map[string]func(t *testing.T){
		"bad_input": func(t *testing.T) {
			before := readFile(t, "/proc/modules")
			tests := []struct {
				name    string
				module  []byte
				opts    LoadOptions
				wantErr error
			}{
				{"module for another release", otherRelease(t, kos[modA], release), LoadOptions{}, ErrWrongKernel},
				{"component for another release", kos[modA], LoadOptions{Release: release + "x"}, ErrWrongKernel},
				{"plain module", kos[modStall], LoadOptions{}, ErrNotLivepatch},
				{"text file", []byte("graft_klp_a livepatch=Y vermagic=" + release + "\n"), LoadOptions{}, ErrNotModule},
				{"wrong name", kos[modA], LoadOptions{Name: modB}, ErrName},
			}
			for _, tt := range tests {
				res, err := s.Load(t.Context(), tt.module, tt.opts)
				if !errors.Is(err, tt.wantErr) || res != nil {
					t.Errorf("%s: Load = %v, %v; want %v", tt.name, res, err, tt.wantErr)
				}
				t.Logf("%s: refused: %v", tt.name, err)
			}
			if after := readFile(t, "/proc/modules"); after != before {
				t.Errorf("/proc/modules changed:\nbefore %s\nafter %s", before, after)
			}
			wantPatches(t, s)
		},
		"kernel_refusal": func(t *testing.T) {
			// Passes every check here, but its module_layout CRC is wrong:
			// the kernel refuses it, and the error carries errno and log.
			bad := badCRC(t, kos[modA])
			_, err := s.Load(t.Context(), bad, LoadOptions{Deadline: transitionDeadline})
			if !errors.Is(err, ErrLoad) || !errors.Is(err, syscall.ENOEXEC) {
				t.Fatalf("Load(bad CRC) = %v, want ErrLoad wrapping ENOEXEC", err)
			}
			t.Logf("refused by the kernel: %v", err)
			wantPatches(t, s)
			wantModule(t, modA, false)
		},
		"load_and_revert": func(t *testing.T) {
			res, err := s.Load(t.Context(), kos[modA], LoadOptions{Name: modA, Release: release, Deadline: transitionDeadline})
			if err != nil {
				t.Fatal(err)
			}
			logTimes(t, res)
			if got := readFile(t, "/proc/cmdline"); got != markerA+"\n" {
				t.Errorf("/proc/cmdline = %q, want marker A", got)
			}
			wantPatches(t, s, Patch{Name: modA, Enabled: true})
			if err := s.Revert(t.Context(), modA, transitionDeadline); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, "/proc/cmdline"); got != origCmdline {
				t.Errorf("/proc/cmdline after revert = %q, want %q", got, origCmdline)
			}
			wantPatches(t, s)
			wantModule(t, modA, false)
			if err := s.Revert(t.Context(), modA, transitionDeadline); !errors.Is(err, ErrNotLoaded) {
				t.Errorf("second Revert = %v, want ErrNotLoaded", err)
			}
		},
		"replace": func(t *testing.T) {
			resA, err := s.Load(t.Context(), kos[modA], LoadOptions{Deadline: transitionDeadline})
			if err != nil {
				t.Fatal(err)
			}
			logTimes(t, resA)
			resB, err := s.Load(t.Context(), kos[modB], LoadOptions{Deadline: transitionDeadline})
			if err != nil {
				t.Fatal(err)
			}
			logTimes(t, resB)
			if !slices.Equal(resB.Replaced, []string{modA}) {
				t.Errorf("Replaced = %q, want [%s]", resB.Replaced, modA)
			}
			if got := readFile(t, "/proc/cmdline"); got != markerB+"\n" {
				t.Errorf("/proc/cmdline = %q, want marker B", got)
			}
			wantPatches(t, s, Patch{Name: modB, Enabled: true})
			wantModule(t, modA, false)
			if err := s.Revert(t.Context(), modB, transitionDeadline); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, "/proc/cmdline"); got != origCmdline {
				t.Errorf("/proc/cmdline after revert = %q, want %q", got, origCmdline)
			}
			wantPatches(t, s)
			wantModule(t, modB, false)
		},
		"stall": func(t *testing.T) {
			// The target module goes in as it is (the agent loads only
			// live patches).
			if err := loadModule(modStall, kos[modStall], ""); err != nil {
				t.Fatalf("loading %s: %v", modStall, err)
			}
			t.Cleanup(func() {
				if err := s.Unload(modStall); err != nil {
					t.Errorf("unloading %s: %v", modStall, err)
				}
				wantModule(t, modStall, false)
			})
			start := time.Now()
			res, err := s.Load(t.Context(), kos[modStallLive], LoadOptions{Deadline: 5 * time.Second})
			if !errors.Is(err, ErrStalled) || res != nil {
				t.Fatalf("Load(%s) = %v, %v; want ErrStalled", modStallLive, res, err)
			}
			t.Logf("klp-times: stalled load reversed and unloaded after %v: %v", time.Since(start).Round(time.Millisecond), err)
			wantPatches(t, s)
			wantModule(t, modStallLive, false)
			wantModule(t, modStall, true)
		},
		"kernel_health": func(t *testing.T) {
			v, err := strconv.ParseUint(strings.TrimSpace(readFile(t, "/proc/sys/kernel/tainted")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			// Expected: K (live patched), O (out of tree), E (unsigned).
			// Not expected: D (oops), W (warning), L (soft lockup).
			const die, warn, lockup = 1 << 7, 1 << 9, 1 << 14
			t.Logf("tainted = %d", v)
			if v&(die|warn|lockup) != 0 {
				t.Errorf("kernel tainted %d: an oops, warning or soft lockup happened", v)
			}
			if v&(1<<15) == 0 {
				t.Errorf("kernel tainted %d lacks K: no live patch was ever applied", v)
			}
			if strings.Contains(readFile(t, "/proc/modules"), "graft_") {
				t.Errorf("a graft test module is still loaded:\n%s", readFile(t, "/proc/modules"))
			}
		},
	}
	for _, name := range guestSteps {
		if !t.Run(name, steps[name]) {
			t.FailNow()
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func logTimes(t *testing.T, r *Result) {
	t.Helper()
	t.Logf("klp-times: %s checks=%v finit_module=%v sysfs_wait=%v kernel_transition=%v done_in_init=%v replaced=%v",
		r.Name, r.CheckTime, r.FinitTime, r.SysfsWait, r.KernelTransition, r.DoneInInit, r.Replaced)
}

// wantPatches checks List against want (in order).
func wantPatches(t *testing.T, s *System, want ...Patch) {
	t.Helper()
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List = %+v, want %+v", got, want)
	}
}

// wantModule checks whether /sys/module/<name> exists.
func wantModule(t *testing.T, name string, loaded bool) {
	t.Helper()
	_, err := os.Stat(filepath.Join("/sys/module", name))
	if (err == nil) != loaded {
		t.Errorf("module %s loaded = %v, want %v", name, err == nil, loaded)
	}
}

// badCRC returns a copy of module with the CRC of module_layout in its
// __versions table changed.
func badCRC(t *testing.T, module []byte) []byte {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(module))
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section("__versions")
	if sec == nil {
		t.Fatal("module has no __versions")
	}
	// struct modversion_info { unsigned long crc; char name[56]; }
	const entry = 64
	out := bytes.Clone(module)
	for off := uint64(0); off+entry <= sec.Size; off += entry {
		at := sec.Offset + off
		name := out[at+8 : at+entry]
		if i := bytes.IndexByte(name, 0); i >= 0 && string(name[:i]) == "module_layout" {
			crc := binary.LittleEndian.Uint64(out[at:])
			binary.LittleEndian.PutUint64(out[at:], crc^0x5a5a5a5a)
			return out
		}
	}
	t.Fatal("no module_layout in __versions")
	return nil
}
