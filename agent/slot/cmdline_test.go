package slot_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/slot"
)

func TestBootedSlot(t *testing.T) {
	tests := []struct {
		name    string
		cmdline string
		want    string
		wantErr error
	}{
		{"rauc", "console=ttyAMA0,115200 root=/dev/mmcblk0p2 rauc.slot=B rootwait\n", "B", nil},
		{"graft", "graft.slot=system1 quiet", "system1", nil},
		{"last wins", "rauc.slot=A graft.slot=B", "B", nil},
		{"quoted", `dyndbg="file x.c +p" rauc.slot="A"`, "A", nil},
		{"quoted value with space is not a slot", `rauc.slot="A B"`, "", slot.ErrBadSlotName},
		{"inside a quoted value is not a parameter", `foo="rauc.slot=A bar"`, "", slot.ErrNoBootedSlot},
		{"similar names", "xrauc.slot=A rauc.slots=B rauc.slot", "", slot.ErrNoBootedSlot},
		{"empty value", "rauc.slot= quiet", "", slot.ErrNoBootedSlot},
		{"empty", "", "", slot.ErrNoBootedSlot},
		{"bad name", "rauc.slot=A;reset", "", slot.ErrBadSlotName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := slot.BootedSlot(tt.cmdline)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("BootedSlot(%q) = %q, %v; want %q, %v", tt.cmdline, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// The seed corpus in testdata holds real /proc/cmdline lines.
func TestBootedSlotFromTestdata(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "cmdline-rpi4.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := slot.BootedSlot(string(b))
	if err != nil || got != "B" {
		t.Fatalf("BootedSlot = %q, %v; want B", got, err)
	}
}

func FuzzBootedSlot(f *testing.F) {
	for _, s := range []string{"rauc.slot=A", `a="b c" graft.slot=B`, "rauc.slot=\"", "\x00rauc.slot=A\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		got, err := slot.BootedSlot(cmdline)
		if err != nil {
			if !errors.Is(err, slot.ErrNoBootedSlot) && !errors.Is(err, slot.ErrBadSlotName) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !slot.ValidSlotName(got) {
			t.Fatalf("returned invalid name %q", got)
		}
		if !strings.Contains(strings.ReplaceAll(cmdline, `"`, ""), got) { // quotes are dropped, as the kernel does
			t.Fatalf("returned %q not in %q", got, cmdline)
		}
	})
}

func TestOther(t *testing.T) {
	tests := []struct {
		name    string
		slots   []string
		active  string
		want    string
		wantErr error
	}{
		{"A active", ab, "A", "B", nil},
		{"B active", ab, "B", "A", nil},
		{"unknown", ab, "C", "", slot.ErrUnknownSlot},
		{"three slots", []string{"A", "B", "C"}, "A", "", slot.ErrSlotGroup},
		{"same twice", []string{"A", "A"}, "A", "", slot.ErrSlotGroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := slot.Other(tt.slots, tt.active)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Other = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
