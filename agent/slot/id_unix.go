//go:build unix

package slot

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

type statNumbers struct{ dev, ino, rdev, nlink uint64 }

// statIDs returns the device, inode and special-device numbers of fi.
func statIDs(fi os.FileInfo) (statNumbers, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return statNumbers{}, false
	}
	return statNumbers{dev: uint64(st.Dev), ino: uint64(st.Ino), rdev: uint64(st.Rdev), nlink: uint64(st.Nlink)}, true
}

func makeDev(major, minor uint32) uint64 { return unix.Mkdev(major, minor) }

func splitDev(dev uint64) (major, minor uint32) { return unix.Major(dev), unix.Minor(dev) }
