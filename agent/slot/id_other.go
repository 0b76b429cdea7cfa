//go:build !unix

package slot

import "os"

type statNumbers struct{ dev, ino, rdev, nlink uint64 }

// statIDs has no device numbers to offer here: CheckWritable fails closed.
func statIDs(fi os.FileInfo) (statNumbers, bool) { return statNumbers{}, false }

func makeDev(major, minor uint32) uint64 { return uint64(major)<<32 | uint64(minor) }

func splitDev(dev uint64) (major, minor uint32) { return uint32(dev >> 32), uint32(dev) }
