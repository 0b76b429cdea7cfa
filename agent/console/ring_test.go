package console_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/console"
)

func TestRingIsBounded(t *testing.T) {
	r := console.NewRing(3)
	log := slog.New(r.Handler(nil))
	for i := range 10 {
		log.Info("line", "i", i, "pad", strings.Repeat("x", 2*console.MaxLine))
	}
	last := r.Last(10)
	if len(last) != 3 || !strings.Contains(last[2], "i=9") || len(last[0]) != console.MaxLine {
		t.Fatalf("ring %q", last)
	}
	got, seq := r.Since(0)
	if len(got) != 3 || seq != 10 {
		t.Fatalf("since 0: %d lines, seq %d", len(got), seq)
	}
	done := make(chan struct{})
	go func() { r.Wait(context.Background(), seq); close(done) }()
	time.Sleep(10 * time.Millisecond)
	log.Info("eleventh")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake on a new line")
	}
	if got, _ := r.Since(seq); len(got) != 1 || !strings.Contains(got[0], "eleventh") {
		t.Fatalf("since %d: %q", seq, got)
	}
}
