//go:build amd64 || arm64

package userpatch

import "syscall"

// retErr decodes a raw system call return value: -4095..-1 are errnos.
func retErr(v uint64) (uint64, syscall.Errno) {
	if v > ^uint64(4095) {
		return 0, syscall.Errno(-int64(v))
	}
	return v, 0
}
