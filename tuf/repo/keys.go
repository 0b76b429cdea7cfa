package repo

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// keyFile is the on-disk form of one role key: the TUF public key fields
// plus the private ed25519 seed, either sealed with a passphrase
// (Encrypted) or, for repositories made without one, hex in
// keyval.private.
type keyFile struct {
	KeyType string `json:"keytype"`
	Scheme  string `json:"scheme"`
	KeyID   string `json:"keyid"`
	KeyVal  struct {
		Public  string `json:"public"`
		Private string `json:"private,omitempty"`
	} `json:"keyval"`
	Encrypted *sealed `json:"encrypted,omitempty"`
}

// roleKey is a loaded signing key.
type roleKey struct {
	id     string
	pub    *metadata.Key
	signer signature.Signer
	path   string
}

// newKey generates an ed25519 key and writes it to path with mode 0600,
// sealed with passphrase when one is given.
func newKey(path string, passphrase []byte) (roleKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: generate key: %w", err)
	}
	k, err := fromPrivate(priv)
	if err != nil {
		return roleKey{}, err
	}
	var kf keyFile
	kf.KeyType, kf.Scheme, kf.KeyID = metadata.KeyTypeEd25519, metadata.KeySchemeEd25519, k.id
	kf.KeyVal.Public = hex.EncodeToString(priv.Public().(ed25519.PublicKey))
	if len(passphrase) > 0 {
		if kf.Encrypted, err = seal(priv.Seed(), passphrase, k.id); err != nil {
			return roleKey{}, fmt.Errorf("repo: seal key: %w", err)
		}
	} else {
		kf.KeyVal.Private = hex.EncodeToString(priv.Seed())
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return roleKey{}, fmt.Errorf("repo: %w", err)
	}
	if err := atomicfs.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return roleKey{}, fmt.Errorf("repo: write key: %w", err)
	}
	k.path = path
	return k, nil
}

func fromPrivate(priv ed25519.PrivateKey) (roleKey, error) {
	signer, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return roleKey{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	pub, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return roleKey{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	id, err := pub.ID()
	if err != nil {
		return roleKey{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return roleKey{id: id, pub: pub, signer: signer}, nil
}

// readKey loads a key file after checking that its mode is 0600 or
// narrower and that the stored public key and key ID match the private
// key. A sealed key needs its passphrase (ErrPassphrase otherwise).
func readKey(path string, passphrase []byte) (roleKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 || !fi.Mode().IsRegular() {
		return roleKey{}, fmt.Errorf("repo: %s has mode %v: %w", path, perm, ErrKeyPermissions)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: %w", err)
	}
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		return roleKey{}, fmt.Errorf("repo: %s: %w: %w", path, ErrKey, err)
	}
	if kf.KeyType != metadata.KeyTypeEd25519 || kf.Scheme != metadata.KeySchemeEd25519 {
		return roleKey{}, fmt.Errorf("repo: %s: %w: key type %q scheme %q, want ed25519", path, ErrKey, kf.KeyType, kf.Scheme)
	}
	var seed []byte
	if kf.Encrypted != nil {
		if seed, err = kf.Encrypted.open(passphrase, kf.KeyID); err != nil {
			return roleKey{}, fmt.Errorf("repo: %s: %w", path, err)
		}
	} else if seed, err = hex.DecodeString(kf.KeyVal.Private); err != nil {
		seed = nil
	}
	if len(seed) != ed25519.SeedSize {
		return roleKey{}, fmt.Errorf("repo: %s: %w: private key is not an ed25519 seed", path, ErrKey)
	}
	k, err := fromPrivate(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: %s: %w", path, err)
	}
	if k.pub.Value.PublicKey != kf.KeyVal.Public || k.id != kf.KeyID {
		return roleKey{}, fmt.Errorf("repo: %s: %w: public key or key ID does not match the private key", path, ErrKey)
	}
	k.path = path
	return k, nil
}

// keyPath is keys/<role, path-escaped>-<n>.json.
func keyPath(dir, role string, n int) string {
	return filepath.Join(dir, "keys", url.PathEscape(role)+"-"+strconv.Itoa(n)+".json")
}

// keyFileRole is the role a key file name keys/<role>-<n>.json is for.
func keyFileRole(name string) (string, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	i := strings.LastIndexByte(base, '-')
	if !ok || i < 1 {
		return "", false
	}
	if _, err := strconv.Atoi(base[i+1:]); err != nil {
		return "", false
	}
	role, err := url.PathUnescape(base[:i])
	return role, err == nil
}

// nextKeyPath is the first free keys/<role>-<n>.json.
func nextKeyPath(dir, role string) string {
	for n := 1; ; n++ {
		p := keyPath(dir, role, n)
		if _, err := os.Lstat(p); err != nil {
			return p
		}
	}
}

// authorizedKeyIDs returns the key IDs root (top-level roles) or the
// top-level targets (delegated roles) give role, and whether role exists.
func (r *Repo) authorizedKeyIDs(role string) ([]string, bool) {
	if slices.Contains(roles, role) {
		return r.root.Signed.Roles[role].KeyIDs, true
	}
	if d := r.delegation(role); d != nil {
		return d.KeyIDs, true
	}
	return nil, false
}

// loadKeys reads every keys/<role>-<n>.json, refusing wide permissions,
// and keeps for each role the keys root (or targets, for a delegated
// role) authorizes for it. only, when not nil, limits which roles' keys
// are read (and so decrypted) at all. Subdirectories (pending/) are
// skipped.
func (r *Repo) loadKeys(passphrase []byte, only []string) error {
	kdir := filepath.Join(r.dir, "keys")
	fi, err := os.Stat(kdir)
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("repo: %s has mode %v: %w", kdir, fi.Mode().Perm(), ErrKeyPermissions)
	}
	ents, err := os.ReadDir(kdir)
	if err != nil {
		return fmt.Errorf("repo: %w", err)
	}
	r.keys = map[string][]roleKey{}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		role, ok := keyFileRole(name)
		if !ok {
			return fmt.Errorf("repo: %s: %w: file name is not <role>-<n>.json", name, ErrKey)
		}
		ids, ok := r.authorizedKeyIDs(role)
		if !ok {
			return fmt.Errorf("repo: %s: %w: unknown role %q", name, ErrKey, role)
		}
		if only != nil && !slices.Contains(only, role) {
			continue
		}
		k, err := readKey(filepath.Join(kdir, name), passphrase)
		if err != nil {
			return err
		}
		if !slices.Contains(ids, k.id) {
			return fmt.Errorf("repo: %s: %w: key %s is not a %s key in the metadata", name, ErrKey, k.id, role)
		}
		r.keys[role] = append(r.keys[role], k)
	}
	return nil
}

// KeyFilesIn lists the files under dir that hold a private key in
// graft's key file format (sealed or not). graft-fleet serve refuses to
// serve a directory where it finds one.
func KeyFilesIn(dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > 1<<16 {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var kf keyFile
		if json.Unmarshal(data, &kf) == nil && (kf.KeyVal.Private != "" || kf.Encrypted != nil) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	return found, nil
}

// SealKeys seals every plain key file under keys/ (a repository made
// before keys were sealed, or without a passphrase) with the passphrase
// the repository was opened with, and returns how many it sealed. Sealed
// files are left alone.
func (r *Repo) SealKeys() (int, error) {
	if len(r.passphrase) == 0 {
		return 0, fmt.Errorf("repo: seal keys: %w: no passphrase", ErrPassphrase)
	}
	n := 0
	err := filepath.WalkDir(filepath.Join(r.dir, "keys"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var kf keyFile
		if err := json.Unmarshal(data, &kf); err != nil || kf.Encrypted != nil {
			return nil // not a plain key file
		}
		k, err := readKey(p, nil)
		if err != nil {
			return err
		}
		seed, err := hex.DecodeString(kf.KeyVal.Private)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrKey, p)
		}
		if kf.Encrypted, err = seal(seed, r.passphrase, k.id); err != nil {
			return err
		}
		kf.KeyVal.Private = ""
		out, err := json.MarshalIndent(kf, "", "  ")
		if err != nil {
			return err
		}
		if err := atomicfs.WriteFile(p, append(out, '\n'), 0o600); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("repo: seal keys: %w", err)
	}
	return n, nil
}
