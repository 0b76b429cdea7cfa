package config

import (
	"fmt"
	"time"
)

// Window is a daily time window in local time, such as 02:00-04:00. A
// window whose end is before its start crosses midnight (23:00-01:00).
// The zero value is no window.
type Window struct {
	Start, End time.Duration // offsets from local midnight; Start != End when set
}

// IsZero reports whether w is unset.
func (w Window) IsZero() bool { return w == Window{} }

// ParseWindow reads "HH:MM-HH:MM" (24-hour clock, local time).
func ParseWindow(s string) (Window, error) {
	var h1, m1, h2, m2 int
	var rest string
	n, _ := fmt.Sscanf(s, "%02d:%02d-%02d:%02d%s", &h1, &m1, &h2, &m2, &rest)
	if n != 4 || len(s) != len("HH:MM-HH:MM") {
		return Window{}, bad("%q is not a window such as 02:00-04:00 (HH:MM-HH:MM, local time)", s)
	}
	for _, v := range [][2]int{{h1, m1}, {h2, m2}} {
		if v[0] < 0 || v[0] > 23 || v[1] < 0 || v[1] > 59 {
			return Window{}, bad("%q: hours are 00 to 23 and minutes 00 to 59", s)
		}
	}
	w := Window{
		Start: time.Duration(h1)*time.Hour + time.Duration(m1)*time.Minute,
		End:   time.Duration(h2)*time.Hour + time.Duration(m2)*time.Minute,
	}
	if w.Start == w.End {
		return Window{}, bad("%q: the window is empty (start equals end)", s)
	}
	return w, nil
}

// String returns the window as ParseWindow reads it.
func (w Window) String() string {
	f := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return f(w.Start) + "-" + f(w.End)
}

// Next returns when the window next opens at or after now (in now's
// location), or now itself when now is inside the window. A zero window
// returns now.
func (w Window) Next(now time.Time) time.Time {
	if w.IsZero() {
		return now
	}
	y, mo, d := now.Date()
	midnight := time.Date(y, mo, d, 0, 0, 0, 0, now.Location())
	// Yesterday's window may still be open (crossing midnight).
	for day := -1; day <= 1; day++ {
		start := wallClock(midnight, day, w.Start)
		end := wallClock(midnight, day, w.End)
		if !end.After(start) {
			end = wallClock(midnight, day+1, w.End)
		}
		if !now.Before(start) && now.Before(end) {
			return now
		}
		if start.After(now) {
			return start
		}
	}
	return wallClock(midnight, 1, w.Start)
}

// wallClock is the local time off after midnight on day days from
// midnight (so that daylight saving days keep their wall-clock times).
func wallClock(midnight time.Time, day int, off time.Duration) time.Time {
	d := midnight.AddDate(0, 0, day)
	return time.Date(d.Year(), d.Month(), d.Day(), int(off/time.Hour), int(off%time.Hour/time.Minute), 0, 0, d.Location())
}
