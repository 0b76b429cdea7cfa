package repo_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf/repo"
)

// TestSealedKeys: with a passphrase every key file is sealed (no seed in
// it, in any encoding of the seed the plain format would use); opening
// needs the passphrase (ErrPassphrase without it or with a wrong one);
// OpenWith Roles decrypts only those roles' keys; a sealed key moved
// under another key's ID does not open.
func TestSealedKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r")
	pass := []byte("correct horse")
	if _, err := repo.Create(dir, repo.Options{Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "keys"))
	if len(ents) != 4 {
		t.Fatalf("%d key files", len(ents))
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, "keys", e.Name()))
		if bytes.Contains(b, []byte(`"private"`)) || !bytes.Contains(b, []byte(`"ciphertext"`)) {
			t.Fatalf("%s is not sealed: %s", e.Name(), b)
		}
	}
	if _, err := repo.Open(dir); !errors.Is(err, repo.ErrPassphrase) {
		t.Fatalf("Open without the passphrase: %v, want ErrPassphrase", err)
	}
	if _, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: []byte("wrong")}); !errors.Is(err, repo.ErrPassphrase) {
		t.Fatalf("Open with a wrong passphrase: %v, want ErrPassphrase", err)
	}
	r, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass, Roles: []string{"timestamp"}})
	if err != nil {
		t.Fatal(err)
	}
	list, _ := r.Keys()
	for _, k := range list {
		if held := len(k.Held); (k.Role == "timestamp") != (held == 1) {
			t.Fatalf("role %s: %d keys held with Roles=[timestamp]", k.Role, held)
		}
	}
	if err := r.RefreshTimestamp(); err != nil {
		t.Fatalf("RefreshTimestamp with the timestamp key alone: %v", err)
	}
	if err := r.Publish(); !errors.Is(err, repo.ErrKey) {
		t.Fatalf("Publish without the targets key: %v, want ErrKey", err)
	}
	if _, err := repo.OpenWith(dir, repo.OpenOptions{Roles: []string{}}); err != nil {
		t.Fatalf("Open without keys needs no passphrase: %v", err)
	}

	// swap the sealed parts of two key files: the key ID is the sealed
	// data's additional data, so neither opens
	a, b := filepath.Join(dir, "keys", "snapshot-1.json"), filepath.Join(dir, "keys", "timestamp-1.json")
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	sealedPart := func(x []byte) string { return string(x[bytes.Index(x, []byte(`"encrypted"`)):]) }
	swapped := strings.Replace(string(ab), sealedPart(ab), sealedPart(bb), 1)
	if err := os.WriteFile(a, []byte(swapped), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass, Roles: []string{"snapshot"}}); !errors.Is(err, repo.ErrPassphrase) && !errors.Is(err, repo.ErrKey) {
		t.Fatalf("a sealed seed under another key ID: %v", err)
	}
}

// TestKeyFilesIn: a private key file copied into a served directory is
// found.
func TestKeyFilesIn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r")
	r, err := repo.Create(dir, repo.Options{Passphrase: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	if found, err := repo.KeyFilesIn(r.MetadataDir()); err != nil || len(found) != 0 {
		t.Fatalf("fresh metadata dir: %v %v", found, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "keys", "timestamp-1.json"))
	os.MkdirAll(filepath.Join(r.TargetsDir(), "x"), 0o755)
	os.WriteFile(filepath.Join(r.TargetsDir(), "x", "oops.json"), b, 0o644)
	if found, err := repo.KeyFilesIn(r.TargetsDir()); err != nil || len(found) != 1 {
		t.Fatalf("key file in targets/: %v %v", found, err)
	}
}

// TestTimestampHandleFollowsRotation: a long-lived handle with the
// timestamp key alone (graft-fleet serve) keeps re-signing after another
// handle rotated the timestamp key: its next timestamp is signed by the
// new key, which the new root trusts.
func TestTimestampHandleFollowsRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r")
	pass := []byte("p")
	if _, err := repo.Create(dir, repo.Options{Passphrase: pass}); err != nil {
		t.Fatal(err)
	}
	serve, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass, Roles: []string{"timestamp"}})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Rotate("timestamp", repo.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := serve.RefreshTimestamp(); err != nil {
		t.Fatalf("RefreshTimestamp after the rotation: %v", err)
	}
	root, err := metadata.Root().FromFile(filepath.Join(dir, "metadata", "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := metadata.Timestamp().FromFile(filepath.Join(dir, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate("timestamp", ts); err != nil {
		t.Fatalf("the timestamp serve signed after the rotation: %v", err)
	}
}

// TestSealKeys: a repository made with plain key files is sealed in
// place; it then opens only with the passphrase, and still signs.
func TestSealKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r")
	if _, err := repo.Create(dir, repo.Options{}); err != nil {
		t.Fatal(err)
	}
	pass := []byte("later")
	r, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.SealKeys(); err != nil || n != 4 {
		t.Fatalf("SealKeys = %d, %v; want 4 sealed", n, err)
	}
	if n, err := r.SealKeys(); err != nil || n != 0 {
		t.Fatalf("SealKeys again = %d, %v; want 0", n, err)
	}
	if _, err := repo.Open(dir); !errors.Is(err, repo.ErrPassphrase) {
		t.Fatalf("Open without the passphrase after sealing: %v", err)
	}
	r, err = repo.OpenWith(dir, repo.OpenOptions{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(); err != nil {
		t.Fatalf("Publish with the sealed keys: %v", err)
	}
}
