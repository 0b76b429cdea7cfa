package mqtt

import (
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// Backoff is the delay before reconnection attempt number attempt (1 for
// the first retry after a drop or failure): a base that doubles from minDelay
// per attempt up to maxDelay, then full jitter above a floor of a tenth, i.e.
// uniform in [base/10, base) for r uniform in [0, 1). The floor keeps a
// device from hammering a broker; the jitter spreads a fleet that lost
// its broker at the same instant.
func Backoff(attempt int, minDelay, maxDelay time.Duration, r float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	maxDelay = max(maxDelay, minDelay)
	base := minDelay
	for i := 1; i < attempt && base < maxDelay; i++ {
		base *= 2
	}
	base = min(base, maxDelay)
	if r < 0 || r != r { // NaN too
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	lo := base / 10
	return lo + time.Duration(r*float64(base-lo))
}

// JitterSource returns a deterministic source of jitter in [0, 1) seeded
// from seed and the device ID, so that devices sharing a seed still draw
// different delays. It is not safe for concurrent use (a Session calls it
// from one goroutine).
func JitterSource(seed uint64, device string) func() float64 {
	h := fnv.New64a()
	h.Write([]byte(device))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	return r.Float64
}
