package tuf_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

const imageSize = 9<<20 + 123 // crosses two 4 MiB checkpoints

var transports = []string{"http", "dir", "file-url"}

// TestUpdate provisions a device, refreshes and downloads from the
// repository over HTTP and from a directory, for consistent and plain
// repositories, then publishes a new release and refreshes again.
func TestUpdate(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		for _, tr := range transports {
			t.Run(tr+"/consistent="+strconv.FormatBool(consistent), func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, repo.Options{ConsistentSnapshot: consistent})
				image := payload(imageSize, 1)
				manifest := []byte("manifest v1")
				f.add("releases/1/image.bin", image, "")
				f.add("releases/1/manifest.cbor", manifest, `{"seq":1}`)
				f.publish()
				if consistent {
					// the repository serves the image under its sha256 name
					if _, err := os.Stat(filepath.Join(f.pub, "targets", "releases", "1", hashedName(image, "image.bin"))); err != nil {
						t.Fatalf("hash-prefixed target missing: %v", err)
					}
				}

				c := f.device(tr, nil)
				if _, err := c.Target(context.Background(), "releases/1/image.bin"); !errors.Is(err, tuf.ErrNotRefreshed) {
					t.Fatalf("Target before Refresh: %v, want ErrNotRefreshed", err)
				}
				ctx := context.Background()
				if err := c.Refresh(ctx); err != nil {
					t.Fatalf("Refresh: %v", err)
				}
				all, err := c.Targets(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, x := range all {
					names = append(names, x.Name)
				}
				if want := []string{"releases/1/image.bin", "releases/1/manifest.cbor"}; !slices.Equal(names, want) {
					t.Fatalf("Targets = %v, want %v", names, want)
				}
				mt, err := c.Target(context.Background(), "releases/1/manifest.cbor")
				if err != nil {
					t.Fatal(err)
				}
				if string(mt.Custom) != `{"seq":1}` || mt.Length != int64(len(manifest)) || !bytes.Equal(mt.Hashes["sha256"], sha256Sum(manifest)) {
					t.Fatalf("manifest target = %+v", mt)
				}
				got, err := c.ReadTarget(ctx, "releases/1/manifest.cbor", 1<<20)
				if err != nil || !bytes.Equal(got, manifest) {
					t.Fatalf("ReadTarget = %q, %v", got, err)
				}

				var checkpoints []int64
				var lastDone int64
				p, err := c.Download(ctx, "releases/1/image.bin", tuf.DownloadOptions{
					Checkpoint: func(off int64) error { checkpoints = append(checkpoints, off); return nil },
					Progress:   func(done, total int64) { lastDone = done },
				})
				if err != nil {
					t.Fatalf("Download: %v", err)
				}
				if !bytes.Equal(readAll(t, p), image) {
					t.Fatal("downloaded image differs")
				}
				if len(checkpoints) != 3 || checkpoints[0] < 4<<20 || !slices.IsSorted(checkpoints) || checkpoints[2] != imageSize {
					t.Fatalf("checkpoints = %v, want two past 4 MiB steps and %d", checkpoints, imageSize)
				}
				if lastDone != imageSize {
					t.Fatalf("last progress %d, want %d", lastDone, imageSize)
				}

				// next release: same client, new Refresh
				image2 := payload(1000, 2)
				f.add("releases/1/image.bin", image2, "")
				f.publish()
				if err := c.Refresh(ctx); err != nil {
					t.Fatalf("second Refresh: %v", err)
				}
				p, err = c.Download(ctx, "releases/1/image.bin", tuf.DownloadOptions{Dest: filepath.Join(t.TempDir(), "img")})
				if err != nil {
					t.Fatalf("second Download: %v", err)
				}
				if !bytes.Equal(readAll(t, p), image2) {
					t.Fatal("second image differs")
				}
				if _, err := c.Target(context.Background(), "releases/2/image.bin"); !errors.Is(err, tuf.ErrUnknownTarget) {
					t.Fatalf("unknown target: %v, want ErrUnknownTarget", err)
				}
			})
		}
	}
}

// TestRefreshRefusals serves altered metadata after the device trusted a
// first version, and checks each refusal's sentinel (and that go-tuf's
// error is still wrapped).
func TestRefreshRefusals(t *testing.T) {
	cases := []struct {
		name   string
		opts   repo.Options
		attack func(t *testing.T, f *fixture, a string)
		want   error
		goErr  error
	}{
		{
			name:   "expired timestamp",
			attack: func(t *testing.T, f *fixture, _ string) { f.clock = f.clock.Add(25 * time.Hour) },
			want:   tuf.ErrExpired, goErr: &metadata.ErrExpiredMetadata{},
		},
		{
			name: "expired targets",
			attack: func(t *testing.T, f *fixture, _ string) {
				f.r.SetExpiry("targets", 2*time.Hour)
				f.publish()
				f.clock = f.clock.Add(3 * time.Hour)
			},
			want: tuf.ErrExpired, goErr: &metadata.ErrExpiredMetadata{},
		},
		{
			name: "expired snapshot",
			attack: func(t *testing.T, f *fixture, _ string) {
				f.r.SetExpiry("snapshot", time.Hour)
				f.publish()
				f.clock = f.clock.Add(2 * time.Hour)
			},
			want: tuf.ErrExpired, goErr: &metadata.ErrExpiredMetadata{},
		},
		{
			name:   "expired root",
			attack: func(t *testing.T, f *fixture, _ string) { f.clock = f.clock.Add(400 * 24 * time.Hour) },
			want:   tuf.ErrExpired, goErr: &metadata.ErrExpiredMetadata{},
		},
		{
			name: "rolled-back timestamp",
			attack: func(t *testing.T, f *fixture, older string) {
				os.RemoveAll(f.pub)
				copyTree(t, filepath.Join(older, "metadata"), filepath.Join(f.pub, "metadata"))
				copyTree(t, filepath.Join(older, "targets"), filepath.Join(f.pub, "targets"))
			},
			want: tuf.ErrRollback, goErr: &metadata.ErrBadVersionNumber{},
		},
		{
			name: "rolled-back snapshot under a newer timestamp",
			attack: func(t *testing.T, f *fixture, older string) {
				// the older repository state, timestamp re-signed past the
				// device's version: it points at the older snapshot
				old, err := repo.Open(older)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if err := old.RefreshTimestamp(); err != nil {
						t.Fatal(err)
					}
				}
				os.RemoveAll(f.pub)
				copyTree(t, old.MetadataDir(), filepath.Join(f.pub, "metadata"))
			},
			want: tuf.ErrRollback, goErr: &metadata.ErrBadVersionNumber{},
		},
		{
			name: "mix-and-match: targets from another publish than the snapshot names",
			attack: func(t *testing.T, f *fixture, _ string) {
				f.publish() // targets 4 the device has not seen
				md := filepath.Join(f.pub, "metadata")
				if err := os.WriteFile(filepath.Join(md, "4.targets.json"), readAll(t, filepath.Join(md, "3.targets.json")), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: tuf.ErrRollback, goErr: &metadata.ErrBadVersionNumber{},
		},
		{
			name: "timestamp signed by a key not in root",
			attack: func(t *testing.T, f *fixture, _ string) {
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				s, err := signature.LoadED25519Signer(priv)
				if err != nil {
					t.Fatal(err)
				}
				resignTimestamp(t, filepath.Join(f.pub, "metadata", "timestamp.json"),
					func(s *metadata.TimestampType) { s.Version += 10 }, s)
			},
			want: tuf.ErrSignature, goErr: &metadata.ErrUnsignedMetadata{},
		},
		{
			name: "timestamp with a tampered signed part",
			attack: func(t *testing.T, f *fixture, _ string) {
				tamperExpires(t, filepath.Join(f.pub, "metadata", "timestamp.json"))
			},
			want: tuf.ErrSignature, goErr: &metadata.ErrUnsignedMetadata{},
		},
		{
			name: "targets with a tampered signed part",
			attack: func(t *testing.T, f *fixture, _ string) {
				f.publish()
				tamperExpires(t, filepath.Join(f.pub, "metadata", "4.targets.json"))
			},
			want: tuf.ErrSignature, goErr: &metadata.ErrUnsignedMetadata{},
		},
		{
			name: "timestamp below its 2-of-2 threshold",
			opts: repo.Options{ConsistentSnapshot: true, Thresholds: map[string]int{"timestamp": 2}},
			attack: func(t *testing.T, f *fixture, _ string) {
				if err := f.r.RefreshTimestamp(); err != nil {
					t.Fatal(err)
				}
				f.sync()
				p := filepath.Join(f.pub, "metadata", "timestamp.json")
				ts, err := metadata.Timestamp().FromFile(p)
				if err != nil {
					t.Fatal(err)
				}
				ts.Signatures = ts.Signatures[:1]
				if err := ts.ToFile(p, false); err != nil {
					t.Fatal(err)
				}
			},
			want: tuf.ErrSignature, goErr: &metadata.ErrUnsignedMetadata{},
		},
		{
			name: "timestamp longer than the client accepts",
			attack: func(t *testing.T, f *fixture, _ string) {
				growFile(t, filepath.Join(f.pub, "metadata", "timestamp.json"), 20000)
			},
			want: tuf.ErrLength, goErr: &metadata.ErrDownloadLengthMismatch{},
		},
	}
	for _, tc := range cases {
		for _, tr := range []string{"http", "dir"} {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				t.Parallel()
				opts := tc.opts
				if opts.Thresholds == nil {
					opts = repo.Options{ConsistentSnapshot: true}
				}
				f := newFixture(t, opts)
				f.add("image.bin", payload(1000, 3), "")
				f.publish() // versions 2
				older := f.snapshot()
				f.add("image.bin", payload(1000, 4), "")
				f.publish() // versions 3
				c := f.device(tr, nil)
				if err := c.Refresh(context.Background()); err != nil {
					t.Fatalf("first Refresh: %v", err)
				}
				tc.attack(t, f, older)
				err := c.Refresh(context.Background())
				t.Logf("refused: %v", err)
				if !errors.Is(err, tc.want) {
					t.Fatalf("Refresh = %v, want %v", err, tc.want)
				}
				if tc.goErr != nil && !errors.Is(err, tc.goErr) {
					t.Fatalf("Refresh = %v, does not wrap go-tuf's %T", err, tc.goErr)
				}
				if _, err := c.Targets(context.Background()); !errors.Is(err, tuf.ErrNotRefreshed) {
					t.Fatalf("Targets after a refused Refresh: %v, want ErrNotRefreshed", err)
				}
			})
		}
	}
}

func growFile(t *testing.T, p string, n int) {
	t.Helper()
	data := append(readAll(t, p), bytes.Repeat([]byte(" "), n)...)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTrustedRoot covers provisioning: Init's checks and New's.
func TestTrustedRoot(t *testing.T) {
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	root, err := f.r.Root()
	if err != nil {
		t.Fatal(err)
	}
	other := newFixture(t, repo.Options{})
	otherRoot, err := other.r.Root()
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(root)
	i := bytes.Index(tampered, []byte(`"expires":"`)) + len(`"expires":"`) + 3
	tampered[i] = '0' + (tampered[i]-'0'+1)%10

	dir := filepath.Join(t.TempDir(), "md")
	if err := tuf.Init(dir, tampered); !errors.Is(err, tuf.ErrUntrustedRootFile) || !errors.Is(err, tuf.ErrSignature) {
		t.Fatalf("Init(tampered) = %v, want ErrUntrustedRootFile and ErrSignature", err)
	}
	if err := tuf.Init(dir, []byte("{")); !errors.Is(err, tuf.ErrUntrustedRootFile) {
		t.Fatalf("Init(garbage) = %v, want ErrUntrustedRootFile", err)
	}
	cfg := tuf.Config{MetadataDir: dir, MetadataURL: f.url + "/metadata", TargetsURL: f.url + "/targets", TargetDir: t.TempDir()}
	if _, err := tuf.New(cfg); !errors.Is(err, tuf.ErrNoTrustedRoot) {
		t.Fatalf("New without root = %v, want ErrNoTrustedRoot", err)
	}
	if err := tuf.Init(dir, root); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "root.json")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("root.json: %v %v, want mode 0644", fi, err)
	}
	if err := tuf.Init(dir, root); err != nil {
		t.Fatalf("Init again with the same root: %v", err)
	}
	if err := tuf.Init(dir, otherRoot); !errors.Is(err, tuf.ErrRootExists) {
		t.Fatalf("Init with another root = %v, want ErrRootExists", err)
	}
	if _, err := tuf.New(cfg); err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tuf.New(cfg); !errors.Is(err, tuf.ErrUntrustedRootFile) {
		t.Fatalf("New with tampered root.json = %v, want ErrUntrustedRootFile", err)
	}

	bad := []struct {
		name string
		mod  func(*tuf.Config)
	}{
		{"ftp TargetsURL", func(c *tuf.Config) { c.TargetsURL = "ftp://example.com/t" }},
		{"no MetadataURL", func(c *tuf.Config) { c.MetadataURL = "" }},
		{"ftp scheme", func(c *tuf.Config) { c.MetadataURL = "ftp://example.com/m" }},
		{"no TargetDir", func(c *tuf.Config) { c.TargetDir = "" }},
		{"no MetadataDir", func(c *tuf.Config) { c.MetadataDir = "" }},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			c := cfg
			b.mod(&c)
			if _, err := tuf.New(c); !errors.Is(err, tuf.ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestTornCacheRecovers: a power cut can leave go-tuf's cached metadata
// empty or cut short (it renames without fsync). Refresh must drop such a
// cache file and fetch it again rather than fail forever; the trusted root
// stays untouched.
func TestTornCacheRecovers(t *testing.T) {
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("a.txt", []byte("hello"), "")
	f.publish()
	var mdir string
	c := f.device("http", func(cfg *tuf.Config) { mdir = cfg.MetadataDir })
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(mdir, "timestamp.json"), nil, 0o644)
	os.WriteFile(filepath.Join(mdir, "snapshot.json"), []byte(`{"signed": {"_ty`), 0o644)
	os.WriteFile(filepath.Join(mdir, "targets.json"), []byte{0, 0, 0}, 0o644)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh over torn cache files = %v, want it to recover", err)
	}
	if _, err := c.Target(context.Background(), "a.txt"); err != nil {
		t.Fatal(err)
	}
	// A torn trusted root is not a cache: it is refused, never dropped.
	os.WriteFile(filepath.Join(mdir, "root.json"), []byte(`{"sig`), 0o644)
	if err := c.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh with a torn root.json succeeded")
	}
}

// TestSameVersionTimestamp: the repository serves a timestamp with the
// version of the trusted one but other bytes (re-signed with another
// expiry). Spec 5.4.3, as python-tuf and go-tuf read it: the new one is
// not newer, so the trusted one is kept and the update goes on.
func TestSameVersionTimestamp(t *testing.T) {
	for _, tr := range []string{"http", "dir"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, repo.Options{ConsistentSnapshot: true})
			f.add("image.bin", payload(1000, 3), "")
			f.publish()
			c := f.device(tr, nil)
			ctx := context.Background()
			if err := c.Refresh(ctx); err != nil {
				t.Fatalf("first Refresh: %v", err)
			}
			cached := filepath.Join(c.MetadataDir(), "timestamp.json")
			trusted := readAll(t, cached)
			resignTimestamp(t, filepath.Join(f.pub, "metadata", "timestamp.json"),
				func(s *metadata.TimestampType) { s.Expires = s.Expires.Add(time.Hour) },
				signingKey(t, filepath.Join(f.dir, "repo"), "timestamp", 1))
			if err := c.Refresh(ctx); err != nil {
				t.Fatalf("Refresh with a same-version timestamp: %v", err)
			}
			if !bytes.Equal(readAll(t, cached), trusted) {
				t.Fatal("the trusted timestamp was replaced by the same-version one")
			}
			if _, err := c.Target(ctx, "image.bin"); err != nil {
				t.Fatalf("Target after the refresh: %v", err)
			}
		})
	}
}
