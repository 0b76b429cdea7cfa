package userpatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/manifest/ulp"
)

// RescanInterval is how often Run looks for processes that started since
// the last pass; a new process gets the active patches within about this
// long (docs/ulp.md has the measured figure).
const RescanInterval = 500 * time.Millisecond

// stateFile is the live-patch journal in the agent's data directory: the
// active bundles and the processes carrying them.
const stateFile = "userpatch.json"

// Applier is the agent's userspace live-patch applier: the engine's
// LiveApplier for manifest.KindUserPatch components, with its own journal
// (DataDir/userpatch.json) and bundle store (DataDir/userpatch/).
type Applier struct {
	dir string
	m   *Manager
	log *slog.Logger
}

type fileStore struct{ path string }

type state struct {
	Patches []Active `json:"patches"`
}

func (s fileStore) SavePatches(a []Active) error {
	b, err := json.MarshalIndent(state{Patches: a}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, append(b, '\n'), 0o600)
}

// LoadState reads the live-patch journal in dataDir (none yet: empty).
func LoadState(dataDir string) ([]Active, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("userpatch: %s: %w", stateFile, err)
	}
	return st.Patches, nil
}

// NewApplier restores the active patches journalled in dataDir; Run then
// re-applies them to processes that do not carry them (after an agent
// restart: the processes started since).
func NewApplier(dataDir string, log *slog.Logger) (*Applier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	restored, err := LoadState(dataDir)
	if err != nil {
		return nil, err
	}
	m, err := NewManager(fileStore{filepath.Join(dataDir, stateFile)}, log, Options{}, restored)
	if err != nil {
		return nil, err
	}
	return &Applier{dir: dataDir, m: m, log: log}, nil
}

// Manager gives access to the active patches (status, the CLI).
func (a *Applier) Manager() *Manager { return a.m }

// Close stops the tracer thread.
func (a *Applier) Close() { a.m.Close() }

// Run re-applies the restored patches at once, then, every
// RescanInterval until ctx ends, patches processes that started since and
// carries out revert requests from the command line (RequestRevert).
func (a *Applier) Run(ctx context.Context) {
	if a.m.hasActive() {
		a.m.Rescan(ctx)
	}
	t := time.NewTicker(RescanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.serveRequests(ctx)
			if a.m.hasActive() {
				a.m.Rescan(ctx)
			}
		}
	}
}

// Check decides whether c can be applied live here: this agent's arch
// patches processes, and every running process that maps a library of
// c's soname maps a build that one of c's bundles is for.
func (a *Applier) Check(ctx context.Context, c *manifest.Component) error {
	if c.Kind != manifest.KindUserPatch || c.UserPatch == nil {
		return fmt.Errorf("userpatch: component %s is not a userspace live patch", c.Name)
	}
	u := c.UserPatch
	have := map[string]bool{}
	for _, b := range u.Bundles {
		have[string(b.BuildID)] = true
	}
	all, err := pids()
	if err != nil {
		return err
	}
	for _, pid := range all {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		maps, err := readMaps(pid)
		if err != nil {
			continue
		}
		for _, m := range maps {
			if m.Inode == 0 || m.Offset != 0 {
				continue
			}
			inf, err := globalIDs.info(pid, m, fileKey{m.Dev, m.Inode})
			if err != nil || mappedSoname(m, inf) != u.Soname {
				continue
			}
			if !have[string(inf.buildID)] {
				return fmt.Errorf("process %d maps %s build %x (%s), which no bundle of %s is for", pid, u.Soname, inf.buildID, m.Path, c.Name)
			}
		}
	}
	return nil
}

// mappedSoname is the soname of the library a mapping maps: its
// DT_SONAME (the file libfoo.so.1.2.3 is libfoo.so.1), or the file's
// base name for an ELF without one.
func mappedSoname(m Mapping, inf elfID) string {
	if inf.soname != "" {
		return inf.soname
	}
	return filepath.Base(strings.TrimSuffix(m.Path, " (deleted)"))
}

// Apply makes every bundle of c active: each is decoded from its verified
// file, checked against the manifest's hash and build ID, kept under
// DataDir/userpatch/, and applied to the processes mapping its build now
// (and by Run to later ones). A bundle that fails in every process it
// targets fails the component; its bundles are then reverted.
func (a *Applier) Apply(ctx context.Context, c *manifest.Component, files map[string]string) (string, error) {
	if c.Kind != manifest.KindUserPatch || c.UserPatch == nil {
		return "", fmt.Errorf("userpatch: component %s is not a userspace live patch", c.Name)
	}
	var applied, failed, skipped int
	var names []string
	for _, pb := range c.UserPatch.Bundles {
		b, keep, err := a.store(pb, files[pb.Target])
		if err != nil {
			a.revertNames(ctx, names)
			return "", err
		}
		res, err := a.m.Add(ctx, b, keep)
		if err != nil {
			a.revertNames(ctx, names)
			return "", err
		}
		names = append(names, b.Name)
		for _, r := range res {
			switch r.Result {
			case ResultApplied:
				applied++
			case ResultFailed:
				failed++
			default:
				skipped++
			}
		}
	}
	if failed > 0 && applied == 0 {
		a.revertNames(ctx, names)
		return "", fmt.Errorf("userpatch: %s failed in all %d processes it targets: %s", c.Name, failed, a.firstReason(names))
	}
	return fmt.Sprintf("%s: %d processes patched, %d failed, %d skipped", c.Name, applied, failed, skipped), nil
}

func (a *Applier) firstReason(names []string) string {
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	for k, rs := range a.m.last {
		for _, r := range rs {
			for _, n := range names {
				if strings.HasPrefix(k, n+"@") && r.Result == ResultFailed {
					return r.Reason
				}
			}
		}
	}
	return "unknown"
}

func (a *Applier) revertNames(ctx context.Context, names []string) {
	for _, n := range names {
		if _, err := a.m.Remove(ctx, n); err != nil {
			a.log.Error("live patch: revert after a failed apply", "patch", n, "err", err)
		}
	}
}

// store checks a verified bundle file against the manifest and keeps a
// copy in DataDir/userpatch/ for restarts.
func (a *Applier) store(pb manifest.PatchBundle, file string) (*ulp.Bundle, string, error) {
	if file == "" {
		return nil, "", fmt.Errorf("userpatch: bundle %s was not downloaded", pb.Target)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	if sum := sha256.Sum256(raw); !bytes.Equal(sum[:], pb.SHA256) {
		return nil, "", fmt.Errorf("userpatch: bundle %s: sha256 %x, the manifest says %x: %w", pb.Target, sum, pb.SHA256, ErrMismatch)
	}
	b, err := ulp.Decode(raw)
	if err != nil {
		return nil, "", fmt.Errorf("userpatch: bundle %s: %w", pb.Target, err)
	}
	if !bytes.Equal(b.BuildID, pb.BuildID) {
		return nil, "", fmt.Errorf("userpatch: bundle %s is for build %x, the manifest says %x: %w", pb.Target, b.BuildID, pb.BuildID, ErrWrongBuild)
	}
	if b.Arch != nativeArch {
		return nil, "", fmt.Errorf("userpatch: bundle %s is for %s, this agent patches %s processes: %w", pb.Target, b.Arch, nativeArch, ErrWrongArch)
	}
	keep := filepath.Join(a.dir, "userpatch", hex.EncodeToString(pb.SHA256)+".ulp")
	if err := os.MkdirAll(filepath.Dir(keep), 0o700); err != nil {
		return nil, "", err
	}
	if err := atomicfile.WriteFile(keep, raw, 0o600); err != nil {
		return nil, "", err
	}
	return b, keep, nil
}

// Revert reverts every bundle of c in every process carrying it.
func (a *Applier) Revert(ctx context.Context, c *manifest.Component) error {
	if c.UserPatch == nil {
		return fmt.Errorf("userpatch: component %s is not a userspace live patch", c.Name)
	}
	var errs []error
	done := map[string]bool{}
	for _, pb := range c.UserPatch.Bundles {
		keep := filepath.Join(a.dir, "userpatch", hex.EncodeToString(pb.SHA256)+".ulp")
		b, err := readBundle(keep)
		if err != nil || done[b.Name] {
			continue
		}
		done[b.Name] = true
		if _, err := a.m.Remove(ctx, b.Name); err != nil && !errors.Is(err, ErrNotApplied) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
