package manifest

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// version is a parsed "X.Y.Z[-pre][+build]" or a development build.
type version struct {
	devel               bool
	major, minor, patch uint64
	pre                 []string // dot-separated pre-release identifiers
}

// parseVersion accepts semantic versions with an optional leading "v"
// ("1.2.3", "v1.2.3-rc.1", "v0.0.0-20250101170133-2e884e4509c7",
// "1.2.3+dirty") and the development build markers "devel" and "(devel)"
// that Go's build info reports.
func parseVersion(s string) (version, error) {
	bad := func(why string) (version, error) {
		return version{}, fmt.Errorf("version %q: %s", s, why)
	}
	if s == "devel" || s == "(devel)" {
		return version{devel: true}, nil
	}
	rest := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		for _, id := range strings.Split(rest[i+1:], ".") {
			if !isIdent(id) {
				return bad("bad build metadata")
			}
		}
		rest = rest[:i]
	}
	var v version
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		v.pre = strings.Split(rest[i+1:], ".")
		for _, id := range v.pre {
			if !isIdent(id) || (isNumeric(id) && len(id) > 1 && id[0] == '0') {
				return bad("bad pre-release identifier")
			}
		}
		rest = rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad("want major.minor.patch")
	}
	nums := [3]*uint64{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		if !isNumeric(p) || (len(p) > 1 && p[0] == '0') {
			return bad("major, minor and patch must be numbers without leading zeros")
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return bad("number out of range")
		}
		*nums[i] = n
	}
	return v, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// CompareVersions compares two versions by semantic-versioning precedence
// and returns -1, 0 or +1. A leading "v" is optional; a pre-release sorts
// before its release ("1.0.0-rc.1" < "1.0.0"); build metadata ("+dirty")
// is ignored. A development build, "devel" or "(devel)", compares greater
// than every release and equal to another development build. An
// unparsable version is an error wrapping ErrInvalid.
func CompareVersions(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, fmt.Errorf("manifest: %w: %w", err, ErrInvalid)
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, fmt.Errorf("manifest: %w: %w", err, ErrInvalid)
	}
	return va.compare(vb), nil
}

func (v version) compare(w version) int {
	switch {
	case v.devel || w.devel:
		if v.devel && w.devel {
			return 0
		}
		if v.devel {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(v.major, w.major); c != 0 {
		return c
	}
	if c := cmp.Compare(v.minor, w.minor); c != 0 {
		return c
	}
	if c := cmp.Compare(v.patch, w.patch); c != 0 {
		return c
	}
	switch {
	case len(v.pre) == 0 && len(w.pre) == 0:
		return 0
	case len(v.pre) == 0:
		return 1 // a release is above its pre-releases
	case len(w.pre) == 0:
		return -1
	}
	for i := 0; i < len(v.pre) && i < len(w.pre); i++ {
		if c := comparePre(v.pre[i], w.pre[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(v.pre), len(w.pre))
}

// comparePre orders two pre-release identifiers: numeric ones numerically
// and below alphanumeric ones, alphanumeric ones in ASCII order.
func comparePre(a, b string) int {
	an, bn := isNumeric(a), isNumeric(b)
	switch {
	case an && bn:
		// No leading zeros, so the longer number is the larger.
		if c := cmp.Compare(len(a), len(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	case an:
		return -1
	case bn:
		return 1
	}
	return strings.Compare(a, b)
}
