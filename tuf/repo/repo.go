package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// roles are the top-level TUF roles, in signing order.
var roles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

const day = 24 * time.Hour

// DefaultExpiry is the validity of each role's metadata when Options.Expiry
// does not say.
var DefaultExpiry = map[string]time.Duration{
	metadata.ROOT:      365 * day,
	metadata.TARGETS:   90 * day,
	metadata.SNAPSHOT:  7 * day,
	metadata.TIMESTAMP: 1 * day,
}

// maxKeys bounds Options.Keys, a guard against typos.
const maxKeys = 16

// Options configure Create. Zero values take the defaults.
type Options struct {
	// Thresholds maps role → signatures required; default 1 each.
	Thresholds map[string]int
	// Keys maps role → keys to generate; default the threshold. Must be at
	// least the threshold.
	Keys map[string]int
	// Expiry maps role → validity of its metadata from the moment it is
	// signed; defaults in DefaultExpiry (root 365d, targets 90d, snapshot
	// 7d, timestamp 1d).
	Expiry map[string]time.Duration
	// ConsistentSnapshot makes the repository write N.snapshot.json,
	// N.targets.json and hash-prefixed target files, so it can be updated
	// while devices read it (and cached forever by a CDN). The zero value
	// (false) gives a plain repository; graft-fleet passes true, and it is
	// the recommended setting for anything served over the network.
	ConsistentSnapshot bool
	// Now is the clock for expiry dates (tests create expired metadata
	// with it); nil means time.Now.
	Now func() time.Time
	// Passphrase seals every private key file (scrypt and
	// XChaCha20-Poly1305). Empty writes plain key files: for tests only;
	// graft-fleet always passes one.
	Passphrase []byte
}

// OpenOptions configure OpenWith.
type OpenOptions struct {
	// Passphrase opens sealed key files (ErrPassphrase without it).
	Passphrase []byte
	// Roles, when not nil, loads (and decrypts) only these roles' keys:
	// graft-fleet serve re-signs the timestamp with the timestamp key
	// alone.
	Roles []string
	// Now is the clock for expiry dates; nil means time.Now.
	Now func() time.Time
}

// settings is repo.json: what Open needs that root.json does not say.
type settings struct {
	Expiry map[string]string `json:"expiry"` // role → time.Duration string
}

// Repo is an open repository directory. It is not safe for concurrent use,
// and two Repos must not work on one directory at the same time.
type Repo struct {
	dir        string
	now        func() time.Time
	passphrase []byte
	expiry     map[string]time.Duration
	keys       map[string][]roleKey
	root       *metadata.Metadata[metadata.RootType]
	targets    *metadata.Metadata[metadata.TargetsType]
	snapshot   *metadata.Metadata[metadata.SnapshotType]
	timestamp  *metadata.Metadata[metadata.TimestampType]
	// delegated holds the metadata of each role the top-level targets
	// delegates to, by name.
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	// roles is OpenOptions.Roles: whose keys are loaded (nil: all).
	roles []string
}

func (o Options) validate() error {
	for _, m := range []struct {
		name string
		keys []string
	}{
		{"Thresholds", mapKeys(o.Thresholds)},
		{"Keys", mapKeys(o.Keys)},
		{"Expiry", mapKeys(o.Expiry)},
	} {
		for _, k := range m.keys {
			if !slices.Contains(roles, k) {
				return &OptionError{Option: fmt.Sprintf("%s[%q]", m.name, k), Reason: "not a top-level role (root, targets, snapshot, timestamp)"}
			}
		}
	}
	for _, role := range roles {
		t, ok := o.Thresholds[role]
		if ok && t < 1 {
			return &OptionError{Option: fmt.Sprintf("Thresholds[%q]", role), Reason: fmt.Sprintf("%d, must be at least 1", t)}
		}
		if !ok {
			t = 1
		}
		if n, ok := o.Keys[role]; ok && (n < t || n > maxKeys) {
			return &OptionError{Option: fmt.Sprintf("Keys[%q]", role), Reason: fmt.Sprintf("%d, must be between the threshold %d and %d", n, t, maxKeys)}
		}
		if d, ok := o.Expiry[role]; ok && d < time.Second {
			return &OptionError{Option: fmt.Sprintf("Expiry[%q]", role), Reason: fmt.Sprintf("%v, must be at least 1s", d)}
		}
	}
	return nil
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Create makes a new repository in dir (created if missing; it must not
// hold keys or metadata yet): generates ed25519 keys into dir/keys
// (<role>-<n>.json, mode 0600), writes version 1 of root, targets (empty),
// snapshot and timestamp into dir/metadata, and an empty dir/targets.
func Create(dir string, opts Options) (*Repo, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	for _, p := range []string{"keys", "metadata"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return nil, fmt.Errorf("repo: %s: %w", dir, ErrExists)
		}
	}
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{{"", 0o755}, {"keys", 0o700}, {"metadata", 0o755}, {"targets", 0o755}} {
		if err := os.MkdirAll(filepath.Join(dir, d.p), d.mode); err != nil {
			return nil, fmt.Errorf("repo: %w", err)
		}
	}
	r := &Repo{dir: dir, now: opts.Now, expiry: map[string]time.Duration{}, keys: map[string][]roleKey{},
		passphrase: opts.Passphrase, delegated: map[string]*metadata.Metadata[metadata.TargetsType]{}}
	if r.now == nil {
		r.now = time.Now
	}
	for _, role := range roles {
		r.expiry[role] = DefaultExpiry[role]
		if d, ok := opts.Expiry[role]; ok {
			r.expiry[role] = d
		}
	}

	r.root = metadata.Root(r.expires(metadata.ROOT))
	r.root.Signed.ConsistentSnapshot = opts.ConsistentSnapshot
	for _, role := range roles {
		t := opts.Thresholds[role]
		if t == 0 {
			t = 1
		}
		n := opts.Keys[role]
		if n == 0 {
			n = t
		}
		r.root.Signed.Roles[role].Threshold = t
		for i := 1; i <= n; i++ {
			k, err := newKey(keyPath(dir, role, i), opts.Passphrase)
			if err != nil {
				return nil, err
			}
			if err := r.root.Signed.AddKey(k.pub, role); err != nil {
				return nil, fmt.Errorf("repo: %w", err)
			}
			r.keys[role] = append(r.keys[role], k)
		}
	}
	if err := sign(r, metadata.ROOT, r.root); err != nil {
		return nil, err
	}
	r.targets = metadata.Targets(r.expires(metadata.TARGETS))
	if err := sign(r, metadata.TARGETS, r.targets); err != nil {
		return nil, err
	}
	r.snapshot = metadata.Snapshot(r.expires(metadata.SNAPSHOT))
	if err := sign(r, metadata.SNAPSHOT, r.snapshot); err != nil {
		return nil, err
	}
	r.timestamp = metadata.Timestamp(r.expires(metadata.TIMESTAMP))
	if err := sign(r, metadata.TIMESTAMP, r.timestamp); err != nil {
		return nil, err
	}
	if err := r.writeRoot(); err != nil {
		return nil, err
	}
	if err := r.writeTopLevel(); err != nil {
		return nil, err
	}
	if err := r.saveSettings(); err != nil {
		return nil, err
	}
	return r, nil
}

// Open loads the repository in dir with plain (unsealed) key files; see
// OpenWith.
func Open(dir string) (*Repo, error) { return OpenWith(dir, OpenOptions{}) }

// OpenReadOnly opens the repository in dir without loading any private
// key: for reading its metadata and targets (release list, notify, serve
// without re-signing, a factory station), no passphrase needed.
func OpenReadOnly(dir string) (*Repo, error) {
	return OpenWith(dir, OpenOptions{Roles: []string{}})
}

// OpenWith loads the repository in dir. It refuses key files (and a keys
// directory) open to group or others with ErrKeyPermissions, key files
// that root.json (or, for a delegated role, targets.json) does not
// authorize with ErrKey, and sealed key files it cannot open with
// ErrPassphrase.
func OpenWith(dir string, opts OpenOptions) (*Repo, error) {
	r := &Repo{dir: dir, now: opts.Now, expiry: map[string]time.Duration{}, passphrase: opts.Passphrase,
		delegated: map[string]*metadata.Metadata[metadata.TargetsType]{}, roles: opts.Roles}
	if r.now == nil {
		r.now = time.Now
	}
	var err error
	md := r.MetadataDir()
	if r.root, err = metadata.Root().FromFile(filepath.Join(md, "root.json")); err != nil {
		return nil, fmt.Errorf("repo: open %s: %w", dir, err)
	}
	if r.targets, err = metadata.Targets().FromFile(filepath.Join(md, "targets.json")); err != nil {
		return nil, fmt.Errorf("repo: open %s: %w", dir, err)
	}
	if r.snapshot, err = metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json")); err != nil {
		return nil, fmt.Errorf("repo: open %s: %w", dir, err)
	}
	if r.timestamp, err = metadata.Timestamp().FromFile(filepath.Join(md, "timestamp.json")); err != nil {
		return nil, fmt.Errorf("repo: open %s: %w", dir, err)
	}
	for _, d := range r.delegations() {
		m, err := metadata.Targets().FromFile(r.metaPath(d.Name, 0))
		if err != nil {
			return nil, fmt.Errorf("repo: open %s: delegated role %q: %w", dir, d.Name, err)
		}
		r.delegated[d.Name] = m
	}
	if err := r.loadKeys(opts.Passphrase, opts.Roles); err != nil {
		return nil, err
	}
	for _, role := range roles {
		r.expiry[role] = DefaultExpiry[role]
	}
	data, err := os.ReadFile(filepath.Join(dir, "repo.json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repo: %w", err)
	}
	if err == nil {
		var s settings
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("repo: repo.json: %w", err)
		}
		for role, v := range s.Expiry {
			d, err := time.ParseDuration(v)
			if err != nil || !slices.Contains(roles, role) {
				return nil, fmt.Errorf("repo: repo.json: expiry %q = %q is not a role and a duration", role, v)
			}
			r.expiry[role] = d
		}
	}
	return r, nil
}

// Root returns the current root.json bytes: what devices are provisioned
// with (tuf.Init).
func (r *Repo) Root() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(r.MetadataDir(), "root.json"))
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	return b, nil
}

// MetadataDir is the directory to serve as the devices' metadata URL.
func (r *Repo) MetadataDir() string { return filepath.Join(r.dir, "metadata") }

// TargetsDir is the directory to serve as the devices' targets URL.
func (r *Repo) TargetsDir() string { return filepath.Join(r.dir, "targets") }

// SetExpiry changes the validity of role's metadata. It applies to the
// next Publish or RefreshTimestamp, which also record it in repo.json.
// A root expiry set here applies to the next Rotate. Unknown roles and durations under a
// second are ignored.
func (r *Repo) SetExpiry(role string, d time.Duration) {
	if slices.Contains(roles, role) && d >= time.Second {
		r.expiry[role] = d
	}
}

// Expiry is the validity role's metadata gets when it is signed.
func (r *Repo) Expiry(role string) time.Duration { return r.expiry[role] }

func (r *Repo) expires(role string) time.Time {
	return r.now().UTC().Add(r.expiry[role]).Truncate(time.Second)
}

func (r *Repo) saveSettings() error {
	s := settings{Expiry: map[string]string{}}
	for role, d := range r.expiry {
		s.Expiry[role] = d.String()
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return atomicfs.WriteFile(filepath.Join(r.dir, "repo.json"), append(data, '\n'), 0o644)
}

// sign replaces m's signatures with those of every key of role that Repo
// holds, then checks them against the delegator's threshold for the role
// (root for top-level roles, the top-level targets for delegated ones).
func sign[T metadata.Roles](r *Repo, role string, m *metadata.Metadata[T]) error {
	m.ClearSignatures()
	for _, k := range r.keys[role] {
		if _, err := m.Sign(k.signer); err != nil {
			return fmt.Errorf("repo: sign %s: %w", role, err)
		}
	}
	var err error
	var threshold int
	if slices.Contains(roles, role) {
		err, threshold = r.root.VerifyDelegate(role, m), r.root.Signed.Roles[role].Threshold
	} else if d := r.delegation(role); d != nil {
		err, threshold = r.targets.VerifyDelegate(role, m), d.Threshold
	} else {
		return fmt.Errorf("repo: sign %s: %w: no such role", role, ErrKey)
	}
	if err != nil {
		return fmt.Errorf("repo: sign %s: %w: %d usable keys, threshold %d: %w",
			role, ErrKey, len(r.keys[role]), threshold, err)
	}
	return nil
}

func writeMeta[T metadata.Roles](path string, m *metadata.Metadata[T]) error {
	data, err := m.ToBytes(false)
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	if err := atomicfs.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return nil
}

// metaPath is where role's metadata lives in metadata/: ROLE.json, or
// VERSION.ROLE.json when version > 0. Delegated role names may hold "/"
// (a subdirectory: what a web server maps the client's escaped %2F back
// to) and any other character validRoleName allows.
func (r *Repo) metaPath(role string, version int64) string {
	name := role + ".json"
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	return filepath.Join(r.MetadataDir(), filepath.FromSlash(name))
}

// writeTargets writes one targets role (top-level or delegated): the
// versioned copy first with consistent snapshots, then ROLE.json.
func (r *Repo) writeTargets(role string, m *metadata.Metadata[metadata.TargetsType]) error {
	paths := []string{r.metaPath(role, 0)}
	if r.root.Signed.ConsistentSnapshot {
		paths = []string{r.metaPath(role, m.Signed.Version), paths[0]}
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
		if err := writeMeta(p, m); err != nil {
			return err
		}
	}
	return nil
}

// writeTopLevel writes the delegated roles and targets, then snapshot,
// then timestamp: a device that reads the new timestamp finds everything
// it points to.
func (r *Repo) writeTopLevel() error {
	md := r.MetadataDir()
	for _, name := range mapKeys(r.delegated) {
		if err := r.writeTargets(name, r.delegated[name]); err != nil {
			return err
		}
	}
	if err := r.writeTargets(metadata.TARGETS, r.targets); err != nil {
		return err
	}
	if r.root.Signed.ConsistentSnapshot {
		v := strconv.FormatInt(r.snapshot.Signed.Version, 10)
		if err := writeMeta(filepath.Join(md, v+".snapshot.json"), r.snapshot); err != nil {
			return err
		}
	}
	if err := writeMeta(filepath.Join(md, "snapshot.json"), r.snapshot); err != nil {
		return err
	}
	return writeMeta(filepath.Join(md, "timestamp.json"), r.timestamp)
}
