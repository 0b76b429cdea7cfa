package ledger

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

func TestLedger(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a := Record{Station: "s1", Port: "/dev/ttyUSB0", ID: "rpi4-aa", Serial: "aa", Board: "raspberrypi4-64", CertSHA256: "c1", Release: "v1", Outcome: Provisioned}
	if added, err := l.Append(ctx, Record{Station: "s1", Serial: "aa", Outcome: Failed, Reason: "line lost"}); err != nil || !added {
		t.Fatalf("failed record: %v %v", added, err)
	}
	if added, err := l.Append(ctx, a); err != nil || !added {
		t.Fatalf("first identity: %v %v", added, err)
	}
	if added, err := l.Append(ctx, a); err != nil || added {
		t.Fatalf("same identity again: added=%v err=%v, want not added", added, err)
	}
	b := a
	b.ID, b.CertSHA256 = "rpi4-other", "c2"
	if _, err := l.Append(ctx, b); !errors.Is(err, ErrSecondIdentity) {
		t.Fatalf("second identity: err = %v, want ErrSecondIdentity", err)
	}
	b.Forced = true
	if added, err := l.Append(ctx, b); err != nil || !added {
		t.Fatalf("forced: %v %v", added, err)
	}
	got, ok, err := l.Identity(ctx, "aa")
	if err != nil || !ok || got.ID != "rpi4-other" {
		t.Fatalf("identity = %+v %v %v", got, ok, err)
	}
	if _, err := l.DB().Exec(`UPDATE records SET outcome = 'failed'`); err == nil {
		t.Fatal("UPDATE succeeded on an append-only ledger")
	}
	if _, err := l.DB().Exec(`DELETE FROM records`); err == nil {
		t.Fatal("DELETE succeeded on an append-only ledger")
	}
	l.Close()

	// Reopen: the records are durable; concurrent appends all land.
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Append(ctx, Record{Station: "s2", Serial: "x", Outcome: Failed}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rs, err := l.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 11 {
		t.Fatalf("%d records, want 11", len(rs))
	}
}
