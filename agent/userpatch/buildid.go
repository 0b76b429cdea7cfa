package userpatch

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// idCache remembers what the agent reads from each mapped file (build
// ID and DT_SONAME) by device and inode, so each file is read once
// however many processes map it.
type idCache struct {
	mu  sync.Mutex
	ids map[fileKey]elfID
}

// elfID is what idCache keeps of one file: nil and "" for a file that is
// not an ELF with a build ID, or has no DT_SONAME.
type elfID struct {
	buildID []byte
	soname  string
}

var globalIDs = &idCache{ids: map[fileKey]elfID{}}

// buildID reads the build ID of the file behind mapping m of pid (see
// info).
func (c *idCache) buildID(pid int, m Mapping, k fileKey) ([]byte, error) {
	id, err := c.info(pid, m, k)
	return id.buildID, err
}

// info reads the build ID and soname of the file behind mapping m of pid
// through /proc/PID/map_files, which opens the mapped file itself even
// when it was deleted or replaced on disk.
func (c *idCache) info(pid int, m Mapping, k fileKey) (elfID, error) {
	c.mu.Lock()
	id, ok := c.ids[k]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	name := filepath.Join(procDir, strconv.Itoa(pid), "map_files", fmt.Sprintf("%x-%x", m.Start, m.End))
	f, err := os.Open(name)
	if err != nil {
		return elfID{}, procErr(err)
	}
	defer f.Close()
	inf, err := ReadElfInfo(f)
	id = elfID{soname: inf.Soname}
	if err == nil {
		id.buildID = inf.BuildID
	}
	c.mu.Lock()
	c.ids[k] = id
	c.mu.Unlock()
	return id, nil
}
