// Package enginetest holds a fake live applier for the update engine's
// tests: a plain struct the test pokes and reads. It never touches a
// kernel or a process.
package enginetest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"

	"github.com/graft-dev/graft/manifest"
)

// Applier is an in-memory live applier. Its zero value applies and
// reverts everything; it is safe for concurrent use.
type Applier struct {
	mu sync.Mutex
	// CheckErr and ApplyErr, by component name, make Check or Apply fail.
	CheckErr, ApplyErr map[string]error
	// Block, by component name, makes Apply wait for its context to end
	// (a power cut in the middle of an apply) and return its error.
	Block map[string]bool
	// Active are the components applied and not reverted.
	Active []string
	// Calls records "check NAME", "apply NAME" and "revert NAME".
	Calls []string
	// Seen holds the bytes of every file Apply was given, by target name.
	Seen map[string][]byte
	// Replaces, by component name, makes an Apply of that component
	// take every other component out of Active, as a kernel patch built
	// with .replace = true does whatever its manifest says.
	Replaces map[string]bool
}

// ActiveComponents returns Active (engine.LiveInventory).
func (a *Applier) ActiveComponents() ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.Active), nil
}

// Check fails with CheckErr[c.Name].
func (a *Applier) Check(_ context.Context, c *manifest.Component) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Calls = append(a.Calls, "check "+c.Name)
	return a.CheckErr[c.Name]
}

// Apply reads every file, then fails with ApplyErr[c.Name] or marks c
// active (once: it is idempotent).
func (a *Applier) Apply(ctx context.Context, c *manifest.Component, files map[string]string) (string, error) {
	a.mu.Lock()
	a.Calls = append(a.Calls, "apply "+c.Name)
	block := a.Block[c.Name]
	a.mu.Unlock()
	if block {
		<-ctx.Done()
		return "", ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for target, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if a.Seen == nil {
			a.Seen = map[string][]byte{}
		}
		a.Seen[target] = b
	}
	if err := a.ApplyErr[c.Name]; err != nil {
		return "", err
	}
	if a.Replaces[c.Name] {
		a.Active = nil
	}
	if !slices.Contains(a.Active, c.Name) {
		a.Active = append(a.Active, c.Name)
	}
	return fmt.Sprintf("%s applied", c.Name), nil
}

// Revert removes c from Active.
func (a *Applier) Revert(_ context.Context, c *manifest.Component) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Calls = append(a.Calls, "revert "+c.Name)
	a.Active = slices.DeleteFunc(a.Active, func(n string) bool { return n == c.Name })
	return nil
}

// IsActive reports whether the component called name is applied.
func (a *Applier) IsActive(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.Active, name)
}

// CallLog returns a copy of Calls.
func (a *Applier) CallLog() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.Calls)
}
