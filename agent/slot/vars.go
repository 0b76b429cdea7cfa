package slot

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// CheckVar checks a value someone wants to set for one of the variables
// graft owns: BOOT_ORDER (known, distinct slot names separated by
// spaces), BOOT_<slot>_LEFT (a counter of 0..MaxAttempts for a slot of
// the group) and FloorVar (a decimal sequence). slots is the slot group;
// nil accepts any valid slot names. Other variables are not graft's: nil.
// An empty value (deleting the variable) is always accepted.
func CheckVar(name, value string, slots []string) error {
	if value == "" {
		return nil
	}
	bad := func(format string, a ...any) error {
		return &StateError{Var: name, Value: value, Reason: fmt.Sprintf(format, a...)}
	}
	switch {
	case name == OrderVar:
		var seen []string
		for _, s := range strings.Split(value, " ") {
			switch {
			case s == "":
				return bad("slot names must be separated by single spaces")
			case !ValidSlotName(s):
				return bad("%q is not a slot name", s)
			case slots != nil && !slices.Contains(slots, s):
				return bad("unknown slot %q (slots: %s)", s, strings.Join(slots, " "))
			case slices.Contains(seen, s):
				return bad("slot %q listed twice", s)
			}
			seen = append(seen, s)
		}
		return nil
	case name == FloorVar:
		if err := checkFloor(value); err != nil {
			return bad("not a decimal sequence number")
		}
		return nil
	case strings.HasPrefix(name, "BOOT_") && strings.HasSuffix(name, "_LEFT") && len(name) > len("BOOT__LEFT"):
		s := strings.TrimSuffix(strings.TrimPrefix(name, "BOOT_"), "_LEFT")
		if !ValidSlotName(s) || slots != nil && !slices.Contains(slots, s) {
			return bad("no slot %q", s)
		}
		if len(value) != 1 || value[0] < '0' || value[0] > '0'+MaxAttempts {
			return bad("attempts must be a digit 0..%d", MaxAttempts)
		}
		return nil
	}
	return nil
}

// RepairState reads the boot state like ParseState, but instead of
// failing on a malformed BOOT_ORDER or counter it keeps what is usable:
// unknown and repeated names are dropped from the order and the missing
// slots appended in group order; a counter that is not a number counts as
// DefaultAttempts, as a missing one does. It returns what it repaired.
func RepairState(env map[string]string, slots []string) (State, []string, error) {
	if err := checkGroup(slots); err != nil {
		return State{}, nil, err
	}
	fixed := make(map[string]string, len(env))
	for k, v := range env {
		fixed[k] = v
	}
	var notes []string
	for {
		_, err := ParseState(fixed, slots)
		var se *StateError
		if !errors.As(err, &se) {
			break
		}
		notes = append(notes, se.Error())
		if se.Var == OrderVar {
			var order []string
			for _, s := range strings.Fields(se.Value) {
				if slices.Contains(slots, s) && !slices.Contains(order, s) {
					order = append(order, s)
				}
			}
			for _, s := range slots {
				if !slices.Contains(order, s) {
					order = append(order, s)
				}
			}
			fixed[OrderVar] = strings.Join(order, " ")
		} else {
			fixed[se.Var] = formatCounter(DefaultAttempts)
		}
	}
	st, err := ParseState(fixed, slots)
	return st, notes, err
}
