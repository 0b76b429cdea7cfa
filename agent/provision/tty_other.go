//go:build !linux

package provision

import (
	"errors"
	"os"
)

func openTTY(string) (*os.File, error) {
	return nil, errors.New("provisioning mode runs on Linux only")
}

func makeRaw(*os.File, int) error { return nil }
