package userpatch

import (
	"regexp"
	"strings"
	"testing"
)

var nameRegexp = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// validName replaces a counted regexp; it must accept exactly what it did.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "fix-1", ".x", "a+b", "a b", "é", strings.Repeat("a", 128), strings.Repeat("a", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRegexp.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, regexp says %v", s, got, want)
		}
	})
}
