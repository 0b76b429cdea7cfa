package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/tuf"
)

// Pacing of TUF refreshes (pacedSource).
var (
	// refreshEvery: at most one refresh per this interval; within it the
	// last outcome stands (the trusted metadata of a success, or the error
	// of a failure), so a storm of notices costs the repository one
	// refresh, not one per notice. A release published meanwhile is not
	// listed yet: the engine retries it with back-off (ErrRetry).
	refreshEvery = 10 * time.Second
	// refreshTimeout bounds one refresh: go-tuf's metadata downloads have
	// no timeout of their own, so a silent server would hold it forever.
	refreshTimeout = 2 * time.Minute
)

// pacedSource is the engine's view of the TUF client with refreshes
// rate-limited and bounded in time. Like the client, it is not safe for
// concurrent use.
type pacedSource struct {
	*tuf.Client
	now     func() time.Time
	last    time.Time // when the last refresh ended
	lastErr error     // its outcome
	count   int       // refreshes made
}

var _ engine.Source = (*pacedSource)(nil)

func (p *pacedSource) Refresh(ctx context.Context) error {
	now := p.now()
	if !p.last.IsZero() && now.Sub(p.last) < refreshEvery && now.After(p.last) {
		if p.lastErr != nil {
			return fmt.Errorf("%w (refreshes are paced: the last one, %v ago, failed)", p.lastErr, now.Sub(p.last).Round(time.Millisecond))
		}
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	p.lastErr = p.Client.Refresh(rctx)
	p.last = p.now()
	p.count++
	return p.lastErr
}
