package config

import (
	"regexp"
	"testing"
)

var nameRegexp = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// validName replaces a counted regexp; it must accept exactly what it did.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "dev-1", "a b", "é", "x.y_z", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRegexp.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, regexp says %v", s, got, want)
		}
	})
}
