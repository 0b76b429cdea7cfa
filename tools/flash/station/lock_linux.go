package station

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockPort takes an exclusive advisory lock on the port, so that two
// stations (or two entries for one cable) never talk to one device at
// once. (TIOCEXCL, which go.bug.st/serial sets, does not stop root.)
func lockPort(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("port lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errors.New("port busy (another station has it)")
		}
		return nil, fmt.Errorf("port lock: %w", err)
	}
	return func() { f.Close() }, nil
}
