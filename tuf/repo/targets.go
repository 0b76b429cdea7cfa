package repo

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// Target describes a target as recorded in targets metadata.
type Target struct {
	Name   string
	Length int64
	Hashes map[string][]byte // "sha256", "sha512"
	Custom json.RawMessage   // nil when none
	// Role signs the target: "targets" or a delegated role.
	Role string
}

// staged is staged/targets.json: the whole next targets map.
type staged struct {
	Targets map[string]*metadata.TargetFiles `json:"targets"`
}

func (r *Repo) stagedDir() string { return filepath.Join(r.dir, "staged") }

// loadStaged returns role's staged targets map, or a copy of the
// published one when nothing is staged for it (ok false).
func (r *Repo) loadStaged(role string) (map[string]*metadata.TargetFiles, bool, error) {
	cur, err := r.targetsOf(role)
	if err != nil {
		return nil, false, err
	}
	data, err := os.ReadFile(r.stagedPath(role))
	if errors.Is(err, fs.ErrNotExist) {
		m := make(map[string]*metadata.TargetFiles, len(cur.Signed.Targets))
		for k, v := range cur.Signed.Targets {
			m[k] = v
		}
		return m, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("repo: %w", err)
	}
	var s staged
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, false, fmt.Errorf("repo: %s: %w", r.stagedPath(role), err)
	}
	if s.Targets == nil {
		s.Targets = map[string]*metadata.TargetFiles{}
	}
	for k, v := range s.Targets {
		v.Path = k
	}
	return s.Targets, true, nil
}

func (r *Repo) saveStaged(role string, m map[string]*metadata.TargetFiles) error {
	p := r.stagedPath(role)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	data, err := json.Marshal(staged{Targets: m})
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return atomicfs.WriteFile(p, data, 0o644)
}

// cleanName reports whether name is a relative slash-separated path with
// no empty, "." or ".." segments (the same rule as the device side).
func cleanName(name string) bool {
	if name == "" || strings.ContainsAny(name, "\\\x00") {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".tmp-") {
			return false
		}
	}
	return true
}

// AddTarget copies src into the repository and stages name with its length,
// sha256, sha512 and custom JSON (nil for none; stored compacted, as
// signed metadata carries it). With consistent snapshots
// the file is stored once per digest as targets/<dir>/<hex digest>.<base>
// (hard links); otherwise it waits in staged/ until Publish moves it to
// targets/<name>. Devices see nothing until Publish.
func (r *Repo) AddTarget(name string, src io.Reader, custom json.RawMessage) (Target, error) {
	return r.AddTargetFor(metadata.TARGETS, name, src, custom)
}

// AddTargetFor is AddTarget for a target signed by role: the top-level
// "targets" or a delegated role, whose paths must cover name
// (ErrNotDelegated otherwise). Publish then needs only that role's keys
// (and snapshot's and timestamp's), not the top-level targets keys.
func (r *Repo) AddTargetFor(role, name string, src io.Reader, custom json.RawMessage) (Target, error) {
	if !cleanName(name) {
		return Target{}, fmt.Errorf("repo: %q: %w", name, ErrInvalidTargetName)
	}
	if _, err := r.targetsOf(role); err != nil {
		return Target{}, err
	}
	if d := r.delegation(role); d != nil {
		if ok, err := d.IsDelegatedPath(name); err != nil || !ok {
			return Target{}, fmt.Errorf("repo: %q in role %q (paths %q): %w", name, role, d.Paths, ErrNotDelegated)
		}
	}
	if custom != nil && !json.Valid(custom) {
		return Target{}, fmt.Errorf("repo: target %q: %w", name, ErrInvalidCustom)
	}
	consistent := r.root.Signed.ConsistentSnapshot
	var finalDir string
	if consistent {
		finalDir = filepath.Join(r.TargetsDir(), filepath.FromSlash(path.Dir(name)))
	} else {
		finalDir = filepath.Join(r.stagedDir(), "files", filepath.FromSlash(path.Dir(name)))
	}
	if err := os.MkdirAll(finalDir, 0o755); err != nil {
		return Target{}, fmt.Errorf("repo: %w", err)
	}
	tmp, err := os.CreateTemp(finalDir, ".tmp-")
	if err != nil {
		return Target{}, fmt.Errorf("repo: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	h256, h512 := sha256.New(), sha512.New()
	n, err := io.Copy(io.MultiWriter(tmp, h256, h512), src)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Target{}, fmt.Errorf("repo: copy target %q: %w", name, err)
	}
	tf := &metadata.TargetFiles{
		Length: n,
		Hashes: metadata.Hashes{"sha256": h256.Sum(nil), "sha512": h512.Sum(nil)},
		Path:   name,
	}
	if custom != nil {
		var c bytes.Buffer
		if err := json.Compact(&c, custom); err != nil {
			return Target{}, fmt.Errorf("repo: target %q: %w: %w", name, ErrInvalidCustom, err)
		}
		raw := json.RawMessage(c.Bytes())
		tf.Custom = &raw
	}
	base := path.Base(name)
	if consistent {
		first := filepath.Join(finalDir, hex.EncodeToString(tf.Hashes["sha256"])+"."+base)
		if err := os.Rename(tmp.Name(), first); err != nil {
			return Target{}, fmt.Errorf("repo: %w", err)
		}
		second := filepath.Join(finalDir, hex.EncodeToString(tf.Hashes["sha512"])+"."+base)
		if err := linkOrCopy(first, second); err != nil {
			return Target{}, err
		}
	} else if err := os.Rename(tmp.Name(), filepath.Join(finalDir, base)); err != nil {
		return Target{}, fmt.Errorf("repo: %w", err)
	}
	if err := atomicfs.SyncDir(finalDir); err != nil {
		return Target{}, err
	}
	m, _, err := r.loadStaged(role)
	if err != nil {
		return Target{}, err
	}
	m[name] = tf
	if err := r.saveStaged(role, m); err != nil {
		return Target{}, err
	}
	return toTarget(name, tf), nil
}

// linkOrCopy makes dst hold src's bytes; dst named by a digest that
// already exists already holds them.
func linkOrCopy(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return atomicfs.WriteFile(dst, in, 0o644)
}

// RemoveTarget stages the removal of name. With consistent snapshots the
// hash-named files stay (older snapshots may name them); otherwise Publish
// deletes targets/<name>.
func (r *Repo) RemoveTarget(name string) error { return r.RemoveTargetFor(metadata.TARGETS, name) }

// RemoveTargetFor is RemoveTarget for a target signed by role.
func (r *Repo) RemoveTargetFor(role, name string) error {
	m, _, err := r.loadStaged(role)
	if err != nil {
		return err
	}
	if _, ok := m[name]; !ok {
		return fmt.Errorf("repo: %q: %w", name, ErrUnknownTarget)
	}
	delete(m, name)
	if !r.root.Signed.ConsistentSnapshot {
		p := filepath.Join(r.stagedDir(), "files", filepath.FromSlash(name))
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("repo: %w", err)
		}
	}
	return r.saveStaged(role, m)
}

// Publish is publish under the repository lock (graft-fleet serve
// re-signs the timestamp from another process).
func (r *Repo) Publish() error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return r.publish()
}

// publish signs and writes every targets role with staged changes as its
// next version (the top-level targets, with fresh expiry, also when
// nothing at all is staged), then the next snapshot and timestamp
// versions, in that order. It needs the keys of the roles it re-signs, of
// snapshot and of timestamp. The timestamp version continues from the one
// on disk (serve may have re-signed it since Open).
func (r *Repo) publish() error {
	if err := r.reloadTimestamp(); err != nil {
		return err
	}
	type change struct {
		role string
		m    *metadata.Metadata[metadata.TargetsType]
		next map[string]*metadata.TargetFiles
	}
	var changes []change
	for _, role := range append([]string{metadata.TARGETS}, mapKeys(r.delegated)...) {
		next, ok, err := r.loadStaged(role)
		if err != nil {
			return err
		}
		if ok {
			m, _ := r.targetsOf(role)
			changes = append(changes, change{role, m, next})
		}
	}
	if len(changes) == 0 {
		changes = []change{{metadata.TARGETS, r.targets, r.targets.Signed.Targets}}
	}
	for _, c := range changes {
		if !r.root.Signed.ConsistentSnapshot {
			if err := r.moveStagedFiles(c.m.Signed.Targets, c.next); err != nil {
				return err
			}
		}
		c.m.Signed.Targets = c.next
		c.m.Signed.Version++
		c.m.Signed.Expires = r.expires(metadata.TARGETS)
		if err := sign(r, c.role, c.m); err != nil {
			return err
		}
	}
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Expires = r.expires(metadata.SNAPSHOT)
	r.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(r.targets.Signed.Version)}
	for name, m := range r.delegated {
		r.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(m.Signed.Version)
	}
	if err := sign(r, metadata.SNAPSHOT, r.snapshot); err != nil {
		return err
	}
	r.stampTimestamp()
	if err := sign(r, metadata.TIMESTAMP, r.timestamp); err != nil {
		return err
	}
	if err := r.writeTopLevel(); err != nil {
		return err
	}
	if err := os.RemoveAll(r.stagedDir()); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return r.saveSettings()
}

// RefreshTimestamp signs the next timestamp version, pointing at the
// snapshot on disk, with a fresh expiry. It needs only the timestamp keys
// (OpenOptions.Roles). It re-reads snapshot and timestamp first, under the
// repository lock, so a long-running process (graft-fleet serve) never
// points at an older snapshot than a publish made meanwhile.
func (r *Repo) RefreshTimestamp() error {
	unlock, err := r.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.reloadTimestamp(); err != nil {
		return err
	}
	if err := r.reloadRoot(); err != nil {
		return err
	}
	snap, err := metadata.Snapshot().FromFile(filepath.Join(r.MetadataDir(), "snapshot.json"))
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	r.snapshot = snap
	r.stampTimestamp()
	if err := sign(r, metadata.TIMESTAMP, r.timestamp); err != nil {
		return err
	}
	if err := writeMeta(filepath.Join(r.MetadataDir(), "timestamp.json"), r.timestamp); err != nil {
		return err
	}
	return r.saveSettings()
}

// Expires reads when each top-level role's published metadata expires,
// from the files on disk (another process may have published since Open).
func (r *Repo) Expires() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	md := r.MetadataDir()
	root, err := metadata.Root().FromFile(filepath.Join(md, "root.json"))
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	out[metadata.ROOT] = root.Signed.Expires
	targets, err := metadata.Targets().FromFile(filepath.Join(md, "targets.json"))
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	out[metadata.TARGETS] = targets.Signed.Expires
	snap, err := metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json"))
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	out[metadata.SNAPSHOT] = snap.Signed.Expires
	ts, err := metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json"))
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	out[metadata.TIMESTAMP] = ts.Signed.Expires
	return out, nil
}

// reloadRoot follows a root published by another process (a rotation):
// it re-reads root.json and, when its version changed, the top-level and
// delegated targets and the keys, so a long-running serve signs with the
// rotated timestamp key rather than the rotated-out one.
func (r *Repo) reloadRoot() error {
	root, err := metadata.Root().FromFile(filepath.Join(r.MetadataDir(), "root.json"))
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	if root.Signed.Version == r.root.Signed.Version {
		return nil
	}
	targets, err := metadata.Targets().FromFile(filepath.Join(r.MetadataDir(), "targets.json"))
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	r.root, r.targets = root, targets
	r.delegated = map[string]*metadata.Metadata[metadata.TargetsType]{}
	for _, d := range r.delegations() {
		m, err := metadata.Targets().FromFile(r.metaPath(d.Name, 0))
		if err != nil {
			return fmt.Errorf("repo: delegated role %q: %w", d.Name, err)
		}
		r.delegated[d.Name] = m
	}
	return r.loadKeys(r.passphrase, r.roles)
}

// reloadTimestamp re-reads timestamp.json.
func (r *Repo) reloadTimestamp() error {
	ts, err := metadata.Timestamp().FromFile(filepath.Join(r.MetadataDir(), "timestamp.json"))
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	r.timestamp = ts
	return nil
}

// lock takes the repository's lock file (an exclusive flock on
// <dir>/.lock) and returns its release.
func (r *Repo) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(r.dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("repo: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("repo: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func (r *Repo) stampTimestamp() {
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.expires(metadata.TIMESTAMP)
	r.timestamp.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metadata.MetaFile(r.snapshot.Signed.Version)}
}

// moveStagedFiles (plain repositories) puts staged files in place and
// deletes files of targets in old but not in next.
func (r *Repo) moveStagedFiles(old, next map[string]*metadata.TargetFiles) error {
	for name := range next {
		src := filepath.Join(r.stagedDir(), "files", filepath.FromSlash(name))
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(r.TargetsDir(), filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
		if err := atomicfs.SyncDir(filepath.Dir(dst)); err != nil {
			return err
		}
	}
	for name := range old {
		if _, ok := next[name]; ok {
			continue
		}
		err := os.Remove(filepath.Join(r.TargetsDir(), filepath.FromSlash(name)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("repo: %w", err)
		}
	}
	return nil
}

// Targets returns the published targets (not the staged ones) of every
// targets role, top-level first, then each delegated role by name.
func (r *Repo) Targets() []Target {
	var out []Target
	for _, role := range append([]string{metadata.TARGETS}, mapKeys(r.delegated)...) {
		m, _ := r.targetsOf(role)
		for _, n := range mapKeys(m.Signed.Targets) {
			t := toTarget(n, m.Signed.Targets[n])
			t.Role = role
			out = append(out, t)
		}
	}
	return out
}

func toTarget(name string, tf *metadata.TargetFiles) Target {
	t := Target{Name: name, Length: tf.Length, Hashes: map[string][]byte{}}
	for k, v := range tf.Hashes {
		t.Hashes[k] = bytes.Clone(v)
	}
	if tf.Custom != nil {
		t.Custom = bytes.Clone(*tf.Custom)
	}
	return t
}
