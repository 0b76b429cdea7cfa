package slot_test

import (
	"errors"
	"testing"

	"github.com/graft-dev/graft/agent/slot"
)

func TestFloor(t *testing.T) {
	for _, tt := range []struct {
		val  string
		want uint64
		bad  bool
	}{
		{"", 0, false}, {"0", 0, false}, {"7", 7, false}, {"18446744073709551615", 1<<64 - 1, false},
		{"18446744073709551616", 0, true}, {"007", 0, true}, {"-1", 0, true}, {"0x10", 0, true}, {" 5", 0, true}, {"5\n", 0, true},
	} {
		env := map[string]string{slot.FloorVar: tt.val}
		got, err := slot.ParseFloor(env)
		if tt.bad != errors.Is(err, slot.ErrBadState) || got != tt.want {
			t.Errorf("ParseFloor(%q) = %d, %v", tt.val, got, err)
		}
	}
}
