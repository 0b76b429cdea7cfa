//go:build !linux

package provision

import "errors"

// MountInit is Linux only.
func MountInit() error { return errors.New("provisioning init runs on Linux only") }
