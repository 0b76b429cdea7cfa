package tuf_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

func trustedRoot(t *testing.T, c *tuf.Client) *metadata.Metadata[metadata.RootType] {
	t.Helper()
	m, err := metadata.Root().FromFile(filepath.Join(c.MetadataDir(), "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRootRotationChain: a device provisioned with root 1 (1-of-1 root
// key) follows root 2 (root keys rotated to 2-of-3) and root 3 (targets
// keys rotated to 2-of-2, signed by 2 of root 2's keys). After the
// rotation, metadata signed only by a rotated-out key is refused: targets
// with a new release signed by the old targets key (even with valid
// snapshot and timestamp), and a root 4 signed by the old root key.
func TestRootRotationChain(t *testing.T) {
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("releases/1/image.bin", payload(1000, 50), "")
	f.publish()
	c := refreshed(t, f.device("http", nil))
	old := f.snapshot() // the keys about to be rotated out

	if err := f.r.Rotate(metadata.ROOT, repo.RotateOptions{Keys: 3, Threshold: 2}); err != nil {
		t.Fatalf("Rotate root: %v", err)
	}
	if err := f.r.Rotate(metadata.TARGETS, repo.RotateOptions{Keys: 2, Threshold: 2}); err != nil {
		t.Fatalf("Rotate targets: %v", err)
	}
	f.sync()
	for _, v := range []string{"1", "2", "3"} {
		if _, err := os.Stat(filepath.Join(f.pub, "metadata", v+".root.json")); err != nil {
			t.Fatalf("root chain: %v", err)
		}
	}
	refreshed(t, c)
	root := trustedRoot(t, c)
	if root.Signed.Version != 3 || root.Signed.Roles["root"].Threshold != 2 || len(root.Signed.Roles["root"].KeyIDs) != 3 ||
		root.Signed.Roles["targets"].Threshold != 2 || len(root.Signed.Roles["targets"].KeyIDs) != 2 {
		t.Fatalf("trusted root after the walk: version %d, roles %+v", root.Signed.Version, root.Signed.Roles)
	}
	ctx := context.Background()
	if _, err := c.Target(ctx, "releases/1/image.bin"); err != nil {
		t.Fatalf("target after the rotation: %v", err)
	}
	for _, p := range []string{"root-1.json", "targets-1.json"} {
		if b, _ := os.ReadFile(filepath.Join(old, "keys", p)); b != nil {
			if now, _ := os.ReadFile(filepath.Join(f.dir, "repo", "keys", p)); string(now) == string(b) {
				t.Fatalf("rotated-out key %s is still in keys/", p)
			}
		}
	}

	// an attacker holding the rotated-out targets key (and the online
	// snapshot and timestamp keys) adds a release
	evil := payload(1000, 666)
	forge(t, f, metadata.TARGETS, signingKey(t, old, "targets", 1), "releases/evil/image.bin", evil)
	err := c.Refresh(ctx)
	t.Logf("old targets key: %v", err)
	if !errors.Is(err, tuf.ErrSignature) {
		t.Fatalf("targets signed by the rotated-out key: %v, want ErrSignature", err)
	}
	if _, err := c.Download(ctx, "releases/evil/image.bin", tuf.DownloadOptions{}); err == nil {
		t.Fatal("the forged release downloaded")
	}

	// root 4 signed by the rotated-out root key alone
	f.sync()
	r4, err := metadata.Root().FromFile(filepath.Join(f.pub, "metadata", "3.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	r4.Signed.Version = 4
	r4.ClearSignatures()
	if _, err := r4.Sign(signingKey(t, old, "root", 1)); err != nil {
		t.Fatal(err)
	}
	if err := r4.ToFile(filepath.Join(f.pub, "metadata", "4.root.json"), false); err != nil {
		t.Fatal(err)
	}
	err = c.Refresh(ctx)
	t.Logf("old root key: %v", err)
	if !errors.Is(err, tuf.ErrSignature) {
		t.Fatalf("root 4 signed by the rotated-out root key: %v, want ErrSignature", err)
	}
	if trustedRoot(t, c).Signed.Version != 3 {
		t.Fatal("the device trusted root 4")
	}
}

// TestOfflineRootRotation: the root key lives offline. Rotating the
// targets key prepares root 2 on the online machine
// (ErrRootSignatures: nothing is published); the prepared file is signed
// on the "offline machine" with nothing but the key file, merged back and
// published; the device follows.
func TestOfflineRootRotation(t *testing.T) {
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("a", []byte("a"), "")
	f.publish()
	c := refreshed(t, f.device("dir", nil))
	repoDir := filepath.Join(f.dir, "repo")
	offline := t.TempDir()
	if err := os.Rename(filepath.Join(repoDir, "keys", "root-1.json"), filepath.Join(offline, "root-1.json")); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	f.r = r
	if err := r.Rotate(metadata.TARGETS, repo.RotateOptions{Keys: 1}); !errors.Is(err, repo.ErrRootSignatures) {
		t.Fatalf("Rotate with the root key offline: %v, want ErrRootSignatures", err)
	}
	t.Logf("prepared: %v", err)
	if _, err := os.Stat(filepath.Join(r.MetadataDir(), "2.root.json")); err == nil {
		t.Fatal("root 2 was published without the root key's signature")
	}
	if list, pending := r.Keys(); pending != 2 || len(list) != 4 || len(list[0].Held) != 0 {
		t.Fatalf("Keys() = %+v, pending %d", list, pending)
	}
	carried := filepath.Join(offline, "root.json")
	if err := os.WriteFile(carried, readAll(t, r.PreparedRootPath()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := repo.SignRootFile(carried, filepath.Join(offline, "root-1.json"), nil); err != nil {
		t.Fatalf("SignRootFile: %v", err)
	}
	other, _ := metadata.Root().FromFile(carried)
	other.Signed.Expires = other.Signed.Expires.AddDate(1, 0, 0)
	otherBytes, _ := other.ToBytes(false)
	if err := r.MergeRoot(otherBytes); !errors.Is(err, repo.ErrNoPreparedRoot) {
		t.Fatalf("MergeRoot of a different root: %v, want ErrNoPreparedRoot", err)
	}
	if err := r.MergeRoot(readAll(t, carried)); err != nil {
		t.Fatalf("MergeRoot: %v", err)
	}
	f.sync()
	refreshed(t, c)
	if v := trustedRoot(t, c).Signed.Version; v != 2 {
		t.Fatalf("device root version %d, want 2", v)
	}
	if _, err := c.Target(context.Background(), "a"); err != nil {
		t.Fatalf("target signed by the new targets key: %v", err)
	}
}
