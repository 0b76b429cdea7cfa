package eventseq_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/agent/eventseq"
)

// TestNeverGoesBack: numbers grow within a run and across restarts,
// including a restart that lost everything not on disk (a power cut).
func TestNeverGoesBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.seq")
	last := uint64(0)
	for run := range 3 {
		c, err := eventseq.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for range eventseq.Block + 7 { // crosses a ceiling each run
			n, err := c.Next()
			if err != nil {
				t.Fatal(err)
			}
			if n <= last {
				t.Fatalf("run %d: %d after %d", run, n, last)
			}
			last = n
		}
	}
}

func TestCorruptFile(t *testing.T) {
	for _, content := range []string{"", "x\n", "0\n", "-5\n"} {
		path := filepath.Join(t.TempDir(), "status.seq")
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := eventseq.Open(path); !errors.Is(err, eventseq.ErrCorrupt) {
			t.Errorf("Open(%q) = %v, want ErrCorrupt", content, err)
		}
	}
}

func TestWriteFailureHandsOutNothing(t *testing.T) {
	c, err := eventseq.Open(filepath.Join(t.TempDir(), "missing-dir", "status.seq"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Next(); err == nil {
		t.Errorf("Next = %d with no place to keep the ceiling, want an error", n)
	}
}
