package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/graft-dev/graft/agent/serialtty"
	"github.com/graft-dev/graft/transport/serialframe"
)

// Line is the console line the device speaks on.
type Line interface {
	io.ReadWriter
	Close() error
}

// OpenLine opens the console: a tty path (set raw at baud), or "fd:N", an
// inherited descriptor (a pty master in tests) that is never closed, so a
// station that goes away and comes back finds the same line.
func OpenLine(name string, baud int) (Line, error) {
	if n, ok := strings.CutPrefix(name, "fd:"); ok {
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 0 {
			return nil, fmt.Errorf("provision: line %q: want fd:N", name)
		}
		f := os.NewFile(uintptr(fd), name)
		if f == nil {
			return nil, fmt.Errorf("provision: line %q: bad descriptor", name)
		}
		serialtty.MakeRaw(f, baud)
		return keepOpen{f}, nil
	}
	f, err := serialtty.Open(name, baud)
	if err != nil {
		return nil, fmt.Errorf("provision: line %s: %w", name, err)
	}
	return f, nil
}

type keepOpen struct{ *os.File }

func (keepOpen) Close() error { return nil }

// Serve answers the station on the line open returns until ctx ends. When
// the line fails (the station's side closed: a cable pulled, a station
// restarted) it is opened again; steps under way go on meanwhile. It
// returns once the steps under way have stopped too.
func (p *Provisioner) Serve(ctx context.Context, open func() (Line, error)) error {
	defer p.wg.Wait()
	var mu sync.Mutex
	var peer *serialframe.Peer
	var last time.Time
	p.o.Notify = func(pr Progress) {
		mu.Lock()
		defer mu.Unlock()
		if peer == nil || pr.Done < pr.Total && time.Since(last) < 250*time.Millisecond {
			return
		}
		last = time.Now()
		peer.Notify(TypeProgress, pr)
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		l, err := open()
		if err != nil {
			p.o.Logger.Warn("provision: console", "err", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
			continue
		}
		pr := serialframe.NewPeer(l, serialframe.Options{Handler: p.Handle, Logger: p.o.Logger, WriteTimeout: 2 * time.Second})
		mu.Lock()
		peer = pr
		mu.Unlock()
		stop := context.AfterFunc(ctx, func() { l.Close() })
		err = pr.Run(ctx)
		stop()
		l.Close()
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, serialframe.ErrClosed) {
			return err
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
