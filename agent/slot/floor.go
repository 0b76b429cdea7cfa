package slot

import (
	"strconv"
)

// FloorVar is the bootloader variable that keeps the sequence floor: the
// highest release sequence committed on this device. The journal keeps
// the same number; the bootloader environment (redundant on U-Boot) keeps
// it apart from the data directory, so that a lost or corrupt journal
// does not reset anti-rollback. The bootloader itself ignores it.
const FloorVar = "GRAFT_SEQ_FLOOR"

// maxFloorDigits: a uint64 in decimal.
const maxFloorDigits = 20

// ParseFloor reads FloorVar from env: 0 when it is missing, a *StateError
// (ErrBadState) when it is not a decimal number without sign or leading
// zeros.
func ParseFloor(env map[string]string) (uint64, error) {
	v, ok := env[FloorVar]
	if !ok || v == "" {
		return 0, nil
	}
	if err := checkFloor(v); err != nil {
		return 0, &StateError{Var: FloorVar, Value: v, Reason: err.Error()}
	}
	n, _ := strconv.ParseUint(v, 10, 64)
	return n, nil
}

func checkFloor(v string) error {
	if len(v) > maxFloorDigits || (len(v) > 1 && v[0] == '0') {
		return strconv.ErrSyntax
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return strconv.ErrSyntax
		}
	}
	_, err := strconv.ParseUint(v, 10, 64)
	return err
}
