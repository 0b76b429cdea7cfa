package userpatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
)

// A revert asked for on the command line while the daemon runs goes
// through files in DataDir/userpatch/requests: the command writes
// NAME.revert, the daemon's Run loop reverts the patch and writes
// NAME.result. Only the daemon traces processes, so two tracers never
// race over one process.

const requestDir = "userpatch/requests"

// ErrNoDaemon: no daemon answered a request in time.
var ErrNoDaemon = errors.New("userpatch: the agent daemon did not answer")

// validName: a letter or digit, then up to 127 of A-Z a-z 0-9 . _ + -
// (a loop: a counted regexp costs the agent's package init and memory).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '+' && c != '-') {
			return false
		}
	}
	return true
}

type requestResult struct {
	Results []ProcResult `json:"results"`
	Error   string       `json:"error,omitempty"`
	NotOurs bool         `json:"not_applied,omitempty"`
}

// RequestRevert asks the running daemon to revert the patch called name
// and waits for its answer until ctx ends.
func RequestRevert(ctx context.Context, dataDir, name string) ([]ProcResult, error) {
	if !validName(name) {
		return nil, fmt.Errorf("userpatch: %q is not a patch name", name)
	}
	dir := filepath.Join(dataDir, requestDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	result := filepath.Join(dir, name+".result")
	os.Remove(result)
	if err := atomicfile.WriteFile(filepath.Join(dir, name+".revert"), nil, 0o600); err != nil {
		return nil, err
	}
	for {
		b, err := os.ReadFile(result)
		if err == nil {
			os.Remove(result)
			var r requestResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("userpatch: daemon's answer: %w", err)
			}
			switch {
			case r.NotOurs:
				return r.Results, fmt.Errorf("userpatch: no active patch %q: %w", name, ErrNotApplied)
			case r.Error != "":
				return r.Results, errors.New(r.Error)
			}
			return r.Results, nil
		}
		select {
		case <-ctx.Done():
			os.Remove(filepath.Join(dir, name+".revert"))
			return nil, fmt.Errorf("%w: %w", ErrNoDaemon, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serveRequests carries out the revert requests waiting in the
// requests directory.
func (a *Applier) serveRequests(ctx context.Context) {
	dir := filepath.Join(a.dir, requestDir)
	reqs, _ := filepath.Glob(filepath.Join(dir, "*.revert"))
	for _, req := range reqs {
		name := strings.TrimSuffix(filepath.Base(req), ".revert")
		os.Remove(req)
		if !validName(name) {
			continue
		}
		res, err := a.m.Remove(ctx, name)
		r := requestResult{Results: res}
		if err != nil {
			r.Error = err.Error()
			r.NotOurs = errors.Is(err, ErrNotApplied)
		}
		a.log.Info("live patch reverted on request", "patch", name, "err", err)
		b, _ := json.Marshal(r)
		if err := atomicfile.WriteFile(filepath.Join(dir, name+".result"), b, 0o600); err != nil {
			a.log.Error("live patch: answer a revert request", "err", err)
		}
	}
}
