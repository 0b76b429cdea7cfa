package telemetry

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// ErrFormat: a /proc or /sys file did not have the expected shape.
var ErrFormat = errors.New("telemetry: unexpected format")

// maxProcFile bounds what is read from any one /proc or /sys file.
const maxProcFile = 64 << 10

// ParseUptime reads /proc/uptime ("12345.67 54321.00") as whole seconds.
func ParseUptime(b []byte) (int64, error) {
	f := bytes.Fields(b)
	if len(f) < 1 {
		return 0, fmt.Errorf("%w: uptime: empty", ErrFormat)
	}
	whole, _, _ := bytes.Cut(f[0], []byte("."))
	n, err := strconv.ParseInt(string(whole), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: uptime %q", ErrFormat, f[0])
	}
	return n, nil
}

// ParseLoadavg reads /proc/loadavg ("0.12 0.30 0.05 1/123 4567") as the
// three averages in hundredths.
func ParseLoadavg(b []byte) ([]uint64, error) {
	f := bytes.Fields(b)
	if len(f) < 3 {
		return nil, fmt.Errorf("%w: loadavg %q", ErrFormat, b)
	}
	out := make([]uint64, 3)
	for i := range out {
		v, err := hundredths(f[i])
		if err != nil {
			return nil, fmt.Errorf("%w: loadavg %q", ErrFormat, f[i])
		}
		out[i] = v
	}
	return out, nil
}

// hundredths parses "12.34" (at most two decimals, as the kernel prints
// load averages) as 1234.
func hundredths(b []byte) (uint64, error) {
	whole, frac, _ := bytes.Cut(b, []byte("."))
	if len(whole) == 0 || len(whole) > 9 || len(frac) > 2 {
		return 0, ErrFormat
	}
	var v uint64
	for _, c := range whole {
		if c < '0' || c > '9' {
			return 0, ErrFormat
		}
		v = v*10 + uint64(c-'0')
	}
	v *= 100
	scale := uint64(10)
	for _, c := range frac {
		if c < '0' || c > '9' {
			return 0, ErrFormat
		}
		v += uint64(c-'0') * scale
		scale /= 10
	}
	return v, nil
}

// ParseMeminfo reads MemTotal and MemAvailable from /proc/meminfo, in
// bytes. A kernel before 3.14 has no MemAvailable: it is then MemFree.
func ParseMeminfo(b []byte) (total, avail int64, err error) {
	var free int64 = -1
	avail = -1
	for line := range bytes.Lines(b) {
		key, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "MemTotal":
			dst = &total
		case "MemAvailable":
			dst = &avail
		case "MemFree":
			dst = &free
		default:
			continue
		}
		v, err := kB(rest)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: meminfo %s", ErrFormat, key)
		}
		*dst = v
	}
	if avail < 0 {
		avail = free
	}
	if total <= 0 || avail < 0 {
		return 0, 0, fmt.Errorf("%w: meminfo without MemTotal and MemAvailable", ErrFormat)
	}
	return total, avail, nil
}

// ParseVmRSS reads VmRSS from /proc/PID/status, in bytes.
func ParseVmRSS(b []byte) (int64, error) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			v, err := kB(rest)
			if err != nil {
				return 0, fmt.Errorf("%w: VmRSS %q", ErrFormat, rest)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%w: no VmRSS", ErrFormat)
}

// kB parses "   123456 kB" as bytes.
func kB(b []byte) (int64, error) {
	f := bytes.Fields(b)
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, ErrFormat
	}
	v, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil || v < 0 || v > 1<<53 {
		return 0, ErrFormat
	}
	return v << 10, nil
}

// ParseMilli reads a sysfs thermal zone's temp (millidegrees Celsius, may
// be negative).
func ParseMilli(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil || v < -1_000_000 || v > 1_000_000 {
		return 0, fmt.Errorf("%w: temperature %q", ErrFormat, b)
	}
	return v, nil
}
