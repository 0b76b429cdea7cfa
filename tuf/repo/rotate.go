package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// RotateOptions say what a top-level role's keys become.
type RotateOptions struct {
	// Keys to generate for the role (they replace all its current keys);
	// default the threshold.
	Keys int
	// Threshold of signatures for the role; default 1.
	Threshold int
}

// PreparedRootPath is where a root version waiting for signatures is
// kept: pending/root.json in the repository (never under metadata/).
func (r *Repo) PreparedRootPath() string { return filepath.Join(r.dir, "pending", "root.json") }

func (r *Repo) pendingKeyDir() string { return filepath.Join(r.dir, "keys", "pending") }

// Rotate replaces every key of a top-level role with o.Keys new ones
// and sets its threshold, in root version N+1 (expiry renewed). The new
// keys wait in keys/pending/ until that root is published.
//
// The new root must be signed by a threshold of the current root keys and
// by a threshold of its own root keys (TUF 5.3.4, 5.3.5). Rotate signs it
// with every root key the repository holds (and, for a root rotation, the
// new root keys); when that is enough it publishes the root (MergeRoot's
// second half), otherwise it returns ErrRootSignatures and the prepared
// root waits in PreparedRootPath for offline signatures (SignRootFile),
// then MergeRoot.
func (r *Repo) Rotate(role string, o RotateOptions) error {
	if !slices.Contains(roles, role) {
		return fmt.Errorf("repo: rotate %q: %w: not a top-level role", role, ErrInvalidRole)
	}
	if o.Threshold == 0 {
		o.Threshold = 1
	}
	if o.Keys == 0 {
		o.Keys = o.Threshold
	}
	if o.Threshold < 1 || o.Keys < o.Threshold || o.Keys > maxKeys {
		return &OptionError{Option: "Keys", Reason: fmt.Sprintf("%d keys, threshold %d: need 1 ≤ threshold ≤ keys ≤ %d", o.Keys, o.Threshold, maxKeys)}
	}
	if _, err := os.Stat(r.PreparedRootPath()); err == nil {
		return fmt.Errorf("repo: rotate %s: %w: a prepared root is waiting in %s; sign and merge it, or DiscardPreparedRoot",
			role, ErrInvalidOption, r.PreparedRootPath())
	}
	next, err := cloneRoot(r.root)
	if err != nil {
		return err
	}
	next.ClearSignatures()
	next.Signed.Version++
	next.Signed.Expires = r.expires(metadata.ROOT)
	next.Signed.Roles[role].KeyIDs = []string{}
	next.Signed.Roles[role].Threshold = o.Threshold
	if err := os.MkdirAll(r.pendingKeyDir(), 0o700); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	var fresh []roleKey
	for i := 1; i <= o.Keys; i++ {
		k, err := newKey(filepath.Join(r.pendingKeyDir(), filepath.Base(keyPath(r.dir, role, i))), r.passphrase)
		if err != nil {
			return err
		}
		if err := next.Signed.AddKey(k.pub, role); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
		fresh = append(fresh, k)
	}
	pruneKeys(&next.Signed)
	signers := slices.Clone(r.keys[metadata.ROOT])
	if role == metadata.ROOT {
		signers = append(signers, fresh...)
	}
	for _, k := range signers {
		if err := addSignature(next, k); err != nil {
			return err
		}
	}
	if err := r.savePrepared(next); err != nil {
		return err
	}
	return r.publishPrepared()
}

// cloneRoot deep-copies root metadata through its JSON form.
func cloneRoot(m *metadata.Metadata[metadata.RootType]) (*metadata.Metadata[metadata.RootType], error) {
	b, err := m.ToBytes(false)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	out, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	return out, nil
}

// pruneKeys drops keys no role of root uses any more.
func pruneKeys(root *metadata.RootType) {
	used := map[string]bool{}
	for _, role := range root.Roles {
		for _, id := range role.KeyIDs {
			used[id] = true
		}
	}
	for id := range root.Keys {
		if !used[id] {
			delete(root.Keys, id)
		}
	}
}

// addSignature signs m with k, replacing an earlier signature by k.
func addSignature(m *metadata.Metadata[metadata.RootType], k roleKey) error {
	m.Signatures = slices.DeleteFunc(m.Signatures, func(s metadata.Signature) bool { return s.KeyID == k.id })
	if _, err := m.Sign(k.signer); err != nil {
		return fmt.Errorf("repo: sign root: %w", err)
	}
	return nil
}

func (r *Repo) savePrepared(m *metadata.Metadata[metadata.RootType]) error {
	if err := os.MkdirAll(filepath.Dir(r.PreparedRootPath()), 0o755); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return writeMeta(r.PreparedRootPath(), m)
}

func (r *Repo) loadPrepared() (*metadata.Metadata[metadata.RootType], error) {
	m, err := metadata.Root().FromFile(r.PreparedRootPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repo: %w", ErrNoPreparedRoot)
	}
	if err != nil {
		return nil, fmt.Errorf("repo: %s: %w", r.PreparedRootPath(), err)
	}
	return m, nil
}

// SignRootFile adds the signature of the key in keyFile to the root
// metadata in rootFile (a prepared root carried to an offline machine),
// replacing an earlier signature by the same key. It needs nothing but the
// two files: no repository.
func SignRootFile(rootFile, keyFile string, passphrase []byte) error {
	m, err := metadata.Root().FromFile(rootFile)
	if err != nil {
		return fmt.Errorf("repo: %s: %w", rootFile, err)
	}
	k, err := readKey(keyFile, passphrase)
	if err != nil {
		return err
	}
	if err := addSignature(m, k); err != nil {
		return err
	}
	return writeMeta(rootFile, m)
}

// MergeRoot takes a copy of the prepared root that was signed elsewhere
// (SignRootFile), adds its signatures to the prepared root, and publishes
// it once it has a threshold of both the current and its own root keys.
// A root whose signed part differs from the prepared one is refused with
// ErrNoPreparedRoot; too few signatures leave it prepared and return
// ErrRootSignatures.
func (r *Repo) MergeRoot(signed []byte) error {
	cur, err := r.loadPrepared()
	if err != nil {
		return err
	}
	in, err := metadata.Root().FromBytes(signed)
	if err != nil {
		return fmt.Errorf("repo: merge root: %w", err)
	}
	a, errA := json.Marshal(cur.Signed)
	b, errB := json.Marshal(in.Signed)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return fmt.Errorf("repo: merge root: %w: its signed part differs from %s", ErrNoPreparedRoot, r.PreparedRootPath())
	}
	// the incoming signature wins for a key that signed both copies
	for _, s := range in.Signatures {
		cur.Signatures = slices.DeleteFunc(cur.Signatures, func(c metadata.Signature) bool { return c.KeyID == s.KeyID })
		cur.Signatures = append(cur.Signatures, s)
	}
	if err := r.savePrepared(cur); err != nil {
		return err
	}
	return r.publishPrepared()
}

// DiscardPreparedRoot drops a prepared root and its pending keys.
func (r *Repo) DiscardPreparedRoot() error {
	if err := os.RemoveAll(filepath.Dir(r.PreparedRootPath())); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	if err := os.RemoveAll(r.pendingKeyDir()); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return nil
}

// publishPrepared publishes the prepared root if both thresholds are met:
// writes N.root.json and root.json, puts the pending keys in place,
// deletes the key files of keys the new root no longer trusts, and
// re-signs targets, snapshot and timestamp under the new root (publishing
// whatever else was staged).
func (r *Repo) publishPrepared() error {
	next, err := r.loadPrepared()
	if err != nil {
		return err
	}
	if next.Signed.Version != r.root.Signed.Version+1 {
		return fmt.Errorf("repo: prepared root is version %d, want %d: %w", next.Signed.Version, r.root.Signed.Version+1, ErrNoPreparedRoot)
	}
	var missing []string
	if err := r.root.VerifyDelegate(metadata.ROOT, next); err != nil {
		missing = append(missing, fmt.Sprintf("%d of the current root keys %s", r.root.Signed.Roles[metadata.ROOT].Threshold, shortIDs(r.root.Signed.Roles[metadata.ROOT].KeyIDs)))
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		missing = append(missing, fmt.Sprintf("%d of the new root keys %s", next.Signed.Roles[metadata.ROOT].Threshold, shortIDs(next.Signed.Roles[metadata.ROOT].KeyIDs)))
	}
	if len(missing) > 0 {
		return fmt.Errorf("repo: root version %d in %s: %w: needs signatures from %s",
			next.Signed.Version, r.PreparedRootPath(), ErrRootSignatures, strings.Join(missing, " and "))
	}
	r.root = next
	if err := r.writeRoot(); err != nil {
		return err
	}
	if err := r.installPendingKeys(); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Dir(r.PreparedRootPath())); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	if err := r.loadKeys(r.passphrase, r.roles); err != nil {
		return err
	}
	return r.Publish()
}

// installPendingKeys deletes the key files of top-level roles that the
// (new) root no longer lists, then moves keys/pending/* into keys/.
func (r *Repo) installPendingKeys() error {
	kdir := filepath.Join(r.dir, "keys")
	ents, err := os.ReadDir(kdir)
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	for _, e := range ents {
		role, ok := keyFileRole(e.Name())
		if e.IsDir() || !ok || !slices.Contains(roles, role) {
			continue
		}
		p := filepath.Join(kdir, e.Name())
		k, err := readKey(p, r.passphrase)
		if err != nil {
			return err
		}
		if !slices.Contains(r.root.Signed.Roles[role].KeyIDs, k.id) {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("repo: remove rotated-out key: %w", err)
			}
		}
	}
	pend, err := os.ReadDir(r.pendingKeyDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	for _, e := range pend {
		role, ok := keyFileRole(e.Name())
		if !ok {
			continue
		}
		if err := os.Rename(filepath.Join(r.pendingKeyDir(), e.Name()), nextKeyPath(r.dir, role)); err != nil {
			return fmt.Errorf("repo: %w", err)
		}
	}
	if err := os.Remove(r.pendingKeyDir()); err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	return atomicfs.SyncDir(kdir)
}

func shortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(len(id), 8)]
	}
	return "[" + strings.Join(out, " ") + "]"
}

// RoleKeys describes one role's keys.
type RoleKeys struct {
	Role      string   `json:"role"`
	Delegated bool     `json:"delegated,omitempty"`
	Threshold int      `json:"threshold"`
	KeyIDs    []string `json:"keyids"`
	// Held are the key IDs with a key file in this repository (the rest
	// are offline, or elsewhere).
	Held []string `json:"held"`
	// Paths a delegated role may sign.
	Paths []string `json:"paths,omitempty"`
}

// Keys lists every role's threshold and keys, and which of them this
// repository holds. Pending reports a prepared root waiting for
// signatures, with its version.
func (r *Repo) Keys() (list []RoleKeys, pending int64) {
	held := func(role string) []string {
		out := []string{}
		for _, k := range r.keys[role] {
			out = append(out, k.id)
		}
		return out
	}
	for _, role := range roles {
		rk := r.root.Signed.Roles[role]
		list = append(list, RoleKeys{Role: role, Threshold: rk.Threshold, KeyIDs: rk.KeyIDs, Held: held(role)})
	}
	for _, d := range r.delegations() {
		list = append(list, RoleKeys{Role: d.Name, Delegated: true, Threshold: d.Threshold, KeyIDs: d.KeyIDs, Held: held(d.Name), Paths: d.Paths})
	}
	if m, err := r.loadPrepared(); err == nil {
		pending = m.Signed.Version
	}
	return list, pending
}

// writeRoot writes N.root.json (the chain devices walk) and root.json.
func (r *Repo) writeRoot() error {
	md := r.MetadataDir()
	v := strconv.FormatInt(r.root.Signed.Version, 10)
	if err := writeMeta(filepath.Join(md, v+".root.json"), r.root); err != nil {
		return err
	}
	return writeMeta(filepath.Join(md, "root.json"), r.root)
}
