package slot_test

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/agent/slot/slottest"
)

var ab = []string{"A", "B"}

func st(order string, left map[string]int) slot.State {
	return slot.State{Order: strings.Fields(order), Left: left}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		slots   []string
		want    slot.State
		wantVar string // non-empty: expect a *StateError for this variable
		wantErr error
	}{
		{name: "empty env gives defaults", env: map[string]string{}, slots: ab,
			want: st("A B", map[string]int{"A": 3, "B": 3})},
		{name: "empty values are unset, as in the script", env: map[string]string{"BOOT_ORDER": " ", "BOOT_A_LEFT": ""}, slots: ab,
			want: st("A B", map[string]int{"A": 3, "B": 3})},
		{name: "values as RAUC writes them", env: map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}, slots: ab,
			want: st("B A", map[string]int{"A": 3, "B": 0})},
		{name: "hex as U-Boot setexpr writes it", env: map[string]string{"BOOT_A_LEFT": "f", "BOOT_B_LEFT": "10"}, slots: ab,
			want: st("A B", map[string]int{"A": 15, "B": 16})},
		{name: "order without a removed slot (RAUC mark-bad)", env: map[string]string{"BOOT_ORDER": "A", "BOOT_B_LEFT": "0"}, slots: ab,
			want: st("A", map[string]int{"A": 3, "B": 0})},
		{name: "extra spaces in order", env: map[string]string{"BOOT_ORDER": "  B   A "}, slots: ab,
			want: st("B A", map[string]int{"A": 3, "B": 3})},
		{name: "other variables ignored", env: map[string]string{"bootcmd": "run x", "BOOT_C_LEFT": "zz"}, slots: ab,
			want: st("A B", map[string]int{"A": 3, "B": 3})},
		{name: "unknown slot in order", env: map[string]string{"BOOT_ORDER": "A C"}, slots: ab, wantVar: "BOOT_ORDER"},
		{name: "slot twice in order", env: map[string]string{"BOOT_ORDER": "A B A"}, slots: ab, wantVar: "BOOT_ORDER"},
		{name: "negative counter", env: map[string]string{"BOOT_B_LEFT": "-1"}, slots: ab, wantVar: "BOOT_B_LEFT"},
		{name: "0x prefix", env: map[string]string{"BOOT_A_LEFT": "0x3"}, slots: ab, wantVar: "BOOT_A_LEFT"},
		{name: "text counter", env: map[string]string{"BOOT_A_LEFT": "three"}, slots: ab, wantVar: "BOOT_A_LEFT"},
		{name: "counter with space", env: map[string]string{"BOOT_A_LEFT": "3 "}, slots: ab, wantVar: "BOOT_A_LEFT"},
		{name: "huge counter", env: map[string]string{"BOOT_A_LEFT": "123456789"}, slots: ab, wantVar: "BOOT_A_LEFT"},
		{name: "no slots", env: map[string]string{}, slots: nil, wantErr: slot.ErrSlotGroup},
		{name: "bad slot name", env: map[string]string{}, slots: []string{"A", "B C"}, wantErr: slot.ErrBadSlotName},
		{name: "duplicate slots", env: map[string]string{}, slots: []string{"A", "A"}, wantErr: slot.ErrSlotGroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := slot.ParseState(tt.env, tt.slots)
			switch {
			case tt.wantVar != "":
				var se *slot.StateError
				if !errors.As(err, &se) || !errors.Is(err, slot.ErrBadState) {
					t.Fatalf("err = %v, want *StateError wrapping ErrBadState", err)
				}
				if se.Var != tt.wantVar {
					t.Fatalf("StateError.Var = %q, want %q", se.Var, tt.wantVar)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestApplyLeavesOtherVariables(t *testing.T) {
	env := map[string]string{"bootcmd": "run boot", "BOOT_ORDER": "A B", "BOOT_A_LEFT": "1"}
	st("B A", map[string]int{"A": 0, "B": 15}).Apply(env)
	want := map[string]string{"bootcmd": "run boot", "BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "f"}
	if !reflect.DeepEqual(env, want) {
		t.Fatalf("env = %v, want %v", env, want)
	}
	// And it reads back to the same state.
	got, err := slot.ParseState(env, ab)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st("B A", map[string]int{"A": 0, "B": 15})) {
		t.Fatalf("round trip: %v", got)
	}
}

func TestTransitions(t *testing.T) {
	base := st("A B", map[string]int{"A": 3, "B": 3})
	abc := st("A B C", map[string]int{"A": 3, "B": 2, "C": 1})
	tests := []struct {
		name string
		from slot.State
		op   func(slot.State) slot.State
		want slot.State
	}{
		{"try B once", base, func(s slot.State) slot.State { return s.MarkTry("B", slot.DefaultTries) },
			st("B A", map[string]int{"A": 3, "B": 1})},
		{"try clamps 0 to 1", base, func(s slot.State) slot.State { return s.MarkTry("B", 0) },
			st("B A", map[string]int{"A": 3, "B": 1})},
		{"try clamps to 9", base, func(s slot.State) slot.State { return s.MarkTry("B", 20) },
			st("B A", map[string]int{"A": 3, "B": 9})},
		{"good refills and keeps first", st("B A", map[string]int{"A": 3, "B": 0}),
			func(s slot.State) slot.State { return s.MarkGood("B", slot.DefaultAttempts) },
			st("B A", map[string]int{"A": 3, "B": 3})},
		{"good moves first", st("B A", map[string]int{"A": 1, "B": 0}),
			func(s slot.State) slot.State { return s.MarkGood("A", slot.DefaultAttempts) },
			st("A B", map[string]int{"A": 3, "B": 0})},
		{"good re-adds a slot RAUC removed", st("A", map[string]int{"A": 0, "B": 0}),
			func(s slot.State) slot.State { return s.MarkGood("B", 3) },
			st("B A", map[string]int{"A": 0, "B": 3})},
		{"bad zeroes and moves last", st("B A", map[string]int{"A": 2, "B": 1}),
			func(s slot.State) slot.State { return s.MarkBad("B") },
			st("A B", map[string]int{"A": 2, "B": 0})},
		{"bad in three slots", abc, func(s slot.State) slot.State { return s.MarkBad("A") },
			st("B C A", map[string]int{"A": 0, "B": 2, "C": 1})},
		{"unknown slot is a no-op", base, func(s slot.State) slot.State { return s.MarkTry("C", 1).MarkGood("C", 1).MarkBad("C") },
			base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.from.String()
			got := tt.op(tt.from)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if tt.from.String() != before {
				t.Fatalf("receiver modified: %v, was %v", tt.from, before)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	tests := []struct {
		name      string
		from      slot.State
		wantSlot  string
		wantNext  slot.State
		wantReset bool
	}{
		{"first with attempts", st("B A", map[string]int{"A": 3, "B": 1}), "B",
			st("B A", map[string]int{"A": 3, "B": 0}), false},
		{"skips exhausted", st("B A", map[string]int{"A": 3, "B": 0}), "A",
			st("B A", map[string]int{"A": 2, "B": 0}), false},
		{"slot missing from order is never chosen", st("A", map[string]int{"A": 0, "B": 3}), "",
			st("A", map[string]int{"A": 3, "B": 3}), true},
		{"all exhausted: reset all, keep order", st("B A", map[string]int{"A": 0, "B": 0}), "",
			st("B A", map[string]int{"A": 3, "B": 3}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, reset := tt.from.Select(slot.DefaultAttempts)
			if got != tt.wantSlot || reset != tt.wantReset || !reflect.DeepEqual(next, tt.wantNext) {
				t.Fatalf("Select = %q, %v, %v; want %q, %v, %v", got, next, reset, tt.wantSlot, tt.wantNext, tt.wantReset)
			}
		})
	}
}

// agentBoot is what graft's agent does after a boot on a simulated board:
// health decides whether the booted slot is marked good; a boot of a slot
// other than the expected one is a rollback, and the tried slot is marked
// bad.
func agentBoot(t *testing.T, bl *slottest.Bootloader, cmdline, expect string, healthy bool) string {
	t.Helper()
	booted, err := slot.BootedSlot(cmdline)
	if err != nil {
		t.Fatal(err)
	}
	s, err := slot.ParseState(bl.Env, bl.Slots)
	if err != nil {
		t.Fatal(err)
	}
	if expect != "" && booted != expect {
		s = s.MarkBad(expect)
	}
	if healthy {
		s = s.MarkGood(booted, slot.DefaultAttempts)
	}
	s.Apply(bl.Env)
	return booted
}

func TestSimulatedUpdateFallsBack(t *testing.T) {
	bl := slottest.New("A", "B")
	// Factory: A boots, agent marks it good.
	_, cmd, err := bl.Boot()
	if err != nil {
		t.Fatal(err)
	}
	agentBoot(t, bl, cmd, "", true)

	// Install B, try once.
	booted, err := slot.BootedSlot(cmd)
	if err != nil {
		t.Fatal(err)
	}
	target, err := slot.Other(bl.Slots, booted)
	if err != nil || target != "B" {
		t.Fatalf("Other = %q, %v", target, err)
	}
	s, _ := slot.ParseState(bl.Env, bl.Slots)
	s.MarkTry(target, slot.DefaultTries).Apply(bl.Env)

	// Reboot: B is tried.
	got, cmd, err := bl.Boot()
	if err != nil || got != "B" {
		t.Fatalf("boot after install = %q, %v; want B", got, err)
	}
	if bl.Env["BOOT_B_LEFT"] != "0" {
		t.Fatalf("B's try was not consumed: BOOT_B_LEFT=%q", bl.Env["BOOT_B_LEFT"])
	}
	// Health fails: the agent does not mark B good and reboots.
	agentBoot(t, bl, cmd, "B", false)
	got, cmd, err = bl.Boot()
	if err != nil || got != "A" {
		t.Fatalf("boot after failed health = %q, %v; want fallback to A", got, err)
	}
	// On A the agent sees the rollback.
	agentBoot(t, bl, cmd, "B", true)
	if want := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}; !reflect.DeepEqual(bl.Env, want) {
		t.Fatalf("env after rollback = %v, want %v", bl.Env, want)
	}
	// From now on A boots, even across an exhausted-counter reset.
	for i := range 10 {
		got, cmd, err = bl.Boot()
		if err != nil || got != "A" {
			t.Fatalf("boot %d after rollback = %q, %v", i, got, err)
		}
		agentBoot(t, bl, cmd, "", true)
	}
}

func TestSimulatedUpdateSucceeds(t *testing.T) {
	bl := slottest.New("A", "B")
	s, _ := slot.ParseState(bl.Env, bl.Slots)
	s.MarkTry("B", slot.DefaultTries).Apply(bl.Env)
	got, cmd, err := bl.Boot()
	if err != nil || got != "B" {
		t.Fatalf("boot = %q, %v", got, err)
	}
	agentBoot(t, bl, cmd, "B", true)
	for range 5 {
		got, cmd, _ = bl.Boot()
		if got != "B" {
			t.Fatalf("B was marked good, but %q booted", got)
		}
		agentBoot(t, bl, cmd, "", true)
	}
}

// B is installed and never marked good, and the power fails before the
// agent can run on every boot: the bootloader alone decides. RAUC's script
// tries B once, then spends A's attempts, then resets all counters and,
// since the order is still "B A", tries B again with full attempts.
func TestSimulatedPowerLossLoop(t *testing.T) {
	bl := slottest.New("A", "B")
	s, _ := slot.ParseState(bl.Env, bl.Slots)
	s.MarkTry("B", slot.DefaultTries).Apply(bl.Env)
	for range 12 {
		if _, _, err := bl.Boot(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"B", "A", "A", "A", "B", "B", "B", "A", "A", "A", "B", "B"}
	if !slices.Equal(bl.Boots, want) || bl.Resets != 2 {
		t.Fatalf("boots = %v (resets %d), want %v (resets 2)", bl.Boots, bl.Resets, want)
	}
	// The first time the agent runs on A, it reports the rollback, marks
	// A good and B bad (last, 0 attempts). B then comes back only as a last
	// resort: when A keeps failing through its own attempts, a reset and
	// its attempts again (RAUC's mark-bad would drop B from BOOT_ORDER and
	// never boot it again; see MarkBad).
	for {
		got, cmd, err := bl.Boot()
		if err != nil {
			t.Fatal(err)
		}
		if got == "A" {
			agentBoot(t, bl, cmd, "B", true)
			break
		}
	}
	bl.Boots = nil
	for range 9 {
		bl.Boot() // power loss loop again, agent never runs
	}
	if want := []string{"A", "A", "A", "A", "A", "A", "B", "B", "B"}; !slices.Equal(bl.Boots, want) {
		t.Fatalf("after mark-bad: boots = %v, want %v", bl.Boots, want)
	}
}

// Property: once a slot is marked good with attempts, every later run of
// bootloader steps selects it immediately, and keeps selecting it at least
// once per window of (other slots × MaxAttempts + 2) steps, whatever the
// other counters and the order of the others were.
func TestPropertyGoodSlotAlwaysSelected(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	groups := [][]string{{"A", "B"}, {"A", "B", "C"}, {"system0", "system1", "recovery"}}
	for i := range 2000 {
		slots := groups[r.IntN(len(groups))]
		s := slot.State{Left: map[string]int{}}
		for _, name := range slots {
			s.Left[name] = r.IntN(slot.MaxAttempts + 1)
			if r.IntN(4) > 0 { // sometimes a slot is missing from the order
				s.Order = append(s.Order, name)
			}
		}
		r.Shuffle(len(s.Order), func(i, j int) { s.Order[i], s.Order[j] = s.Order[j], s.Order[i] })
		good := slots[r.IntN(len(slots))]
		s = s.MarkGood(good, 1+r.IntN(slot.MaxAttempts))

		window := (len(slots)-1)*slot.MaxAttempts + 2
		since := 0
		for step := range 200 {
			// Between boots, other slots may be marked bad.
			if r.IntN(5) == 0 {
				if other := slots[r.IntN(len(slots))]; other != good {
					s = s.MarkBad(other)
				}
			}
			prev := s
			got, next, reset := prev.Select(slot.DefaultAttempts)
			s = next
			if step == 0 && got != good {
				t.Fatalf("case %d: first boot after MarkGood(%s) chose %q", i, good, got)
			}
			if !reset && (prev.Left[got] <= 0 || !slices.Contains(prev.Order, got)) {
				t.Fatalf("case %d: chose %q from %v", i, got, prev)
			}
			if reset && got != "" {
				t.Fatalf("case %d: reset but chose %q", i, got)
			}
			since++
			if got == good {
				since = 0
			}
			if since > window {
				t.Fatalf("case %d: %s not chosen for %d steps (state %v)", i, good, since, s)
			}
		}
	}
}

func FuzzParseState(f *testing.F) {
	for _, seed := range []string{
		"",
		"BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3",
		"BOOT_ORDER=B A\nBOOT_A_LEFT=0\nBOOT_B_LEFT=1",
		"BOOT_ORDER=A C\n",
		"BOOT_ORDER=B\nBOOT_A_LEFT=ff\nBOOT_B_LEFT=-1",
		"BOOT_A_LEFT=99999999999999999999",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		env := map[string]string{}
		for line := range strings.SplitSeq(text, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		s, err := slot.ParseState(env, ab)
		if err != nil {
			if !errors.Is(err, slot.ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		if len(s.Order) == 0 || len(s.Order) > 2 || len(s.Left) != 2 {
			t.Fatalf("bad state %v", s)
		}
		// Apply then parse is a fixed point.
		out := map[string]string{}
		s.Apply(out)
		s2, err := slot.ParseState(out, ab)
		if err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip: %v -> %v -> %v, %v", s, out, s2, err)
		}
		// A bootloader step always boots something within two passes.
		name, next, reset := s.Select(slot.DefaultAttempts)
		if reset {
			name, _, reset = next.Select(slot.DefaultAttempts)
		}
		if reset || !slices.Contains(s.Order, name) {
			t.Fatalf("no slot chosen from %v", s)
		}
	})
}

func TestRefillAndMarkNonBootable(t *testing.T) {
	s0 := slot.State{Order: []string{"B", "A"}, Left: map[string]int{"A": 0, "B": 1}}
	r := s0.Refill("A", slot.DefaultAttempts)
	if strings.Join(r.Order, " ") != "B A" || r.Left["A"] != 3 || r.Left["B"] != 1 || s0.Left["A"] != 0 {
		t.Errorf("Refill(A) = %v (from %v): want A=3, order and B unchanged, receiver untouched", r, s0)
	}
	n := s0.MarkNonBootable("B")
	if strings.Join(n.Order, " ") != "A" || n.Left["B"] != 0 || n.Bootable("B") {
		t.Errorf("MarkNonBootable(B) = %v: want B out of the order with 0", n)
	}
	// The bootloader's reset refills counters but keeps the order: B
	// stays out.
	for range 10 {
		got, next, reset := n.Select(slot.DefaultAttempts)
		if !reset && got != "A" {
			t.Fatalf("Select chose %s, want only A", got)
		}
		n = next
	}
	if only := (slot.State{Order: []string{"A"}, Left: map[string]int{"A": 3, "B": 3}}).MarkNonBootable("A"); strings.Join(only.Order, " ") != "A" {
		t.Errorf("MarkNonBootable of the only slot in the order = %v, want unchanged", only)
	}
	if u := s0.Refill("C", 3); len(u.Left) != 2 {
		t.Errorf("Refill of an unknown slot = %v", u)
	}
}
