package manifest_test

import (
	"errors"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.2.3", "1.2.3", 0},
		{"v1.2.3", "1.2.3", 0},
		{"1.2.3+dirty", "1.2.3", 0},
		{"1.2.3", "1.2.4", -1},
		{"1.3.0", "1.2.9", 1},
		{"2.0.0", "1.99.99", 1},
		{"1.10.0", "1.9.0", 1}, // numeric, not lexical
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", -1}, // numeric below alphanumeric
		{"1.0.0-alpha.beta", "1.0.0-beta", -1},
		{"1.0.0-beta.2", "1.0.0-beta.11", -1},
		{"1.0.0-beta.11", "1.0.0-rc.1", -1},
		{"v0.0.0-20250101170133-2e884e4509c7", "0.0.1", -1}, // Go pseudo-version
		{"v0.0.0-20250101170133-2e884e4509c7", "v0.0.0-20240101000000-aaaaaaaaaaaa", 1},
		{"18446744073709551615.0.0", "18446744073709551614.0.0", 1},
		{"devel", "99.0.0", 1},
		{"(devel)", "99.0.0", 1},
		{"1.0.0", "(devel)", -1},
		{"devel", "(devel)", 0},
	}
	for _, tt := range tests {
		got, err := manifest.CompareVersions(tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d", tt.a, tt.b, got, err, tt.want)
		}
		if back, _ := manifest.CompareVersions(tt.b, tt.a); back != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, back, -tt.want)
		}
	}
}

func TestCompareVersionsRefuses(t *testing.T) {
	for _, s := range []string{
		"", "v", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3-a..b",
		"1.2.3+", "1.2.3-ä", "x.y.z", "-1.2.3", "1.2.3 ", " 1.2.3", "vv1.2.3", "DEVEL",
		"18446744073709551616.0.0",
	} {
		if _, err := manifest.CompareVersions(s, "1.0.0"); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("CompareVersions(%q, 1.0.0) error = %v, want ErrInvalid", s, err)
		}
		if _, err := manifest.CompareVersions("1.0.0", s); !errors.Is(err, manifest.ErrInvalid) {
			t.Errorf("CompareVersions(1.0.0, %q) error = %v, want ErrInvalid", s, err)
		}
	}
}
