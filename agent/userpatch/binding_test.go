package userpatch_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/agent/userpatch/userpatchtest"
)

// The patched code must use the same storage and functions as the code
// it replaces, whatever the process bound them to.

func binding(name string) string { return filepath.Join(userpatchtest.BindingDir, name) }

// counter returns the counter= figure of bindprog's last line.
func (p *proc) counter(t *testing.T) int {
	t.Helper()
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	_, c, ok := strings.Cut(last, "counter=")
	n, err := strconv.Atoi(c)
	if !ok || err != nil {
		t.Fatalf("no counter= in %q", last)
	}
	return n
}

// TestBindingCopyAndInterposition: libbind's bd_tick counts in
// bd_counter, which the program's link copied into the program
// (R_X86_64_COPY), and calls bd_name, which the program defines too, and
// bd_pre, which an LD_PRELOAD library defines. The replacement goes
// through libbind's own GOT entries: the program's counter keeps
// counting, and the program's and the preloaded functions are called.
// Bound to libbind's own definitions, as it used to be, the counter the
// program reads stopped and the tick was 10107. The fix also calls
// bd_late through a PLT entry not bound yet (lazy binding): on arm64 the
// veneer must leave x16 at the GOT entry for glibc's resolver.
func TestBindingCopyAndInterposition(t *testing.T) {
	f := fixtures(t)
	t.Setenv("LD_PRELOAD", f.Path(binding(userpatchtest.BindPreload)))
	p := start(t, f, binding(userpatchtest.BindProg))
	p.waitFor(t, userpatchtest.BindBefore)
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	a, err := pt.Apply(ctx, p.pid(), bundle(t, f, binding(userpatchtest.BindBundle)), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p.waitFor(t, userpatchtest.BindAfter)
	c1 := p.counter(t)
	time.Sleep(50 * time.Millisecond)
	p.waitFor(t, userpatchtest.BindAfter)
	if c2 := p.counter(t); c2 <= c1 {
		t.Errorf("the program's bd_counter stayed at %d while patched: the replacement counts in other storage", c1)
	}
	if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	p.waitFor(t, userpatchtest.BindBefore)
	p.alive(t)
}

// TestBindingGlibcStdout: the program replaced stdout with a FILE of its
// own (its copy of stdout, R_X86_64_COPY on amd64) and never flushes the
// old one. The putchar replacement reads stdout through libc's GOT entry
// and writes where the program's putchar writes; bound to libc's own
// definition it wrote into the old FILE and nothing showed.
func TestBindingGlibcStdout(t *testing.T) {
	f := fixtures(t)
	p := start(t, f, binding(userpatchtest.BindProg), "stdout")
	p.waitFor(t, "a")
	pt := userpatch.NewPatcher()
	defer pt.Close()
	ctx := context.Background()
	a, err := pt.Apply(ctx, p.pid(), bundle(t, f, binding(userpatchtest.PutcharBundle)), userpatch.Options{})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	p.waitFor(t, "b")
	if err := pt.Revert(ctx, a, userpatch.Options{}); err != nil {
		t.Fatalf("Revert: %v", err)
	}
	p.waitFor(t, "a")
	p.alive(t)
}
