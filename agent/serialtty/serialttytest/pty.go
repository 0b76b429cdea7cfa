// Package serialttytest gives tests a real serial line without hardware: a
// Linux pty pair, the master on one side and the slave's path (which
// go.bug.st/serial or serialtty opens like a UART) on the other.
package serialttytest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// PTY opens a pty pair and returns the master and the slave's path. The
// master is non-blocking, so closing it (the test ending, or a cable pull)
// ends a read in progress; it is closed when the test ends.
func PTY(t testing.TB) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}
