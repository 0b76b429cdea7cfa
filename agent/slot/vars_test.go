package slot_test

import (
	"errors"
	"testing"

	"github.com/graft-dev/graft/agent/slot"
)

func TestCheckVar(t *testing.T) {
	ab := []string{"A", "B"}
	for _, tt := range []struct {
		name, value string
		slots       []string
		ok          bool
	}{
		{"BOOT_ORDER", "A B", ab, true},
		{"BOOT_ORDER", "B", ab, true},
		{"BOOT_ORDER", "", ab, true},
		{"BOOT_ORDER", "A C", ab, false},
		{"BOOT_ORDER", "A C", nil, true},
		{"BOOT_ORDER", "A A", nil, false},
		{"BOOT_ORDER", " A", nil, false},
		{"BOOT_ORDER", "A;reset", nil, false},
		{"BOOT_A_LEFT", "0", ab, true},
		{"BOOT_A_LEFT", "9", ab, true},
		{"BOOT_A_LEFT", "a", ab, false},
		{"BOOT_A_LEFT", "10", ab, false},
		{"BOOT_C_LEFT", "1", ab, false},
		{"BOOT_C_LEFT", "1", nil, true},
		{"BOOT__LEFT", "1", nil, true}, // not a slot counter: not graft's
		{slot.FloorVar, "42", ab, true},
		{slot.FloorVar, "4x", ab, false},
		{"bootcmd", "anything at all", ab, true},
	} {
		err := slot.CheckVar(tt.name, tt.value, tt.slots)
		if tt.ok != (err == nil) || err != nil && !errors.Is(err, slot.ErrBadState) {
			t.Errorf("CheckVar(%q, %q, %v) = %v, want ok=%v", tt.name, tt.value, tt.slots, err, tt.ok)
		}
	}
}

func TestRepairState(t *testing.T) {
	ab := []string{"A", "B"}
	env := map[string]string{"BOOT_ORDER": "Z B B", "BOOT_A_LEFT": "zz", "BOOT_B_LEFT": "2"}
	if _, err := slot.ParseState(env, ab); !errors.Is(err, slot.ErrBadState) {
		t.Fatalf("ParseState of a malformed state: %v", err)
	}
	s, notes, err := slot.RepairState(env, ab)
	if err != nil {
		t.Fatal(err)
	}
	want := slot.State{Order: []string{"B", "A"}, Left: map[string]int{"A": 3, "B": 2}}
	if s.String() != want.String() || len(notes) != 2 {
		t.Fatalf("repaired %v with notes %q", s, notes)
	}
}

// FuzzCheckVar: a value CheckVar accepts for graft's variables is one
// ParseState and ParseFloor accept too, so a hand-set value can never
// stop the agent; RepairState always yields a valid state.
func FuzzCheckVar(f *testing.F) {
	for _, s := range []string{"A B", "B", "A  B", "A C", "3", "zz", "10", "18446744073709551616", "0"} {
		f.Add("BOOT_ORDER", s)
		f.Add("BOOT_A_LEFT", s)
		f.Add(slot.FloorVar, s)
	}
	ab := []string{"A", "B"}
	f.Fuzz(func(t *testing.T, name, value string) {
		env := map[string]string{name: value}
		if slot.CheckVar(name, value, ab) == nil {
			if _, err := slot.ParseState(env, ab); err != nil {
				t.Fatalf("CheckVar accepted %s=%q but ParseState says %v", name, value, err)
			}
			if _, err := slot.ParseFloor(env); err != nil {
				t.Fatalf("CheckVar accepted %s=%q but ParseFloor says %v", name, value, err)
			}
		}
		if _, _, err := slot.RepairState(env, ab); err != nil {
			t.Fatalf("RepairState(%s=%q): %v", name, value, err)
		}
	})
}
