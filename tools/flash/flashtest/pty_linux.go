package flashtest

import (
	"os"
	"testing"

	"github.com/graft-dev/graft/agent/serialtty/serialttytest"
)

// PTY opens a pty pair: the master (the device's end) and the slave's path
// (the station's end). The master is closed when the test ends.
func PTY(t testing.TB) (*os.File, string) { return serialttytest.PTY(t) }
