package boards

import (
	"bytes"
	"fmt"
	"io"
	"os"
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
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("boards: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCompatible))
	if err != nil {
		return nil, fmt.Errorf("boards: read %s: %w", path, err)
	}
	return ParseCompatible(data), nil
}
