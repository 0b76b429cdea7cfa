package telemetry

import (
	"errors"
	"slices"
	"testing"
)

func TestParsers(t *testing.T) {
	if v, err := ParseUptime([]byte("12345.67 54321.00\n")); err != nil || v != 12345 {
		t.Errorf("uptime %d, %v", v, err)
	}
	if v, err := ParseLoadavg([]byte("0.12 3.40 10.05 1/123 4567\n")); err != nil || !slices.Equal(v, []uint64{12, 340, 1005}) {
		t.Errorf("loadavg %v, %v", v, err)
	}
	mi := "MemTotal:        2013440 kB\nMemFree:          100000 kB\nMemAvailable:    1507316 kB\nBuffers: 1 kB\n"
	if tot, av, err := ParseMeminfo([]byte(mi)); err != nil || tot != 2013440<<10 || av != 1507316<<10 {
		t.Errorf("meminfo %d %d %v", tot, av, err)
	}
	old := "MemTotal:        2013440 kB\nMemFree:          100000 kB\n"
	if _, av, err := ParseMeminfo([]byte(old)); err != nil || av != 100000<<10 {
		t.Errorf("meminfo before 3.14: %d %v", av, err)
	}
	if v, err := ParseVmRSS([]byte("Name:\tgraft-agent\nVmRSS:\t    5120 kB\n")); err != nil || v != 5120<<10 {
		t.Errorf("VmRSS %d %v", v, err)
	}
	if v, err := ParseMilli([]byte("-5250\n")); err != nil || v != -5250 {
		t.Errorf("temp %d %v", v, err)
	}
	for name, f := range map[string]func() error{
		"uptime":  func() error { _, err := ParseUptime([]byte("-1.0 2")); return err },
		"load":    func() error { _, err := ParseLoadavg([]byte("0.1 0.2")); return err },
		"load 3d": func() error { _, err := ParseLoadavg([]byte("0.123 0.2 0.3")); return err },
		"mem":     func() error { _, _, err := ParseMeminfo([]byte("MemTotal: 12 MB\n")); return err },
		"rss":     func() error { _, err := ParseVmRSS([]byte("VmHWM: 1 kB\n")); return err },
		"temp":    func() error { _, err := ParseMilli([]byte("hot")); return err },
	} {
		if err := f(); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}

// The parsers read files a kernel (or a test's fake /proc) wrote: any
// bytes give a value or ErrFormat, never a panic or a negative size.
func FuzzParsers(f *testing.F) {
	f.Add([]byte("12345.67 54321.00\n"))
	f.Add([]byte("0.12 3.40 10.05 1/123 4567\n"))
	f.Add([]byte("MemTotal: 2013440 kB\nMemAvailable: 1507316 kB\nVmRSS:\t 5120 kB\n"))
	f.Add([]byte("48250\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := ParseUptime(b); err == nil && v < 0 {
			t.Fatalf("negative uptime %d", v)
		} else if err != nil && !errors.Is(err, ErrFormat) {
			t.Fatal(err)
		}
		if v, err := ParseLoadavg(b); err == nil && len(v) != 3 {
			t.Fatalf("loadavg %v", v)
		}
		if tot, av, err := ParseMeminfo(b); err == nil && (tot <= 0 || av < 0) {
			t.Fatalf("meminfo %d %d", tot, av)
		}
		if v, err := ParseVmRSS(b); err == nil && v < 0 {
			t.Fatalf("rss %d", v)
		}
		ParseMilli(b)
	})
}
