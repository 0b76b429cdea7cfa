package bootenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FWLocation is one line of an fw_env.config: where one copy of a U-Boot
// environment lives.
type FWLocation struct {
	Device string // device node or file
	// Offset of the copy in Device. Negative counts back from the end of
	// the device or file (libubootenv's rule for block devices).
	Offset int64
	Size   int64 // size of the copy, header included
	// SectorSize and Sectors are the optional flash erase-block columns;
	// 0 when absent. They matter only on MTD flash, which this package
	// does not write; they are kept so a config round-trips.
	SectorSize int64
	Sectors    int64
}

// ConfigError locates a problem in an fw_env.config. It matches ErrConfig
// with errors.Is.
type ConfigError struct {
	File string
	Line int // 1-based; 0 when the problem is the file as a whole
	Err  error
}

func (e *ConfigError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("bootenv: %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("bootenv: %s:%d: %v", e.File, e.Line, e.Err)
}

func (e *ConfigError) Unwrap() []error { return []error{ErrConfig, e.Err} }

// ParseFWConfig parses an fw_env.config as libubootenv and U-Boot's
// fw_printenv read it:
//
//	# device     offset   env-size  [sector-size  [sectors  [disable-lock]]]
//	/dev/mmcblk0 0x400000 0x4000
//	/dev/mmcblk0 0x404000 0x4000
//
// Fields are separated by blanks; a field starting with '#' starts a
// comment. The offset is a C integer (0x.. hex, 0.. octal, else decimal,
// optionally negative). The size, sector size and sector count are always
// hexadecimal, with or without 0x, as the real tools scan them with %x:
// "16384" means 0x16384. One location is a single copy, two are redundant
// copies. Errors are *ConfigError, naming name and the line.
func ParseFWConfig(r io.Reader, name string) ([]FWLocation, error) {
	var locs []FWLocation
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		loc, err := parseFWLine(fields)
		if err != nil {
			return nil, &ConfigError{File: name, Line: line, Err: err}
		}
		if len(locs) == 2 {
			return nil, &ConfigError{File: name, Line: line, Err: errors.New("a third environment location (at most two: a copy and its redundant copy)")}
		}
		locs = append(locs, loc)
	}
	if err := sc.Err(); err != nil {
		return nil, &ConfigError{File: name, Line: line + 1, Err: err}
	}
	if len(locs) == 0 {
		return nil, &ConfigError{File: name, Err: errors.New("no environment location")}
	}
	return locs, nil
}

func parseFWLine(f []string) (FWLocation, error) {
	if len(f) < 3 {
		return FWLocation{}, fmt.Errorf("want device, offset and size, got %d field(s)", len(f))
	}
	if len(f) > 6 {
		return FWLocation{}, fmt.Errorf("want at most 6 fields, got %d", len(f))
	}
	loc := FWLocation{Device: f[0]}
	var err error
	if loc.Offset, err = parseCInt(f[1]); err != nil {
		return FWLocation{}, fmt.Errorf("offset %q: %w", f[1], err)
	}
	if loc.Size, err = parseHex(f[2]); err != nil {
		return FWLocation{}, fmt.Errorf("size %q: %w", f[2], err)
	}
	if loc.Size == 0 {
		return FWLocation{}, fmt.Errorf("size is zero")
	}
	if loc.Size > MaxUBootSize {
		return FWLocation{}, fmt.Errorf("size %#x exceeds the %#x limit", loc.Size, MaxUBootSize)
	}
	if len(f) > 3 {
		if loc.SectorSize, err = parseHex(f[3]); err != nil {
			return FWLocation{}, fmt.Errorf("sector size %q: %w", f[3], err)
		}
	}
	if len(f) > 4 {
		if loc.Sectors, err = parseHex(f[4]); err != nil {
			return FWLocation{}, fmt.Errorf("sector count %q: %w", f[4], err)
		}
	}
	if len(f) > 5 && f[5] != "0" && f[5] != "1" {
		return FWLocation{}, fmt.Errorf("disable-lock %q: want 0 or 1", f[5])
	}
	return loc, nil
}

// parseCInt parses an integer the way C's strtoll with base 0 does.
func parseCInt(s string) (int64, error) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	u, err := strconv.ParseUint(s, base, 63)
	if err != nil {
		return 0, fmt.Errorf("not a number: %w", err)
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}

// parseHex parses a non-negative hexadecimal number with optional 0x, the
// way scanf's %x reads fw_env.config's size columns.
func parseHex(s string) (int64, error) {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	u, err := strconv.ParseUint(s, 16, 63)
	if err != nil {
		return 0, fmt.Errorf("not a hexadecimal number: %w", err)
	}
	return int64(u), nil
}
