//go:build !linux

package bootenv

import (
	"fmt"
	"runtime"
)

// lockFile is only implemented on Linux, where the agent runs. Elsewhere
// an empty path (no locking) is the only one accepted.
func lockFile(path string) (unlock func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	return nil, fmt.Errorf("%w: lock file %s: file locking is not implemented on %s; set UBoot.LockFile to \"\"", ErrConfig, path, runtime.GOOS)
}
