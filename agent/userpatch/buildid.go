package userpatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// fileKey names one version of a mapped file: device and inode, and what
// changes when the file is rewritten in place or its inode is reused
// after a package upgrade (size, mtime, ctime). A library replaced on
// disk gets a new key, so the cache tells the builds apart.
type fileKey struct {
	dev, inode   uint64
	size         int64
	mtime, ctime unix.Timespec
}

// idCache remembers what ReadElfInfo found in each version of a mapped
// file, so each file is read once however many processes map it.
type idCache struct {
	mu  sync.Mutex
	ids map[fileKey]*ElfInfo // nil: not an ELF with a build ID
}

// maxCached bounds the cache: files replaced by upgrades leave keys no
// mapping has any more; past the bound the cache starts over.
const maxCached = 4096

var globalIDs = &idCache{ids: map[fileKey]*ElfInfo{}}

// mapFile is the /proc/PID/map_files entry of mapping m: it opens the
// mapped file itself even when it was deleted or replaced on disk.
func mapFile(pid int, m Mapping) string {
	return filepath.Join(procDir, strconv.Itoa(pid), "map_files", fmt.Sprintf("%x-%x", m.Start, m.End))
}

// keyOf stats the file behind mapping m of pid.
func keyOf(pid int, m Mapping) (fileKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(mapFile(pid, m), &st); err != nil {
		return fileKey{}, procErr(err)
	}
	return fileKey{dev: uint64(st.Dev), inode: uint64(st.Ino), size: int64(st.Size), mtime: st.Mtim, ctime: st.Ctim}, nil
}

// info reads the ELF facts of the file behind mapping m of pid (nil when
// it is not an ELF with a build ID).
func (c *idCache) info(pid int, m Mapping) (*ElfInfo, error) {
	k, err := keyOf(pid, m)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	inf, ok := c.ids[k]
	c.mu.Unlock()
	if ok {
		return inf, nil
	}
	f, err := openMapped(pid, m)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if got, err := ReadElfInfo(f); err == nil {
		inf = &got
	}
	c.mu.Lock()
	if len(c.ids) >= maxCached {
		clear(c.ids)
	}
	c.ids[k] = inf
	c.mu.Unlock()
	return inf, nil
}

// buildID is the GNU build ID of the file behind mapping m of pid (nil:
// none).
func (c *idCache) buildID(pid int, m Mapping) ([]byte, error) {
	inf, err := c.info(pid, m)
	if err != nil || inf == nil {
		return nil, err
	}
	return inf.BuildID, nil
}

func openMapped(pid int, m Mapping) (*os.File, error) {
	f, err := os.Open(mapFile(pid, m))
	if err != nil {
		return nil, procErr(err)
	}
	return f, nil
}
