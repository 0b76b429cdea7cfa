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

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// Target describes a target as recorded in targets metadata.
type Target struct {
	Name   string
	Length int64
	Hashes map[string][]byte // "sha256", "sha512"
	Custom json.RawMessage   // nil when none
}

// staged is staged/targets.json: the whole next targets map.
type staged struct {
	Targets map[string]*metadata.TargetFiles `json:"targets"`
}

func (r *Repo) stagedDir() string { return filepath.Join(r.dir, "staged") }

// loadStaged returns the staged targets map, or a copy of the published one
// when nothing is staged (ok false).
func (r *Repo) loadStaged() (map[string]*metadata.TargetFiles, bool, error) {
	data, err := os.ReadFile(filepath.Join(r.stagedDir(), "targets.json"))
	if errors.Is(err, fs.ErrNotExist) {
		m := make(map[string]*metadata.TargetFiles, len(r.targets.Signed.Targets))
		for k, v := range r.targets.Signed.Targets {
			m[k] = v
		}
		return m, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("repo: %w", err)
	}
	var s staged
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, false, fmt.Errorf("repo: staged/targets.json: %w", err)
	}
	if s.Targets == nil {
		s.Targets = map[string]*metadata.TargetFiles{}
	}
	for k, v := range s.Targets {
		v.Path = k
	}
	return s.Targets, true, nil
}

func (r *Repo) saveStaged(m map[string]*metadata.TargetFiles) error {
	if err := os.MkdirAll(r.stagedDir(), 0o755); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	data, err := json.Marshal(staged{Targets: m})
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return atomicfs.WriteFile(filepath.Join(r.stagedDir(), "targets.json"), data, 0o644)
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
	if !cleanName(name) {
		return Target{}, fmt.Errorf("repo: %q: %w", name, ErrInvalidTargetName)
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
	m, _, err := r.loadStaged()
	if err != nil {
		return Target{}, err
	}
	m[name] = tf
	if err := r.saveStaged(m); err != nil {
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
func (r *Repo) RemoveTarget(name string) error {
	m, _, err := r.loadStaged()
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
	return r.saveStaged(m)
}

// Publish signs and writes the staged targets (or the current ones, with
// fresh expiry, when nothing is staged) as the next targets version, then
// the next snapshot and timestamp versions, in that order.
func (r *Repo) Publish() error {
	m, _, err := r.loadStaged()
	if err != nil {
		return err
	}
	if !r.root.Signed.ConsistentSnapshot {
		if err := r.moveStagedFiles(m); err != nil {
			return err
		}
	}
	r.targets.Signed.Targets = m
	r.targets.Signed.Version++
	r.targets.Signed.Expires = r.expires(metadata.TARGETS)
	if err := sign(r, metadata.TARGETS, r.targets); err != nil {
		return err
	}
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Expires = r.expires(metadata.SNAPSHOT)
	r.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(r.targets.Signed.Version)}
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
// current snapshot, with a fresh expiry.
func (r *Repo) RefreshTimestamp() error {
	r.stampTimestamp()
	if err := sign(r, metadata.TIMESTAMP, r.timestamp); err != nil {
		return err
	}
	if err := writeMeta(filepath.Join(r.MetadataDir(), "timestamp.json"), r.timestamp); err != nil {
		return err
	}
	return r.saveSettings()
}

func (r *Repo) stampTimestamp() {
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.expires(metadata.TIMESTAMP)
	r.timestamp.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metadata.MetaFile(r.snapshot.Signed.Version)}
}

// moveStagedFiles (plain repositories) puts staged files in place and
// deletes files of removed targets.
func (r *Repo) moveStagedFiles(next map[string]*metadata.TargetFiles) error {
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
	for name := range r.targets.Signed.Targets {
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

// Targets returns the published targets (not the staged ones).
func (r *Repo) Targets() []Target {
	out := make([]Target, 0, len(r.targets.Signed.Targets))
	for _, n := range mapKeys(r.targets.Signed.Targets) {
		out = append(out, toTarget(n, r.targets.Signed.Targets[n]))
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
