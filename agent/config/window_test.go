package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in      string
		want    Window
		wantErr bool
	}{
		{"02:00-04:00", Window{2 * time.Hour, 4 * time.Hour}, false},
		{"23:30-01:15", Window{23*time.Hour + 30*time.Minute, time.Hour + 15*time.Minute}, false},
		{"00:00-23:59", Window{0, 23*time.Hour + 59*time.Minute}, false},
		{"2:00-4:00", Window{}, true},
		{"02:00-02:00", Window{}, true},
		{"24:00-01:00", Window{}, true},
		{"02:60-03:00", Window{}, true},
		{"02:00-04:00x", Window{}, true},
		{"02:00 04:00", Window{}, true},
		{"", Window{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			w, err := ParseWindow(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrBadValue) {
					t.Errorf("ParseWindow = %v, %v; want ErrBadValue", w, err)
				}
				return
			}
			if err != nil || w != tt.want {
				t.Fatalf("ParseWindow = %v, %v; want %v", w, err, tt.want)
			}
			if w.String() != tt.in {
				t.Errorf("String = %q, want %q", w.String(), tt.in)
			}
		})
	}
}

func TestWindowNext(t *testing.T) {
	loc := time.FixedZone("test", 3600)
	at := func(day, h, m int) time.Time { return time.Date(2026, 3, day, h, m, 0, 0, loc) }
	night, _ := ParseWindow("02:00-04:00")
	cross, _ := ParseWindow("23:00-01:00")
	tests := []struct {
		name string
		w    Window
		now  time.Time
		want time.Time
	}{
		{"before the window", night, at(10, 1, 0), at(10, 2, 0)},
		{"at the start", night, at(10, 2, 0), at(10, 2, 0)},
		{"inside", night, at(10, 3, 59), at(10, 3, 59)},
		{"at the end: tomorrow", night, at(10, 4, 0), at(11, 2, 0)},
		{"afternoon: tomorrow", night, at(10, 15, 0), at(11, 2, 0)},
		{"crossing midnight, before", cross, at(10, 22, 0), at(10, 23, 0)},
		{"crossing midnight, after midnight inside", cross, at(10, 0, 30), at(10, 0, 30)},
		{"crossing midnight, late inside", cross, at(10, 23, 30), at(10, 23, 30)},
		{"crossing midnight, after", cross, at(10, 1, 0), at(10, 23, 0)},
		{"zero window: now", Window{}, at(10, 15, 0), at(10, 15, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Next(tt.now); !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.now, got, tt.want)
			}
		})
	}
}

func TestPolicyLaterNeedsWindow(t *testing.T) {
	base := "[device]\nid = d\nboard = sim\n[mqtt]\nbroker = tcp://h:1883\n[tuf]\nmetadata_url = http://h/m\ntargets_url = http://h/t\n[update]\npolicy = live-now-image-later\n"
	_, err := Parse(strings.NewReader(base), "a.conf")
	var ce *Error
	if !errors.Is(err, ErrMissingKey) || !errors.As(err, &ce) || ce.Key != "update.maintenance" {
		t.Fatalf("Parse without a window = %v, want ErrMissingKey for update.maintenance", err)
	}
	c, err := Parse(strings.NewReader(base+"maintenance = 02:00-04:00\n"), "a.conf")
	if err != nil || c.Maintenance.String() != "02:00-04:00" {
		t.Fatalf("Parse = %+v, %v", c, err)
	}
}
