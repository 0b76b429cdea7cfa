package userpatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// idCache remembers build IDs by device and inode, so each mapped file is
// read once however many processes map it.
type idCache struct {
	mu  sync.Mutex
	ids map[fileKey][]byte
}

var globalIDs = &idCache{ids: map[fileKey][]byte{}}

// buildID reads the build ID of the file behind mapping m of pid through
// /proc/PID/map_files, which opens the mapped file itself even when it was
// deleted or replaced on disk.
func (c *idCache) buildID(pid int, m Mapping, k fileKey) ([]byte, error) {
	c.mu.Lock()
	id, ok := c.ids[k]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	name := filepath.Join(procDir, strconv.Itoa(pid), "map_files", fmt.Sprintf("%x-%x", m.Start, m.End))
	f, err := os.Open(name)
	if err != nil {
		return nil, procErr(err)
	}
	defer f.Close()
	inf, err := ReadElfInfo(f)
	if err != nil {
		id = nil // not an ELF with a build ID: remember that too
	} else {
		id = inf.BuildID
	}
	c.mu.Lock()
	c.ids[k] = id
	c.mu.Unlock()
	return id, nil
}
