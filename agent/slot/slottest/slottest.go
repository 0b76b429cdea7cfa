// Package slottest offers a simulated bootloader for tests of code that
// drives A/B updates: it runs slot.State.Select, the logic of RAUC's
// example U-Boot script, on an in-memory environment.
//
// It must never touch a real bootloader environment or device.
package slottest

import (
	"errors"
	"fmt"

	"github.com/graft-dev/graft/agent/slot"
)

// ErrNoSlot means the simulated bootloader could not choose a slot even
// after resetting the counters (an empty BOOT_ORDER group).
var ErrNoSlot = errors.New("slottest: no bootable slot")

// Bootloader is a U-Boot running RAUC's example boot script. Env is the
// environment it reads and saves; tests may poke it directly. Not safe for
// concurrent use.
type Bootloader struct {
	Env      map[string]string
	Slots    []string
	Attempts int // counters after an all-zero reset; 0 means slot.DefaultAttempts

	Boots  []string // every slot booted, in order
	Resets int      // how often no slot had attempts left
}

// New returns a bootloader for slots with an empty environment.
func New(slots ...string) *Bootloader {
	return &Bootloader{Env: map[string]string{}, Slots: slots}
}

// Boot runs the script once, as on power-on: it chooses a slot,
// decrements its counter and saves the environment. If no slot has
// attempts left, it resets the counters, saves and "resets the board",
// which runs the script again. It returns the chosen slot and the kernel
// command line the script would pass.
func (b *Bootloader) Boot() (slotName, cmdline string, err error) {
	attempts := b.Attempts
	if attempts == 0 {
		attempts = slot.DefaultAttempts
	}
	for range 2 {
		st, err := slot.ParseState(b.Env, b.Slots)
		if err != nil {
			return "", "", fmt.Errorf("slottest: %w", err)
		}
		name, next, reset := st.Select(attempts)
		next.Apply(b.Env)
		if !reset {
			b.Boots = append(b.Boots, name)
			return name, "console=ttyAMA0 root=PARTLABEL=" + name + " rauc.slot=" + name, nil
		}
		b.Resets++
	}
	return "", "", ErrNoSlot
}
