package rollout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrSpec marks a malformed rollout parameter.
var ErrSpec = errors.New("rollout: bad parameter")

// Size is a wave's cumulative size: a device count, or a percentage of
// the rollout's devices (rounded up, at least one).
type Size struct {
	Count   int     `json:"count,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

func (s Size) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(s.Count)
}

// of is how many of n devices the size covers.
func (s Size) of(n int) int {
	if s.Percent > 0 {
		k := int(float64(n)*s.Percent/100 + 0.999999)
		return min(max(k, 1), n)
	}
	return min(s.Count, n)
}

// Threshold is --max-failures: a count, or a percentage of the devices
// that have finished.
type Threshold struct {
	Count   int     `json:"count,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

func (t Threshold) String() string {
	if t.Percent > 0 {
		return strconv.FormatFloat(t.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(t.Count)
}

// Window is a daily time window, in minutes after midnight, of the clock
// the controller passes in. Start > End spans midnight.
type Window struct {
	Start int `json:"start_min"`
	End   int `json:"end_min"`
}

// Open reports whether t falls in the window.
func (w Window) Open(t time.Time) bool {
	m := t.Hour()*60 + t.Minute()
	if w.Start <= w.End {
		return m >= w.Start && m < w.End
	}
	return m >= w.Start || m < w.End
}

func (w Window) String() string {
	return fmt.Sprintf("%02d:%02d-%02d:%02d", w.Start/60, w.Start%60, w.End/60, w.End%60)
}

// Spec is a rollout's parameters, stored with it.
type Spec struct {
	Waves         []Size        `json:"waves"`
	Soak          time.Duration `json:"soak_ns"`
	MaxFailures   Threshold     `json:"max_failures"`
	MinSample     int           `json:"min_sample"` // finished devices before a percentage is judged mid-wave
	Timeout       time.Duration `json:"timeout_ns"` // per device, from its notice
	MaxConcurrent int           `json:"max_concurrent,omitempty"`
	Rate          int           `json:"rate_per_min,omitempty"` // notices per minute at most, so a large wave does not hit the repository at once
	Window        *Window       `json:"window,omitempty"`
}

// ParseWaves parses "1,5%,25%,100%": cumulative sizes, each larger than
// the one before. A last wave short of everything is completed by 100%.
func ParseWaves(s string) ([]Size, error) {
	var out []Size
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		var sz Size
		if p, ok := strings.CutSuffix(f, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || v <= 0 || v > 100 {
				return nil, fmt.Errorf("%w: wave %q: want a count or a percentage in (0,100]", ErrSpec, f)
			}
			sz.Percent = v
		} else {
			v, err := strconv.Atoi(f)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("%w: wave %q: want a count of at least 1 or a percentage", ErrSpec, f)
			}
			sz.Count = v
		}
		if len(out) > 0 {
			prev := out[len(out)-1]
			if prev.Percent > 0 && sz.Percent > 0 && sz.Percent <= prev.Percent ||
				prev.Percent == 0 && sz.Percent == 0 && sz.Count <= prev.Count {
				return nil, fmt.Errorf("%w: waves must grow: %s after %s", ErrSpec, sz, prev)
			}
		}
		out = append(out, sz)
	}
	if last := out[len(out)-1]; last.Percent != 100 {
		out = append(out, Size{Percent: 100})
	}
	return out, nil
}

// ParseThreshold parses --max-failures: "2%" or "3".
func ParseThreshold(s string) (Threshold, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || v >= 100 {
			return Threshold{}, fmt.Errorf("%w: --max-failures %q: want a percentage in [0,100)", ErrSpec, s)
		}
		return Threshold{Percent: v}, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return Threshold{}, fmt.Errorf("%w: --max-failures %q: want a count or a percentage", ErrSpec, s)
	}
	return Threshold{Count: v}, nil
}

// ParseWindow parses "HH:MM-HH:MM".
func ParseWindow(s string) (Window, error) {
	a, b, ok := strings.Cut(s, "-")
	start, err1 := clock(a)
	end, err2 := clock(b)
	if !ok || err1 != nil || err2 != nil || start == end {
		return Window{}, fmt.Errorf("%w: --window %q: want HH:MM-HH:MM", ErrSpec, s)
	}
	return Window{Start: start, End: end}, nil
}

func clock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}
