package userpatch

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// tracer runs functions on one locked OS thread: Linux accepts ptrace
// requests for a tracee only from the thread that attached it.
//
// A thread that was seized but never stopped (one in uninterruptible
// sleep, a vfork parent waiting for its child) cannot be detached with
// PTRACE_DETACH: it is not in a stop, and it would enter one, with
// nobody to end it, when it wakes. Only the tracer's own exit unlinks it
// and drops its pending interrupt (the kernel's exit_ptrace). So a
// function that leaves such a thread behind retires the tracer's OS
// thread: the goroutine ends without unlocking it, the runtime ends the
// thread, and a fresh locked thread takes over once the old one is gone.
type tracer struct {
	reqs chan request
	quit chan struct{}
	once sync.Once
}

// errClosed: the tracer was closed.
var errClosed = errors.New("userpatch: patcher closed")

func newTracer() *tracer {
	t := &tracer{reqs: make(chan request), quit: make(chan struct{})}
	go t.loop(0, nil, nil)
	return t
}

type request struct {
	f    func() error
	done chan error
}

// loop serves requests on a locked thread. prev is a retired tracer
// thread to wait for first (0: none); the request it served is answered
// (done <- err) only then, so that its caller finds the tracees free.
func (t *tracer) loop(prev int, done chan error, err error) {
	runtime.LockOSThread()
	// The thread stays locked for its life: it is discarded when the
	// goroutine ends, with whatever ptrace state it had.
	if prev != 0 {
		waitThreadGone(prev)
		done <- err
	}
	tid := unix.Gettid()
	for {
		select {
		case r := <-t.reqs:
			err := r.f()
			if takeStale(tid) {
				go t.loop(tid, r.done, err)
				return // ends this thread: its tracees are let go
			}
			r.done <- err
		case <-t.quit:
			return
		}
	}
}

// waitThreadGone waits (bounded) until the thread tid of this process
// has exited, so that its tracees are free before the next request.
func waitThreadGone(tid int) {
	name := "/proc/self/task/" + strconv.Itoa(tid)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if _, err := os.Stat(name); err != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// stale holds the tracer threads that hold a tracee they cannot detach.
var stale struct {
	mu   sync.Mutex
	tids map[int]bool
}

// markStale records that the calling tracer thread holds a seized
// thread it could not detach: the thread is retired after the request.
func markStale() {
	stale.mu.Lock()
	defer stale.mu.Unlock()
	if stale.tids == nil {
		stale.tids = map[int]bool{}
	}
	stale.tids[unix.Gettid()] = true
}

func takeStale(tid int) bool {
	stale.mu.Lock()
	defer stale.mu.Unlock()
	v := stale.tids[tid]
	delete(stale.tids, tid)
	return v
}

// do runs f on the tracer thread and returns its error. A canceled
// context abandons the wait, not f: f always runs to its end.
func (t *tracer) do(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	select {
	case t.reqs <- request{f, done}:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.quit:
		return errClosed
	}
	return <-done
}

// close ends the tracer thread once the running function (if any) ends.
func (t *tracer) close() { t.once.Do(func() { close(t.quit) }) }
