//go:build !linux

package serialtty

import (
	"errors"
	"os"
)

// ErrUnsupported: serial ttys are opened on Linux only.
var ErrUnsupported = errors.New("serialtty: not supported on this OS")

// Open is not supported here.
func Open(string, int) (*os.File, error) { return nil, ErrUnsupported }

// MakeRaw is not supported here.
func MakeRaw(*os.File, int) error { return ErrUnsupported }
