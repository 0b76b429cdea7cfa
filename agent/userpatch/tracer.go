package userpatch

import (
	"context"
	"errors"
	"runtime"
	"sync"
)

// tracer runs functions on one locked OS thread: Linux accepts ptrace
// requests for a tracee only from the thread that attached it.
type tracer struct {
	reqs chan func()
	quit chan struct{}
	once sync.Once
}

// errClosed: the tracer was closed.
var errClosed = errors.New("userpatch: patcher closed")

func newTracer() *tracer {
	t := &tracer{reqs: make(chan func()), quit: make(chan struct{})}
	go t.loop()
	return t
}

func (t *tracer) loop() {
	runtime.LockOSThread()
	// The thread stays locked for its life: it is discarded when the
	// goroutine ends, with whatever ptrace state it had.
	for {
		select {
		case f := <-t.reqs:
			f()
		case <-t.quit:
			return
		}
	}
}

// do runs f on the tracer thread and returns its error. A canceled
// context abandons the wait, not f: f always runs to its end.
func (t *tracer) do(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	select {
	case t.reqs <- func() { done <- f() }:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.quit:
		return errClosed
	}
	return <-done
}

// close ends the tracer thread once the running function (if any) ends.
func (t *tracer) close() { t.once.Do(func() { close(t.quit) }) }
