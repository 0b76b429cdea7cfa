package bootenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DefaultLockFile is the lock file libubootenv's fw_printenv and fw_setenv
// hold while they read and write the environment.
const DefaultLockFile = "/var/lock/fw_printenv.lock"

// UBoot is a U-Boot environment stored raw in a device or a file: a single
// copy, or two redundant copies (in one device at two offsets, or in two
// devices).
//
// Every Load, Save and Update holds an exclusive flock on LockFile, the
// same lock fw_printenv and fw_setenv take, so they never see a half
// written environment and Update is a true read-modify-write. With the
// lock, a UBoot is safe for concurrent use; with LockFile empty it is not.
type UBoot struct {
	// LockFile is the lock file to hold; "" disables locking.
	LockFile string

	locs []FWLocation
}

var _ Store = (*UBoot)(nil)

// OpenUBoot reads the fw_env.config at path (one location: a single copy;
// two: redundant copies) and returns its environment store.
func OpenUBoot(fwEnvConfig string) (*UBoot, error) {
	f, err := os.Open(fwEnvConfig)
	if err != nil {
		return nil, fmt.Errorf("bootenv: %w", err)
	}
	defer f.Close()
	locs, err := ParseFWConfig(f, fwEnvConfig)
	if err != nil {
		return nil, err
	}
	u, err := NewUBoot(locs...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fwEnvConfig, err)
	}
	return u, nil
}

// NewUBoot returns the store for one location (a single copy) or two (the
// copy and its redundant copy, which must have the same size and must not
// overlap). MTD (/dev/mtd*) and UBI (/dev/ubi*) devices need erase and
// volume-update ioctls and are refused with ErrConfig; block devices and
// regular files are supported.
func NewUBoot(locs ...FWLocation) (*UBoot, error) {
	if len(locs) != 1 && len(locs) != 2 {
		return nil, fmt.Errorf("%w: %d environment locations, want 1 or 2", ErrConfig, len(locs))
	}
	redundant := len(locs) == 2
	for i, l := range locs {
		switch {
		case l.Device == "":
			return nil, fmt.Errorf("%w: location %d: no device", ErrConfig, i)
		case strings.HasPrefix(l.Device, "/dev/mtd"), strings.HasPrefix(l.Device, "/dev/ubi"):
			return nil, fmt.Errorf("%w: location %d: %s: MTD and UBI devices are not supported", ErrConfig, i, l.Device)
		}
		if err := checkUBootSize(l.Size, redundant); err != nil {
			return nil, fmt.Errorf("location %d: %w", i, err)
		}
	}
	if redundant {
		a, b := locs[0], locs[1]
		if a.Size != b.Size {
			return nil, fmt.Errorf("%w: redundant copies differ in size (%#x, %#x)", ErrConfig, a.Size, b.Size)
		}
		if sameDevice(a.Device, b.Device) && (a.Offset < 0) == (b.Offset < 0) && overlap(a.Offset, b.Offset, a.Size) {
			return nil, fmt.Errorf("%w: redundant copies overlap in %s (offsets %#x, %#x, size %#x)", ErrConfig, a.Device, a.Offset, b.Offset, a.Size)
		}
	}
	return &UBoot{LockFile: DefaultLockFile, locs: append([]FWLocation(nil), locs...)}, nil
}

func sameDevice(a, b string) bool { return filepath.Clean(a) == filepath.Clean(b) }

func overlap(a, b, size int64) bool { return a < b+size && b < a+size }

// Locations returns the configured locations.
func (u *UBoot) Locations() []FWLocation { return append([]FWLocation(nil), u.locs...) }

// Redundant reports whether the environment has two copies.
func (u *UBoot) Redundant() bool { return len(u.locs) == 2 }

// Load reads the environment. For redundant copies it returns the current
// valid copy (see docs/bootenv.md); a copy with a bad CRC is passed over.
// A single copy with a bad CRC is ErrBadCRC; two bad copies are
// ErrNoValidCopy.
func (u *UBoot) Load() (Env, error) {
	unlock, err := lockFile(u.LockFile)
	if err != nil {
		return nil, err
	}
	defer unlock()
	env, _, err := u.load()
	return env, err
}

// Save writes env. A single copy is rewritten whole, then flushed. With
// redundant copies the inactive copy is written with the current copy's
// flags + 1, then flushed: until that write is complete the old copy stays
// current, so a power cut leaves the old or the new environment, never a
// mix. Nothing outside the configured areas is written.
func (u *UBoot) Save(env Env) error {
	unlock, err := lockFile(u.LockFile)
	if err != nil {
		return err
	}
	defer unlock()
	return u.save(env)
}

func (u *UBoot) update(fn func(Env) error) error {
	unlock, err := lockFile(u.LockFile)
	if err != nil {
		return err
	}
	defer unlock()
	load := func() (Env, error) {
		env, _, err := u.load()
		return env, err
	}
	return loadModifySave(load, u.save, fn)
}

// ubootState says which copy is current and with which flags.
type ubootState struct {
	current int
	flags   byte
}

func (u *UBoot) load() (Env, ubootState, error) {
	if !u.Redundant() {
		b, err := u.readCopy(0)
		if err != nil {
			return nil, ubootState{}, err
		}
		env, _, err := DecodeUBoot(b, false)
		if err != nil {
			return nil, ubootState{}, fmt.Errorf("%s: %w", u.locs[0].Device, err)
		}
		return env, ubootState{}, nil
	}
	var copies [2]ubootCopy
	for i := range copies {
		b, err := u.readCopy(i)
		if err != nil {
			return nil, ubootState{}, err
		}
		c := &copies[i]
		c.env, c.flags, c.err = DecodeUBoot(b, true)
	}
	cur, err := selectCopy(copies)
	if err != nil {
		// libubootenv's choice when neither copy is valid: copy 0 is
		// "current", so the next save goes to copy 1.
		return nil, ubootState{current: 0, flags: copies[0].flags},
			fmt.Errorf("%s@%#x, %s@%#x: %w", u.locs[0].Device, u.locs[0].Offset, u.locs[1].Device, u.locs[1].Offset, err)
	}
	return copies[cur].env, ubootState{current: cur, flags: copies[cur].flags}, nil
}

func (u *UBoot) save(env Env) error {
	size := int(u.locs[0].Size)
	if !u.Redundant() {
		b, err := EncodeUBoot(env, size, false, 0)
		if err != nil {
			return err
		}
		return u.writeCopy(0, b)
	}
	// Decide from what is on the medium now, not from an earlier Load:
	// fw_setenv may have written in between.
	_, st, err := u.load()
	if err != nil && !errors.Is(err, ErrNoValidCopy) {
		return err
	}
	b, err := EncodeUBoot(env, size, true, st.flags+1)
	if err != nil {
		return err
	}
	return u.writeCopy(1-st.current, b)
}

// region opens the device of copy i and resolves where the copy lies.
func (u *UBoot) region(i int, flag int) (*os.File, int64, error) {
	l := u.locs[i]
	f, err := os.OpenFile(l.Device, flag, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("bootenv: copy %d: %w", i, err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("bootenv: copy %d: size of %s: %w", i, l.Device, err)
	}
	off := l.Offset
	if off < 0 {
		off += end
	}
	if off < 0 || off+l.Size > end {
		f.Close()
		return nil, 0, fmt.Errorf("%w: copy %d: area at offset %d, size %#x lies outside %s (%d bytes)", ErrConfig, i, l.Offset, l.Size, l.Device, end)
	}
	return f, off, nil
}

func (u *UBoot) readCopy(i int) ([]byte, error) {
	f, off, err := u.region(i, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, u.locs[i].Size)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("bootenv: copy %d: read %s at %#x: %w", i, u.locs[i].Device, off, err)
	}
	return b, nil
}

func (u *UBoot) writeCopy(i int, b []byte) error {
	f, off, err := u.region(i, os.O_RDWR)
	if err != nil {
		return err
	}
	if u.Redundant() && sameDevice(u.locs[0].Device, u.locs[1].Device) {
		// Negative offsets are only comparable once resolved.
		if o, err := u.otherOffset(f, i); err == nil && overlap(off, o, int64(len(b))) {
			f.Close()
			return fmt.Errorf("%w: redundant copies overlap in %s", ErrConfig, u.locs[i].Device)
		}
	}
	dev := u.locs[i].Device
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return fmt.Errorf("bootenv: copy %d: write %s at %#x: %w", i, dev, off, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("bootenv: copy %d: sync %s: %w", i, dev, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bootenv: copy %d: close %s: %w", i, dev, err)
	}
	return nil
}

// otherOffset resolves the offset of the copy that is not i, in the same
// device f.
func (u *UBoot) otherOffset(f *os.File, i int) (int64, error) {
	o := u.locs[1-i].Offset
	if o >= 0 {
		return o, nil
	}
	end, err := f.Seek(0, io.SeekEnd)
	return o + end, err
}
