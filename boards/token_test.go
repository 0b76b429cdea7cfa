package boards

import (
	"regexp"
	"testing"
)

// The byte loops replace counted regexps; they must accept exactly what
// the regexps accepted.
var tokenRules = []struct {
	re *regexp.Regexp
	fn func(string) bool
}{
	{regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`), validBoardName},
	{regexp.MustCompile(`^[a-z0-9_-]{1,32}$`), validGroup},
	{regexp.MustCompile(`^[A-Za-z0-9]{1,16}$`), validSlotName},
	{regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`), validConsole},
}

func checkTokenRules(t *testing.T, s string) {
	for i, r := range tokenRules {
		if got, want := r.fn(s), r.re.MatchString(s); got != want {
			t.Errorf("rule %d (%s) on %q: %v, regexp says %v", i, r.re, s, got, want)
		}
	}
}

func TestTokenMatchesRegexp(t *testing.T) {
	for _, s := range []string{"", "a", "A", "rpi4-64", "a.b_c-d", "a b", "é", "a\n", "a/b", "-", ".", "UPPER", "x+y",
		"0123456789abcdef", "0123456789abcdefg", string(make([]byte, 33)),
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		checkTokenRules(t, s)
	}
}

func FuzzTokenMatchesRegexp(f *testing.F) {
	f.Add("rpi4-64")
	f.Add("Ab.c_-")
	f.Fuzz(checkTokenRules)
}
