package slot

import (
	"fmt"
	"strings"
)

// Kernel command line parameters that name the booted slot. rauc.slot is
// what RAUC's boot scripts pass; graft.slot is accepted as well.
var bootedSlotParams = []string{"rauc.slot", "graft.slot"}

// BootedSlot returns the slot named on a kernel command line (the content
// of /proc/cmdline) by rauc.slot=<name> or graft.slot=<name>. Parameters
// are split like the kernel does: on white space outside double quotes,
// with the quotes removed. If the parameter appears more than once, the
// last one wins, as for the kernel's own parameters. No parameter (or an
// empty value) is ErrNoBootedSlot; a value that is not a valid slot name
// is ErrBadSlotName.
func BootedSlot(cmdline string) (string, error) {
	var slot, param string
	for _, arg := range splitCmdline(cmdline) {
		key, val, ok := strings.Cut(arg, "=")
		if !ok {
			continue
		}
		for _, p := range bootedSlotParams {
			if key == p {
				slot, param = val, p
			}
		}
	}
	if slot == "" {
		return "", ErrNoBootedSlot
	}
	if !ValidSlotName(slot) {
		return "", fmt.Errorf("%w: %s=%q", ErrBadSlotName, param, slot)
	}
	return slot, nil
}

// splitCmdline splits a kernel command line into parameters.
func splitCmdline(s string) []string {
	var (
		out     []string
		cur     strings.Builder
		quoted  bool
		started bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quoted = !quoted
			started = true
		case !quoted && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0):
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
		default:
			cur.WriteByte(c)
			started = true
		}
	}
	if started {
		out = append(out, cur.String())
	}
	return out
}

// Other returns the slot of a two-slot group that is not active.
func Other(slots []string, active string) (string, error) {
	if len(slots) != 2 {
		return "", fmt.Errorf("%w: A/B needs exactly 2 slots, got %d", ErrSlotGroup, len(slots))
	}
	if err := checkGroup(slots); err != nil {
		return "", err
	}
	switch active {
	case slots[0]:
		return slots[1], nil
	case slots[1]:
		return slots[0], nil
	}
	return "", fmt.Errorf("%w: %q is not one of %q", ErrUnknownSlot, active, slots)
}
