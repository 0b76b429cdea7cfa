package eventseq

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/graft-dev/graft/agent/atomicfile"
)

// Block is how many numbers one write of the ceiling covers.
const Block = 1024

// ErrCorrupt means the counter file exists but holds no ceiling.
var ErrCorrupt = errors.New("eventseq: counter file is corrupt")

// Counter is one device's event counter. It is safe for concurrent use.
type Counter struct {
	path string

	mu      sync.Mutex
	next    uint64 // the next number to hand out
	ceiling uint64 // on disk: every number handed out is below it
}

// Open reads the counter kept at path; a missing file starts at 1.
func Open(path string) (*Counter, error) {
	c := &Counter{path: path, next: 1, ceiling: 1}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("eventseq: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v == 0 || v > 1<<62 {
		return nil, fmt.Errorf("%w: %s: %q", ErrCorrupt, path, b)
	}
	c.next, c.ceiling = v, v
	return c, nil
}

// Next returns the next number. It writes a new ceiling first when the
// one on disk does not cover it; an error then hands out nothing.
func (c *Counter) Next() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next >= c.ceiling {
		ceiling := c.next + Block
		if err := atomicfile.WriteFile(c.path, []byte(strconv.FormatUint(ceiling, 10)+"\n"), 0o600); err != nil {
			return 0, fmt.Errorf("eventseq: %w", err)
		}
		c.ceiling = ceiling
	}
	n := c.next
	c.next++
	return n, nil
}
