package userpatch_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
	hostOnly(t)
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
	began := time.Now()
	for range rescans {
		if tried(m.Rescan(ctx)) {
			retries++
		}
	}
	// The backoff (2 s, doubling) allows a retry at 2 s, 6 s, 14 s, ...
	// after the first try, however slow the rescans are on a busy host.
	allowed := 0
	for at := 2 * time.Second; at <= time.Since(began); at = 2*at + 2*time.Second {
		allowed++
	}
	st.mu.Lock()
	saves := st.saves
	st.mu.Unlock()
	t.Logf("%d rescans in %v: the failing process tried again %d times (the backoff allows %d), journal written %d times (Add included)",
		rescans, time.Since(began), retries, allowed, saves)
	if retries > allowed {
		t.Errorf("the failing process was stopped again in %d of %d back-to-back rescans", retries, rescans)
	}
	if saves > 1 {
		t.Errorf("journal written %d times, want once (Add); the rescans changed nothing", saves)
	}
	p.alive(t)
}
