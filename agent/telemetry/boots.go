package telemetry

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/agent/atomicfile"
)

// CountBoot returns how many boots the agent has seen, counting this one
// (bootID) once however often the agent restarts in it. The count lives
// in path as "<count> <boot ID>"; a missing or unreadable file starts
// again from 1.
func CountBoot(path, bootID string) (uint64, error) {
	var n uint64
	if b, err := os.ReadFile(path); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			if v, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				if f[1] == bootID {
					return v, nil
				}
				n = v
			}
		}
	}
	n++
	if err := atomicfile.WriteFile(path, []byte(fmt.Sprintf("%d %s\n", n, bootID)), 0o600); err != nil {
		return n, fmt.Errorf("boot count: %w", err)
	}
	return n, nil
}
