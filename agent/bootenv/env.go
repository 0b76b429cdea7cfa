package bootenv

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Errors returned by this package; they are wrapped with details, so test
// them with errors.Is.
var (
	// ErrBadCRC: a U-Boot environment copy's CRC32 does not match its data.
	ErrBadCRC = errors.New("bootenv: bad CRC")
	// ErrNoValidCopy: neither copy of a redundant U-Boot environment is valid.
	ErrNoValidCopy = errors.New("bootenv: no valid environment copy")
	// ErrTooLarge: the variables do not fit in the environment area.
	ErrTooLarge = errors.New("bootenv: environment too large")
	// ErrMalformed: the bytes are not an environment of the expected format.
	ErrMalformed = errors.New("bootenv: malformed environment")
	// ErrConfig: the location configuration (fw_env.config) is invalid or
	// describes something this package does not support.
	ErrConfig = errors.New("bootenv: bad configuration")
	// ErrInvalidVar: a variable name or value cannot be stored in the
	// format (empty name, '=' or NUL in a name, NUL in a value, ...).
	ErrInvalidVar = errors.New("bootenv: invalid variable")
)

// Store is a bootloader environment.
type Store interface {
	Load() (Env, error)
	Save(Env) error
}

// Env is a set of bootloader variables, name to value.
type Env map[string]string

// Keys returns the variable names in sorted order, the order in which the
// encoders write them.
func (e Env) Keys() []string {
	return slices.Sorted(maps.Keys(e))
}

// Clone returns a copy of e that shares nothing with it.
func (e Env) Clone() Env {
	c := make(Env, len(e))
	maps.Copy(c, e)
	return c
}

// updater is implemented by stores that can hold a lock across a whole
// load-modify-save (UBoot holds fw_printenv's lock file).
type updater interface {
	update(fn func(Env) error) error
}

// Update loads the environment of s, lets fn modify it, and saves it. If fn
// returns an error nothing is saved. If fn leaves the variables unchanged
// nothing is written (sparing flash). For a *UBoot the whole sequence runs
// under the fw_printenv lock, so fw_setenv cannot interleave.
func Update(s Store, fn func(Env) error) error {
	if u, ok := s.(updater); ok {
		return u.update(fn)
	}
	return loadModifySave(s.Load, s.Save, fn)
}

func loadModifySave(load func() (Env, error), save func(Env) error, fn func(Env) error) error {
	env, err := load()
	if err != nil {
		return err
	}
	before := env.Clone()
	if err := fn(env); err != nil {
		return err
	}
	if maps.Equal(before, env) {
		return nil
	}
	return save(env)
}

// checkVar applies the rules common to both formats: a name is not empty
// and holds neither '=' nor NUL; a value holds no NUL.
func checkVar(name, value string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidVar)
	case strings.ContainsAny(name, "=\x00"):
		return fmt.Errorf("%w: name %q contains '=' or NUL", ErrInvalidVar, name)
	case strings.ContainsRune(value, 0):
		return fmt.Errorf("%w: value of %q contains NUL", ErrInvalidVar, name)
	}
	return nil
}

// CheckAssign applies fw_setenv's rules to a variable set by hand, on top
// of what the formats can store: a name is not empty and holds neither
// '=' nor a control character; a value holds no newline, carriage return
// or NUL (U-Boot's text form and GRUB's block are line-based).
func CheckAssign(name, value string) error {
	if err := checkVar(name, value); err != nil {
		return err
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: name %q contains control character %#x", ErrInvalidVar, name, c)
		}
	}
	if strings.ContainsAny(value, "\n\r") {
		return fmt.Errorf("%w: value of %q contains a line break", ErrInvalidVar, name)
	}
	return nil
}
