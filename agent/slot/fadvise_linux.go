package slot

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to forget the cached pages of f's first size
// bytes (they are clean after fsync), so the read-back reaches the device.
// It is advice: errors are ignored.
func dropCache(f *os.File, size int64) {
	_ = unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
}
