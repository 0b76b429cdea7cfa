//go:build !linux

package memtrim

// Trim does nothing where there is no MADV_PAGEOUT.
func Trim() (Result, error) { return Result{}, ErrUnsupported }
