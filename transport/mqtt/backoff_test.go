package mqtt

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	const lo, hi = time.Second, 60 * time.Second
	top := Backoff(1, lo, hi, 0.999999)
	tests := []struct {
		name     string
		attempt  int
		r        float64
		from, to time.Duration // inclusive bounds of the delay
	}{
		{"first, r=0 is the floor", 1, 0, lo / 10, lo / 10},
		{"first, r near 1 stays below base", 1, 0.999999999, 999 * time.Millisecond, lo - 1},
		{"second doubles", 2, 0, 2 * lo / 10, 2 * lo / 10},
		{"capped", 30, 0, hi / 10, hi / 10},
		{"capped, r=0.5", 1000, 0.5, hi/10 + (hi-hi/10)/2, hi/10 + (hi-hi/10)/2},
		{"attempt 0 counts as 1", 0, 0, lo / 10, lo / 10},
		{"r above 1 is clamped", 1, 7, top, top},
		{"negative r is clamped", 1, -1, lo / 10, lo / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Backoff(tt.attempt, lo, hi, tt.r); got < tt.from || got > tt.to {
				t.Fatalf("got %v, want within [%v, %v]", got, tt.from, tt.to)
			}
		})
	}
}

// A fleet whose devices share one seed must still spread its reconnects:
// each device's delays differ from the others' and stay inside
// [base/10, base) of their attempt.
func TestJitterDiffersPerDeviceWithinBounds(t *testing.T) {
	const lo, hi = time.Second, 60 * time.Second
	devices := []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6", "dev-7", "dev-8"}
	first := map[time.Duration]string{}
	for _, d := range devices {
		r := JitterSource(42, d)
		base := lo
		for attempt := 1; attempt <= 10; attempt++ {
			got := Backoff(attempt, lo, hi, r())
			if got < base/10 || got >= base {
				t.Fatalf("%s attempt %d: %v outside [%v, %v)", d, attempt, got, base/10, base)
			}
			if attempt == 1 {
				if other, dup := first[got]; dup {
					t.Fatalf("%s and %s draw the same first delay %v", d, other, got)
				}
				first[got] = d
			}
			base = min(2*base, hi)
		}
	}
	// The same seed and device give the same sequence (reproducible tests).
	a, b := JitterSource(42, "dev-1"), JitterSource(42, "dev-1")
	for range 5 {
		if a() != b() {
			t.Fatal("JitterSource is not deterministic")
		}
	}
}
