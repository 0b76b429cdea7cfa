package slot

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them
// (or an error of the os/syscall packages for plain I/O failures).
var (
	// ErrBadState: the boot variables in the environment are malformed.
	// The concrete error is a *StateError naming the variable.
	ErrBadState = errors.New("slot: malformed boot state")
	// ErrSlotGroup: the list of slot names is not a valid slot group.
	ErrSlotGroup = errors.New("slot: invalid slot group")
	// ErrUnknownSlot: a slot name is not part of the slot group.
	ErrUnknownSlot = errors.New("slot: unknown slot")
	// ErrNoBootedSlot: the kernel command line names no booted slot.
	ErrNoBootedSlot = errors.New("slot: no booted slot on the kernel command line")
	// ErrBadSlotName: a slot name cannot be used in BOOT_<slot>_LEFT.
	ErrBadSlotName = errors.New("slot: invalid slot name")

	// ErrBadImage: the Image description itself is unusable.
	ErrBadImage = errors.New("slot: invalid image description")
	// ErrTarget: the target is neither a regular file nor a block device.
	ErrTarget = errors.New("slot: target is not a regular file or block device")
	// ErrTooLarge: the image does not fit the target block device.
	ErrTooLarge = errors.New("slot: image larger than target device")
	// ErrSize: the decompressed stream is shorter or longer than Image.Size.
	ErrSize = errors.New("slot: image size mismatch")
	// ErrHashMismatch: the SHA-256 of the stream or of the read-back slot
	// differs from Image.SHA256. The concrete error is a *HashError.
	ErrHashMismatch = errors.New("slot: image hash mismatch")
	// ErrDecompress: the compressed stream is corrupt.
	ErrDecompress = errors.New("slot: cannot decompress image")
	// ErrWrite: writing or flushing the target failed (full disk, short
	// write, I/O error); the underlying error is wrapped too.
	ErrWrite = errors.New("slot: write to target failed")

	// ErrActiveSlot: the target is the booted slot's device.
	ErrActiveSlot = errors.New("slot: target is the active slot")
	// ErrMounted: the target is mounted (or backs a mount).
	ErrMounted = errors.New("slot: target is mounted")
	// ErrMountinfo: the mountinfo text cannot be parsed.
	ErrMountinfo = errors.New("slot: malformed mountinfo")
)

// StateError tells which boot variable is malformed and why.
type StateError struct {
	Var    string // e.g. "BOOT_ORDER", "BOOT_B_LEFT"
	Value  string
	Reason string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("slot: malformed boot state: %s=%q: %s", e.Var, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrBadState) true.
func (e *StateError) Is(target error) bool { return target == ErrBadState }

// HashError reports a SHA-256 mismatch and at which stage it was found:
// "stream" (the bytes as they arrived) or "read-back" (the bytes read back
// from the target after fsync).
type HashError struct {
	Stage string
	Want  []byte
	Got   []byte
}

func (e *HashError) Error() string {
	return fmt.Sprintf("slot: image hash mismatch (%s): want sha256 %s, got %s",
		e.Stage, hex.EncodeToString(e.Want), hex.EncodeToString(e.Got))
}

// Is makes errors.Is(err, ErrHashMismatch) true.
func (e *HashError) Is(target error) bool { return target == ErrHashMismatch }
