package transport

import "testing"

func TestRetrying(t *testing.T) {
	for _, c := range []struct {
		s    Status
		want bool
	}{
		{Status{State: StateFailed, Reason: "tuf: target not found " + RetrySuffix}, true},
		{Status{State: StateFailed, Reason: "slot B: health check failed"}, false},
		{Status{State: StateRefused, Reason: "old sequence " + RetrySuffix}, false},
		{Status{State: StateCommitted}, false},
	} {
		if got := c.s.Retrying(); got != c.want {
			t.Errorf("%+v: Retrying() = %v, want %v", c.s, got, c.want)
		}
	}
}
