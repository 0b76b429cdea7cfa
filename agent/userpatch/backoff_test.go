package userpatch_test

import (
	"context"
	"sync"
	"testing"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// countingStore counts journal writes.
type countingStore struct {
	mu    sync.Mutex
	saves int
}

func (s *countingStore) SavePatches([]userpatch.Active) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves++
	return nil
}

// TestFailingProcessBacksOff: a process the patch fails in (its bytes
// differ from the bundle's) is not stopped again on every rescan, and
// rescans that change nothing write no journal.
func TestFailingProcessBacksOff(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, userpatchtest.GTProg, "1")
	p.waitFor(t, userpatchtest.GTBefore)
	st := &countingStore{}
	m, err := userpatch.NewManager(st, nil, userpatch.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	res, err := m.Add(ctx, bundle(t, f, userpatchtest.BadCheck), "unused")
	if err != nil {
		t.Fatal(err)
	}
	tried := func(res []userpatch.ProcResult) bool {
		for _, r := range res {
			if r.PID == p.pid() && r.Result == userpatch.ResultFailed {
				return true
			}
		}
		return false
	}
	if !tried(res) {
		t.Fatalf("Add results %+v: want pid %d failed", res, p.pid())
	}
	retries := 0
	const rescans = 10
	for range rescans {
		if tried(m.Rescan(ctx)) {
			retries++
		}
	}
	st.mu.Lock()
	saves := st.saves
	st.mu.Unlock()
	t.Logf("%d rescans: the failing process tried again %d times, journal written %d times (Add included)", rescans, retries, saves)
	if retries > 0 {
		t.Errorf("the failing process was stopped again in %d of %d back-to-back rescans", retries, rescans)
	}
	if saves > 1 {
		t.Errorf("journal written %d times, want once (Add); the rescans changed nothing", saves)
	}
	p.alive(t)
}
