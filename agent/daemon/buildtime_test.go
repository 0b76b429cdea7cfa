package daemon

import (
	"testing"
	"time"
)

// TestBuildTime: the stamped build time (make: the commit's time) is what
// the TUF client's floor starts from; garbage stamps give the zero time.
func TestBuildTime(t *testing.T) {
	old := buildTime
	defer func() { buildTime = old }()
	buildTime = "2026-12-04T17:33:51+00:00"
	if got, want := BuildTime(), time.Date(2026, 12, 4, 17, 33, 51, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("BuildTime() = %v, want %v", got, want)
	}
	buildTime = "yesterday"
	if got := BuildTime(); !got.IsZero() {
		t.Fatalf("BuildTime() of a bad stamp = %v, want zero", got)
	}
}
