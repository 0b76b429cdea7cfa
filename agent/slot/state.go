package slot

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Boot variable names and attempt counts, as in RAUC's U-Boot integration
// (docs/integration.rst, contrib/uboot.sh, src/bootchooser.c).
const (
	// OrderVar lists slot names separated by spaces; the first is preferred.
	OrderVar = "BOOT_ORDER"

	// DefaultAttempts is what RAUC writes on mark-good and what its example
	// script uses for missing counters and for the all-zero reset.
	DefaultAttempts = 3
	// DefaultTries is how often graft lets the bootloader try a freshly
	// installed slot before it falls back: once.
	DefaultTries = 1
	// MaxAttempts bounds every counter graft writes. The U-Boot script
	// reads counters as hexadecimal (`test 0x${BOOT_A_LEFT} -gt 0`, and
	// setexpr writes hex); for 0..9 the decimal and hexadecimal spellings
	// are the same, so values up to 9 mean the same thing to everyone.
	MaxAttempts = 9

	maxSlotName = 32 // U-Boot's RAUC bootmeth allows 32 characters
)

// LeftVar returns the name of the counter of slot: BOOT_<slot>_LEFT.
func LeftVar(slot string) string { return "BOOT_" + slot + "_LEFT" }

// State is the bootloader's view of the slots: the order in which they are
// tried and how many attempts each has left. Methods never modify the
// receiver; they return a new State.
type State struct {
	Order []string       // slot names, first = preferred; may omit a slot (RAUC's mark-bad removes it)
	Left  map[string]int // remaining attempts of every slot of the group
}

// ValidSlotName reports whether name can be used as a RAUC bootname:
// 1..32 characters from [A-Za-z0-9_.-].
func ValidSlotName(name string) bool {
	if name == "" || len(name) > maxSlotName {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

func checkGroup(slots []string) error {
	if len(slots) == 0 {
		return fmt.Errorf("%w: no slots", ErrSlotGroup)
	}
	for i, s := range slots {
		if !ValidSlotName(s) {
			return fmt.Errorf("%w: %w: %q", ErrSlotGroup, ErrBadSlotName, s)
		}
		if slices.Contains(slots[:i], s) {
			return fmt.Errorf("%w: slot %q listed twice", ErrSlotGroup, s)
		}
	}
	return nil
}

// ParseState reads BOOT_ORDER and BOOT_<slot>_LEFT for the given slot group
// from env. Like RAUC's example script, a missing or empty BOOT_ORDER means
// the slots in the given order, and a missing or empty counter means
// DefaultAttempts. Counters are read as the script reads them: hexadecimal
// digits without prefix (identical to decimal for 0..9). A BOOT_ORDER that
// names a slot outside the group or names one twice, or a counter that is
// not a number, is an error wrapping ErrBadState (a *StateError naming the
// variable). Variables of other slots are ignored.
func ParseState(env map[string]string, slots []string) (State, error) {
	if err := checkGroup(slots); err != nil {
		return State{}, err
	}
	st := State{Left: make(map[string]int, len(slots))}
	order := env[OrderVar]
	if strings.TrimSpace(order) == "" {
		st.Order = slices.Clone(slots)
	} else {
		for _, name := range strings.Fields(order) {
			if !slices.Contains(slots, name) {
				return State{}, &StateError{Var: OrderVar, Value: order, Reason: fmt.Sprintf("unknown slot %q", name)}
			}
			if slices.Contains(st.Order, name) {
				return State{}, &StateError{Var: OrderVar, Value: order, Reason: fmt.Sprintf("slot %q listed twice", name)}
			}
			st.Order = append(st.Order, name)
		}
	}
	for _, name := range slots {
		key := LeftVar(name)
		v := env[key]
		if v == "" {
			st.Left[name] = DefaultAttempts
			continue
		}
		n, err := parseCounter(v)
		if err != nil {
			return State{}, &StateError{Var: key, Value: v, Reason: err.Error()}
		}
		st.Left[name] = n
	}
	return st, nil
}

// parseCounter reads a counter the way the U-Boot script does: hex digits.
func parseCounter(v string) (int, error) {
	if len(v) > 8 {
		return 0, fmt.Errorf("counter longer than 8 digits")
	}
	for _, c := range []byte(v) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return 0, fmt.Errorf("counter is not a number (byte %q)", c)
		}
	}
	n, err := strconv.ParseUint(v, 16, 31)
	if err != nil {
		return 0, fmt.Errorf("counter: %w", err)
	}
	return int(n), nil
}

// formatCounter writes a counter so that the script reads back the same
// value (hex, which equals decimal for everything graft writes).
func formatCounter(n int) string {
	if n < 0 {
		n = 0
	}
	return strconv.FormatInt(int64(n), 16)
}

// Apply writes BOOT_ORDER and every BOOT_<slot>_LEFT of s into env and
// leaves all other variables alone.
func (s State) Apply(env map[string]string) {
	env[OrderVar] = strings.Join(s.Order, " ")
	for name, n := range s.Left {
		env[LeftVar(name)] = formatCounter(n)
	}
}

// String renders s for logs: "B A (A=3 B=1)".
func (s State) String() string {
	names := slices.Sorted(maps.Keys(s.Left))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%d", n, s.Left[n])
	}
	return strings.Join(s.Order, " ") + " (" + strings.Join(parts, " ") + ")"
}

func (s State) clone() State {
	return State{Order: slices.Clone(s.Order), Left: maps.Clone(s.Left)}
}

// Has reports whether slot belongs to the group s describes.
func (s State) Has(slot string) bool {
	_, ok := s.Left[slot]
	return ok
}

func clampAttempts(n int) int {
	return min(max(n, 1), MaxAttempts)
}

// first returns a copy of s with slot moved to the front of the order and
// its counter set to n. This is RAUC's set_primary.
func (s State) first(slot string, n int) State {
	if !s.Has(slot) {
		return s.clone()
	}
	next := s.clone()
	next.Order = append([]string{slot}, slices.DeleteFunc(next.Order, func(x string) bool { return x == slot })...)
	next.Left[slot] = n
	return next
}

// MarkTry makes a freshly installed slot the preferred one with tries boot
// attempts (graft passes DefaultTries: try once). tries is clamped to
// 1..MaxAttempts. A slot outside the group leaves the state unchanged
// (check with Has).
func (s State) MarkTry(slot string, tries int) State {
	return s.first(slot, clampAttempts(tries))
}

// MarkGood keeps slot as the preferred one and refills its counter to
// attempts (graft passes DefaultAttempts), clamped to 1..MaxAttempts.
// RAUC's mark-good only refills the counter; graft also moves the slot
// first, so that "good" always means "what the bootloader boots next". A
// slot outside the group leaves the state unchanged.
func (s State) MarkGood(slot string, attempts int) State {
	return s.first(slot, clampAttempts(attempts))
}

// MarkBad sets slot's counter to 0 and moves it to the end of the order.
// RAUC's mark-bad removes the slot from BOOT_ORDER instead; graft keeps it
// last, so that if every other slot also runs out of attempts, the
// bootloader's reset still has something to try rather than nothing. A
// slot outside the group leaves the state unchanged.
func (s State) MarkBad(slot string) State {
	if !s.Has(slot) {
		return s.clone()
	}
	next := s.clone()
	next.Order = append(slices.DeleteFunc(next.Order, func(x string) bool { return x == slot }), slot)
	next.Left[slot] = 0
	return next
}

// Select runs one pass of the bootloader, exactly as RAUC's example U-Boot
// script does: walk Order and take the first slot with attempts left,
// decrementing its counter (the script then saves the environment and
// boots it). If no slot in Order has attempts left, every slot's counter is
// reset to attempts (clamped to 1..MaxAttempts), Order is left as it is,
// and Select returns slot "" and reset true: the script saves the
// environment and resets the board, so the caller should Apply next and
// call Select again, as the next boot would.
func (s State) Select(attempts int) (slot string, next State, reset bool) {
	next = s.clone()
	for _, name := range next.Order {
		if next.Left[name] > 0 {
			next.Left[name]--
			return name, next, false
		}
	}
	n := clampAttempts(attempts)
	for name := range next.Left {
		next.Left[name] = n
	}
	return "", next, true
}

// Refill sets slot's counter to attempts (clamped to 1..MaxAttempts)
// and leaves the order alone: the running slot keeps its attempts at
// every start while an update is in flight, without undoing a try the
// update armed. A slot outside the group leaves the state unchanged.
func (s State) Refill(slot string, attempts int) State {
	next := s.clone()
	if s.Has(slot) {
		next.Left[slot] = clampAttempts(attempts)
	}
	return next
}

// MarkNonBootable takes slot out of BOOT_ORDER and sets its counter to 0,
// as RAUC does before it writes a slot: no fallback and no counter reset
// boots a slot that is being written. MarkTry puts it back. A slot
// outside the group, or the only slot in the order, leaves the state
// unchanged.
func (s State) MarkNonBootable(slot string) State {
	next := s.clone()
	if !s.Has(slot) {
		return next
	}
	order := slices.DeleteFunc(slices.Clone(next.Order), func(x string) bool { return x == slot })
	if len(order) == 0 {
		return next
	}
	next.Order, next.Left[slot] = order, 0
	return next
}

// Bootable reports whether the bootloader may still pick slot: it is in
// the order with attempts left.
func (s State) Bootable(slot string) bool {
	return slices.Contains(s.Order, slot) && s.Left[slot] > 0
}
