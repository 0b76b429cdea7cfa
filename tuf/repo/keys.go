package repo

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
// plus the private ed25519 seed, all hex.
type keyFile struct {
	KeyType string `json:"keytype"`
	Scheme  string `json:"scheme"`
	KeyID   string `json:"keyid"`
	KeyVal  struct {
		Public  string `json:"public"`
		Private string `json:"private"`
	} `json:"keyval"`
}

// roleKey is a loaded signing key.
type roleKey struct {
	id     string
	pub    *metadata.Key
	signer signature.Signer
}

// newKey generates an ed25519 key and writes it to path with mode 0600.
func newKey(path string) (roleKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: generate key: %w", err)
	}
	k, err := fromPrivate(priv)
	if err != nil {
		return roleKey{}, err
	}
	var kf keyFile
	kf.KeyType, kf.Scheme, kf.KeyID = metadata.KeyTypeEd25519, metadata.KeySchemeEd25519, k.id
	kf.KeyVal.Public = hex.EncodeToString(pub)
	kf.KeyVal.Private = hex.EncodeToString(priv.Seed())
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: %w", err)
	}
	if err := atomicfs.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return roleKey{}, fmt.Errorf("repo: write key: %w", err)
	}
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
// narrower and that the stored public key and key ID match the private key.
func readKey(path string) (roleKey, error) {
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
	seed, err := hex.DecodeString(kf.KeyVal.Private)
	if err != nil || len(seed) != ed25519.SeedSize {
		return roleKey{}, fmt.Errorf("repo: %s: %w: private key is not a hex ed25519 seed", path, ErrKey)
	}
	k, err := fromPrivate(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		return roleKey{}, fmt.Errorf("repo: %s: %w", path, err)
	}
	if k.pub.Value.PublicKey != kf.KeyVal.Public || k.id != kf.KeyID {
		return roleKey{}, fmt.Errorf("repo: %s: %w: public key or key ID does not match the private key", path, ErrKey)
	}
	return k, nil
}

// keyPath is keys/<role>-<n>.json.
func keyPath(dir, role string, n int) string {
	return filepath.Join(dir, "keys", role+"-"+strconv.Itoa(n)+".json")
}

// loadKeys reads every keys/<role>-<n>.json, refusing wide permissions,
// and keeps for each role the keys root authorizes for it.
func loadKeys(dir string, root *metadata.Metadata[metadata.RootType]) (map[string][]roleKey, error) {
	kdir := filepath.Join(dir, "keys")
	fi, err := os.Stat(kdir)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("repo: %s has mode %v: %w", kdir, fi.Mode().Perm(), ErrKeyPermissions)
	}
	ents, err := os.ReadDir(kdir)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	keys := map[string][]roleKey{}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		i := strings.LastIndexByte(name, '-')
		if i < 0 {
			return nil, fmt.Errorf("repo: %s: %w: file name is not <role>-<n>.json", name, ErrKey)
		}
		role := name[:i]
		if !slices.Contains(roles, role) {
			return nil, fmt.Errorf("repo: %s: %w: unknown role %q", name, ErrKey, role)
		}
		k, err := readKey(filepath.Join(kdir, name))
		if err != nil {
			return nil, err
		}
		if !slices.Contains(root.Signed.Roles[role].KeyIDs, k.id) {
			return nil, fmt.Errorf("repo: %s: %w: key %s is not a %s key in root.json", name, ErrKey, k.id, role)
		}
		keys[role] = append(keys[role], k)
	}
	return keys, nil
}
