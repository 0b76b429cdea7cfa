package tuf_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

func (f *fixture) delegate(d repo.Delegation) {
	f.t.Helper()
	if err := f.r.Delegate(d); err != nil {
		f.t.Fatalf("Delegate %q: %v", d.Name, err)
	}
	f.sync()
}

func (f *fixture) addFor(role, name string, data []byte) {
	f.t.Helper()
	if _, err := f.r.AddTargetFor(role, name, bytes.NewReader(data), nil); err != nil {
		f.t.Fatalf("AddTargetFor %s %s: %v", role, name, err)
	}
}

// TestDelegatedTarget: a release signed by a delegated role (not by the
// top-level targets key) is found and downloads; the role cannot sign
// outside its paths, neither through the repository nor by forging its
// own metadata.
func TestDelegatedTarget(t *testing.T) {
	for _, tr := range []string{"http", "dir"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, repo.Options{ConsistentSnapshot: true})
			f.delegate(repo.Delegation{Name: "rpi4", Paths: []string{"releases/rpi4/*"}})
			image := payload(50_000, 40)
			f.addFor("rpi4", "releases/rpi4/image.img", image)
			if _, err := f.r.AddTargetFor("rpi4", "releases/x86/image.img", bytes.NewReader(image), nil); !errors.Is(err, repo.ErrNotDelegated) {
				t.Fatalf("AddTargetFor outside the role's paths: %v, want ErrNotDelegated", err)
			}
			f.publish()
			c := refreshed(t, f.device(tr, nil))
			ctx := context.Background()
			p, err := c.Download(ctx, "releases/rpi4/image.img", tuf.DownloadOptions{})
			if err != nil || !bytes.Equal(readAll(t, p), image) {
				t.Fatalf("delegated target: %v", err)
			}
			if all, err := c.Targets(ctx); err != nil || len(all) != 1 || all[0].Name != "releases/rpi4/image.img" {
				t.Fatalf("Targets() = %v, %v: want the delegated release", all, err)
			}

			// The role's key holder signs a target outside its paths into
			// its own metadata: the walk never asks rpi4 about that path.
			forgeRole(t, f, "rpi4", "releases/x86/image.img", image)
			refreshed(t, c)
			if _, err := c.Target(ctx, "releases/x86/image.img"); !errors.Is(err, tuf.ErrUnknownTarget) {
				t.Fatalf("target outside the delegated paths: %v, want ErrUnknownTarget", err)
			}
			if _, err := c.Target(ctx, "releases/rpi4/image.img"); err != nil {
				t.Fatalf("the role's own target after the forgery: %v", err)
			}
			if all, err := c.Targets(ctx); err != nil || len(all) != 1 {
				t.Fatalf("Targets() after the forgery = %v, %v: want only the delegated release", all, err)
			}
		})
	}
}

// forgeRole adds name to role's metadata, signed with the role's own key
// from the repository, and re-publishes snapshot and timestamp: what a
// delegated key holder can do on its own.
func forgeRole(t *testing.T, f *fixture, role, name string, data []byte) {
	t.Helper()
	forge(t, f, role, signingKey(t, filepath.Join(f.dir, "repo"), role, 1), name, data)
}

// forge adds name to role's metadata signed by signer alone, and signs
// the snapshot and timestamp that name it with the repository's current
// keys.
func forge(t *testing.T, f *fixture, role string, signer signature.Signer, name string, data []byte) {
	t.Helper()
	repoDir := filepath.Join(f.dir, "repo")
	md := f.r.MetadataDir()
	m, err := metadata.Targets().FromFile(filepath.Join(md, filepath.FromSlash(role)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	m.Signed.Targets[name] = tf
	m.Signed.Version++
	m.ClearSignatures()
	if _, err := m.Sign(signer); err != nil {
		t.Fatal(err)
	}
	writeVersioned(t, md, role, m.Signed.Version, m)
	snap, err := metadata.Snapshot().FromFile(filepath.Join(md, "snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	snap.Signed.Meta[role+".json"] = metadata.MetaFile(m.Signed.Version)
	snap.Signed.Version++
	snap.ClearSignatures()
	if _, err := snap.Sign(signingKey(t, repoDir, "snapshot", 1)); err != nil {
		t.Fatal(err)
	}
	writeVersioned(t, md, "snapshot", snap.Signed.Version, snap)
	resignTimestamp(t, filepath.Join(md, "timestamp.json"), func(s *metadata.TimestampType) {
		s.Version++
		s.Meta["snapshot.json"] = metadata.MetaFile(snap.Signed.Version)
	}, signingKey(t, repoDir, "timestamp", 1))
	copyTarget(t, f, name, data)
	f.sync()
}

func copyTarget(t *testing.T, f *fixture, name string, data []byte) {
	t.Helper()
	dir, base := filepath.Split(filepath.FromSlash(name))
	p := filepath.Join(f.r.TargetsDir(), dir, hex.EncodeToString(sha256Sum(data))+"."+base)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

type toFile interface{ ToFile(string, bool) error }

func writeVersioned(t *testing.T, md, role string, version int64, m toFile) {
	t.Helper()
	for _, name := range []string{role + ".json", fmt.Sprintf("%d.%s.json", version, role)} {
		p := filepath.Join(md, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := m.ToFile(p, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTerminatingDelegation: two roles are delegated "releases/*", the
// first terminating. A target only the second signs is not found: the
// walk stops at the first. Without terminating it is found.
func TestTerminatingDelegation(t *testing.T) {
	for _, terminating := range []bool{true, false} {
		t.Run(fmt.Sprintf("terminating=%v", terminating), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, repo.Options{ConsistentSnapshot: true})
			f.delegate(repo.Delegation{Name: "first", Paths: []string{"releases/*"}, Terminating: terminating})
			f.delegate(repo.Delegation{Name: "second", Paths: []string{"releases/*"}})
			f.addFor("first", "releases/a", []byte("a"))
			f.addFor("second", "releases/b", []byte("b"))
			f.publish()
			c := refreshed(t, f.device("http", nil))
			ctx := context.Background()
			if _, err := c.Target(ctx, "releases/a"); err != nil {
				t.Fatalf("releases/a from the first role: %v", err)
			}
			_, err := c.Target(ctx, "releases/b")
			if terminating && !errors.Is(err, tuf.ErrUnknownTarget) {
				t.Fatalf("behind a terminating delegation: %v, want ErrUnknownTarget", err)
			}
			if !terminating && err != nil {
				t.Fatalf("behind a non-terminating delegation: %v", err)
			}
			all, err := c.Targets(ctx)
			if want := map[bool]int{true: 1, false: 2}[terminating]; err != nil || len(all) != want {
				t.Fatalf("Targets() = %v, %v: want %d", all, err, want)
			}
		})
	}
}

// TestMaxDelegations: 33 roles are delegated "x/*" and only the last
// signs x/target. go-tuf's walk visits at most config.MaxDelegations (32)
// roles, so the target is not found; with it in the 32nd role it is.
func TestMaxDelegations(t *testing.T) {
	for _, n := range []int{32, 33} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, repo.Options{ConsistentSnapshot: true})
			for i := 1; i <= n; i++ {
				if err := f.r.Delegate(repo.Delegation{Name: fmt.Sprintf("r%02d", i), Paths: []string{"x/*"}}); err != nil {
					t.Fatal(err)
				}
			}
			f.addFor(fmt.Sprintf("r%02d", n), "x/target", []byte("t"))
			f.publish()
			c := refreshed(t, f.device("dir", nil))
			_, err := c.Target(context.Background(), "x/target")
			if n > 32 && !errors.Is(err, tuf.ErrUnknownTarget) {
				t.Fatalf("target in role %d: %v, want ErrUnknownTarget", n, err)
			}
			if n <= 32 && err != nil {
				t.Fatalf("target in role %d: %v", n, err)
			}
		})
	}
}

// TestUnusualRoleNames: roles named with "?", "#", "/" and ".." are
// escaped wherever they become URL or file names: the client asks for
// %3F, %23 and %2F (go-tuf's url.PathEscape), the repository's files are
// what a web server maps those back to, and the client's cache holds only
// escaped names inside its metadata directory.
func TestUnusualRoleNames(t *testing.T) {
	names := []string{"a?b", "c#d", "team/rpi4", "..", "...x", "~ü"}
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	for i, n := range names {
		f.delegate(repo.Delegation{Name: n, Paths: []string{fmt.Sprintf("n/%d/*", i)}})
		f.addFor(n, fmt.Sprintf("n/%d/t", i), []byte(n))
	}
	for _, bad := range []string{"../up", "a/../b", "/abs", "a//b", "targets", "50%", ""} {
		if err := f.r.Delegate(repo.Delegation{Name: bad, Paths: []string{"z/*"}}); !errors.Is(err, repo.ErrInvalidRole) {
			t.Fatalf("Delegate %q: %v, want ErrInvalidRole", bad, err)
		}
	}
	f.publish()
	var mu sync.Mutex
	var asked []string
	files := http.FileServer(http.Dir(f.pub))
	base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.EscapedPath())
		mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	for _, tr := range []string{"http", "dir"} {
		dev := t.TempDir()
		mu.Lock()
		asked = nil
		mu.Unlock()
		mdir := filepath.Join(dev, "metadata")
		metaURL, targetsURL := base+"/metadata", base+"/targets"
		if tr == "dir" {
			metaURL, targetsURL = f.urls("dir")
		}
		root, _ := f.r.Root()
		os.MkdirAll(mdir, 0o700)
		os.WriteFile(filepath.Join(mdir, "root.json"), root, 0o644)
		c, err := tuf.New(tuf.Config{MetadataDir: mdir, MetadataURL: metaURL, TargetsURL: targetsURL, TargetDir: filepath.Join(dev, "t")})
		if err != nil {
			t.Fatal(err)
		}
		refreshed(t, c)
		for i, n := range names {
			b, err := c.ReadTarget(context.Background(), fmt.Sprintf("n/%d/t", i), 100)
			if err != nil || string(b) != n {
				t.Fatalf("%s: target of role %q: %q %v", tr, n, b, err)
			}
		}
		// nothing outside the metadata directory but the device's own
		var outside []string
		filepath.WalkDir(dev, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.HasPrefix(p, mdir+string(filepath.Separator)) && !strings.HasPrefix(p, filepath.Join(dev, "t")) {
				outside = append(outside, p)
			}
			return nil
		})
		if len(outside) != 0 {
			t.Fatalf("%s: files outside the metadata directory: %v", tr, outside)
		}
		ents, _ := os.ReadDir(mdir)
		var cached []string
		for _, e := range ents {
			if e.IsDir() {
				t.Fatalf("%s: a directory %q in the metadata cache: a role name was not escaped", tr, e.Name())
			}
			cached = append(cached, e.Name())
		}
		for _, want := range []string{"a%3Fb.json", "c%23d.json", "team%2Frpi4.json", "...json"} {
			if !slices.Contains(cached, want) {
				t.Fatalf("%s: cache %v lacks %s", tr, cached, want)
			}
		}
		if tr == "http" {
			mu.Lock()
			for _, want := range []string{"/metadata/2.a%3Fb.json", "/metadata/2.c%23d.json", "/metadata/2.team%2Frpi4.json"} {
				if !slices.Contains(asked, want) {
					t.Fatalf("requests %v lack %s", asked, want)
				}
			}
			mu.Unlock()
		}
	}
}
