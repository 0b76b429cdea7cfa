package tuf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// TestSigstoreRepository walks sigstore's real root chain from root 5
// (2023) to root 15 (ECDSA keys, root threshold 3 of 5, written by other
// TUF tooling). Roots 1-4 carry hex-encoded ECDSA keys, which go-tuf v2
// does not parse: Init refuses root 1 with ErrUntrustedRootFile. As of a time inside
// the repository's validity it refreshes and reads a top-level target
// and one behind the terminating registry.npmjs.org delegation. With
// today's clock the final root (expired 2026-11-20) is refused with
// ErrExpired.
func TestSigstoreRepository(t *testing.T) {
	src := filepath.Join("testdata", "sigstore")
	root1, err := os.ReadFile(filepath.Join(src, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tuf.Init(t.TempDir(), root1); !errors.Is(err, tuf.ErrUntrustedRootFile) {
		t.Fatalf("Init with root 1: %v, want ErrUntrustedRootFile", err)
	}
	root, err := os.ReadFile(filepath.Join(src, "metadata", "5.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	device := func(at time.Time) *tuf.Client {
		md := filepath.Join(t.TempDir(), "md")
		if err := tuf.Init(md, root); err != nil {
			t.Fatalf("Init with sigstore's root 5: %v", err)
		}
		c, err := tuf.New(tuf.Config{MetadataDir: md, MetadataURL: filepath.Join(src, "metadata"),
			TargetsURL: filepath.Join(src, "targets"), TargetDir: t.TempDir(), At: at})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	c := device(time.Date(2026, 8, 25, 0, 0, 0, 0, time.UTC))
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh as of 2026-08-25: %v", err)
	}
	if v := trustedRoot(t, c).Signed.Version; v != 15 {
		t.Fatalf("walked to root %d, want 15", v)
	}
	for _, name := range []string{"trusted_root.json", "registry.npmjs.org/keys.json"} {
		if b, err := c.ReadTarget(ctx, name, 1<<20); err != nil || len(b) == 0 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := c.Target(ctx, "registry.npmjs.org/other.json"); !errors.Is(err, tuf.ErrUnknownTarget) {
		t.Fatalf("a name under the terminating delegation that it does not sign: %v", err)
	}

	err = device(time.Time{}).Refresh(ctx)
	t.Logf("today: %v", err)
	if !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("Refresh today: %v, want ErrExpired", err)
	}
}

// TestGoTUFClientReadsGraftRepository: go-tuf's own client (its updater
// and default HTTP fetcher, none of graft's code) reads a repository
// graft's tuf/repo wrote, consistent and plain: it walks the rotated root
// chain, finds a delegated target and downloads it under the name the
// layout promises (hash-prefixed with consistent snapshots).
func TestGoTUFClientReadsGraftRepository(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, repo.Options{ConsistentSnapshot: consistent})
			image := payload(70_000, 70)
			f.add("top.bin", []byte("top"), "")
			f.publish()
			if err := f.r.Rotate(metadata.TARGETS, repo.RotateOptions{Keys: 2, Threshold: 2}); err != nil {
				t.Fatal(err)
			}
			f.delegate(repo.Delegation{Name: "team/rpi4", Paths: []string{"releases/rpi4/*"}})
			f.addFor("team/rpi4", "releases/rpi4/image.img", image)
			f.publish()
			root1 := readAll(t, filepath.Join(f.pub, "metadata", "1.root.json"))

			cfg, err := config.New(f.url+"/metadata", root1)
			if err != nil {
				t.Fatal(err)
			}
			cfg.LocalMetadataDir = t.TempDir()
			cfg.LocalTargetsDir = t.TempDir()
			cfg.RemoteTargetsURL = f.url + "/targets"
			cfg.PrefixTargetsWithHash = consistent
			up, err := updater.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := up.Refresh(); err != nil {
				t.Fatalf("go-tuf Refresh: %v", err)
			}
			if v := up.GetTrustedMetadataSet().Root.Signed.Version; v != 2 {
				t.Fatalf("go-tuf trusts root %d, want 2", v)
			}
			for name, want := range map[string][]byte{"releases/rpi4/image.img": image, "top.bin": []byte("top")} {
				tf, err := up.GetTargetInfo(name)
				if err != nil {
					t.Fatalf("go-tuf GetTargetInfo %s: %v", name, err)
				}
				_, got, err := up.DownloadTarget(tf, filepath.Join(t.TempDir(), "x"), "")
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("go-tuf DownloadTarget %s: %v", name, err)
				}
			}
		})
	}
}
