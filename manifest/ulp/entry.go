package ulp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrEntry: the replacement's entry cannot follow the target's kept entry
// instruction (for example the target signs its return address with
// PACIASP and the replacement does not authenticate it).
var ErrEntry = errors.New("ulp: incompatible function entry")

// Entry instructions that stay in place when a function is redirected: a
// CET or BTI landing pad must remain the first instruction an indirect
// call reaches, and a PACIASP that already signed the return address must
// be matched by the replacement's AUTIASP.
const (
	endbr64 = 0xfa1e0ff3 // f3 0f 1e fa, little-endian word
	btiC    = 0xd503245f // BTI c (HINT #34)
	btiJC   = 0xd50324df // BTI jc (HINT #38)
	paciasp = 0xd503233f // PACIASP (HINT #25), an implicit BTI landing pad
	pacibsp = 0xd503237f // PACIBSP (HINT #27)
)

func word(code []byte) (uint32, bool) {
	if len(code) < 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(code), true
}

// keptEntry returns the entry instruction of code that must stay, or 0.
func keptEntry(arch string, code []byte) uint32 {
	w, ok := word(code)
	if !ok {
		return 0
	}
	switch {
	case arch == AMD64 && w == endbr64:
		return w
	case arch == ARM64 && (w == btiC || w == btiJC || w == paciasp || w == pacibsp):
		return w
	}
	return 0
}

// EntryPlan decides how a target function whose code starts with target is
// redirected to a replacement whose code starts with repl: keep is how many
// target bytes stay before the trampoline, skip how many bytes of the
// replacement the trampoline jumps over (its own copy of the kept
// instruction). A signing PACIASP/PACIBSP kept in the target requires the
// same instruction at the replacement's entry.
func EntryPlan(arch string, target, repl []byte) (keep, skip int, err error) {
	t := keptEntry(arch, target)
	if t == 0 {
		return 0, 0, nil
	}
	r := keptEntry(arch, repl)
	switch {
	case r == t:
		return 4, 4, nil
	case t == paciasp || t == pacibsp:
		return 0, 0, fmt.Errorf("%w: the target signs its return address at entry (%#08x) and the replacement starts with %#08x; build the fix with the same -mbranch-protection", ErrEntry, t, r)
	}
	// A kept landing pad (endbr64, BTI) changes no state: the replacement
	// may start with anything, including its own PACIASP.
	return 4, 0, nil
}
