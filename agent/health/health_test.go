package health

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestChecker(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := errors.New("connection refused")
	probes := Probes{WaitConnected: ok, RefreshTUF: ok}
	tests := []struct {
		name    string
		checks  []string
		probes  Probes
		timeout time.Duration
		wantErr error
	}{
		{name: "defaults pass", checks: []string{"broker", "tuf"}, probes: probes},
		{name: "exec passes and sees the slot", checks: []string{`exec:test "$GRAFT_SLOT" = B && test "$GRAFT_SLOT_DEVICE" = /dev/b`},
			probes: Probes{SlotEnv: func(s string) []string { return []string{"GRAFT_SLOT_DEVICE=/dev/b"} }}},
		{name: "exec sees the slot device", checks: []string{`exec:test "$GRAFT_SLOT_DEVICE" = /dev/a`},
			probes: Probes{SlotEnv: func(s string) []string { return []string{"GRAFT_SLOT_DEVICE=/dev/b"} }}, wantErr: ErrFailed},
		{name: "exec fails", checks: []string{"broker", "exec:echo app did not start >&2; exit 3"}, probes: probes, wantErr: ErrFailed},
		{name: "broker down", checks: []string{"broker"}, probes: Probes{WaitConnected: func(context.Context) error { return down }}, wantErr: down},
		{name: "deadline", checks: []string{"tuf"}, timeout: 20 * time.Millisecond,
			probes:  Probes{RefreshTUF: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
			wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checks, err := Build(tt.checks, tt.probes)
			if err != nil {
				t.Fatal(err)
			}
			err = Checker{Checks: checks, Timeout: tt.timeout}.Check(context.Background(), "B")
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Check = %v, want pass", err)
			}
			if tt.wantErr != nil && (!errors.Is(err, tt.wantErr) || !errors.Is(err, ErrFailed)) {
				t.Fatalf("Check = %v, want %v wrapped in ErrFailed", err, tt.wantErr)
			}
		})
	}
}

func TestBuildRefusesUnknown(t *testing.T) {
	for _, n := range []string{"ping", "exec:", ""} {
		if _, err := Build([]string{n}, Probes{}); !errors.Is(err, ErrUnknownCheck) {
			t.Errorf("Build(%q) = %v, want ErrUnknownCheck", n, err)
		}
	}
}
