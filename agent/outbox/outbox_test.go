package outbox

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func mustOpen(t *testing.T, dir string, max int, opts ...Option) *Outbox {
	t.Helper()
	o, err := Open(dir, max, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func mustAdd(t *testing.T, o *Outbox, payload string) string {
	t.Helper()
	id, err := o.Add([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// drain takes every pending payload in order, acknowledging each.
func drain(t *testing.T, o *Outbox) []string {
	t.Helper()
	var got []string
	for {
		id, p, ok, err := o.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return got
		}
		got = append(got, string(p))
		if err := o.Done(id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFIFOAndNextDoesNotRemove(t *testing.T) {
	o := mustOpen(t, t.TempDir(), 0)
	if _, _, ok, err := o.Next(); ok || err != nil {
		t.Fatalf("empty outbox: ok=%v err=%v", ok, err)
	}
	mustAdd(t, o, "a")
	mustAdd(t, o, "b")
	id1, p1, ok, err := o.Next()
	if !ok || err != nil || string(p1) != "a" {
		t.Fatalf("Next = %q, %v, %v", p1, ok, err)
	}
	id2, p2, _, _ := o.Next()
	if id2 != id1 || !bytes.Equal(p1, p2) {
		t.Fatalf("Next without Done moved on: %s %q", id2, p2)
	}
	if got := drain(t, o); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("drained %v", got)
	}
	if o.Len() != 0 {
		t.Fatalf("Len %d after drain", o.Len())
	}
}

func TestSurvivesRestartAndIgnoresStrayFiles(t *testing.T) {
	dir := t.TempDir()
	o := mustOpen(t, dir, 0)
	for i := range 12 { // past 9 and 10: names must sort numerically
		mustAdd(t, o, fmt.Sprint(i))
	}
	first, _, _, _ := o.Next()
	if err := o.Done(first); err != nil {
		t.Fatal(err)
	}
	// Leftovers of an interrupted atomic write and unrelated files.
	for _, name := range []string{".00000000000000000099.ev.tmp123", "notes.txt", "7.ev", "00000000000000000000.ev"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "00000000000000000500.ev"), 0o700); err != nil {
		t.Fatal(err)
	}

	o2 := mustOpen(t, dir, 0)
	if o2.Len() != 11 {
		t.Fatalf("reopened Len %d, want 11", o2.Len())
	}
	mustAdd(t, o2, "new") // must sort after the old ones
	want := "[1 2 3 4 5 6 7 8 9 10 11 new]"
	if got := drain(t, o2); fmt.Sprint(got) != want {
		t.Fatalf("after restart drained %v, want %v", got, want)
	}
}

func TestBoundDropsOldest(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	o := mustOpen(t, dir, 3, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for _, p := range []string{"a", "b", "c", "d", "e"} {
		mustAdd(t, o, p)
	}
	if o.Len() != 3 {
		t.Fatalf("Len %d, want 3", o.Len())
	}
	if !bytes.Contains(logs.Bytes(), []byte("dropped oldest")) {
		t.Fatalf("no log line for the drop: %q", logs.String())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("%d files on disk, want 3", len(entries))
	}
	// A smaller bound on reopen trims too.
	o2 := mustOpen(t, dir, 2)
	if got := drain(t, o2); fmt.Sprint(got) != "[d e]" {
		t.Fatalf("drained %v, want [d e]", got)
	}
}

func TestDone(t *testing.T) {
	o := mustOpen(t, t.TempDir(), 0)
	id := mustAdd(t, o, "a")
	if err := o.Done(id); err != nil {
		t.Fatal(err)
	}
	if err := o.Done(id); err != nil {
		t.Fatalf("second Done: %v", err)
	}
	for _, bad := range []string{"", "1", "../x", "abcdefghijklmnopqrst"} {
		if err := o.Done(bad); !errors.Is(err, ErrUnknownID) {
			t.Errorf("Done(%q) = %v, want ErrUnknownID", bad, err)
		}
	}
}

func TestConcurrentAddAndDrain(t *testing.T) {
	o := mustOpen(t, t.TempDir(), 0)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if _, err := o.Add([]byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := 0
	last := -1
	for seen < n {
		id, p, ok, err := o.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		var v int
		fmt.Sscan(string(p), &v)
		if v != last+1 {
			t.Fatalf("got event %d after %d", v, last)
		}
		last = v
		if err := o.Done(id); err != nil {
			t.Fatal(err)
		}
		seen++
	}
	wg.Wait()
	if o.Len() != 0 {
		t.Fatalf("Len %d", o.Len())
	}
}
