package boards

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// DefaultCompatiblePath is where Linux exposes the device tree's root
// compatible property.
const DefaultCompatiblePath = "/proc/device-tree/compatible"

// maxCompatible bounds what ReadCompatible reads; real lists are short.
const maxCompatible = 4096

// ParseCompatible splits a device-tree compatible property (NUL-separated,
// NUL-terminated strings) into its strings, most specific first. Empty
// strings are dropped.
func ParseCompatible(data []byte) []string {
	var out []string
	for _, f := range bytes.Split(data, []byte{0}) {
		if len(f) > 0 {
			out = append(out, string(f))
		}
	}
	return out
}

// ReadCompatible reads and parses the compatible property at path, usually
// DefaultCompatiblePath. A missing file (no device tree, e.g. on amd64)
// gives an error matching fs.ErrNotExist.
func ReadCompatible(path string) ([]string, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	return ParseCompatible(data), nil
}

// readSmall reads at most maxCompatible bytes of a small system file.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("boards: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCompatible))
	if err != nil {
		return nil, fmt.Errorf("boards: read %s: %w", path, err)
	}
	return data, nil
}

// DefaultOSReleasePath is where a Linux distribution describes itself.
const DefaultOSReleasePath = "/etc/os-release"

// ParseOSRelease returns the distribution IDs an os-release file names:
// ID, then the IDs of ID_LIKE in order ("ubuntu", "debian"). Values may
// be quoted with " or '; lines that are not KEY=VALUE are skipped.
func ParseOSRelease(data []byte) []string {
	var id string
	var like []string
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		switch k {
		case "ID":
			id = v
		case "ID_LIKE":
			like = strings.Fields(v)
		}
	}
	var out []string
	for _, s := range append([]string{id}, like...) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ReadOSRelease reads and parses the os-release file at path, usually
// DefaultOSReleasePath.
func ReadOSRelease(path string) ([]string, error) {
	data, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	return ParseOSRelease(data), nil
}
