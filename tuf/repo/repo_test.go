package repo_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/graft-dev/graft/tuf/repo"
)

func TestCreateLayoutAndOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "r")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	r, err := repo.Create(dir, repo.Options{
		Thresholds:         map[string]int{"root": 2},
		Keys:               map[string]int{"root": 3, "targets": 2},
		Expiry:             map[string]time.Duration{"timestamp": 6 * time.Hour},
		ConsistentSnapshot: true,
		Now:                func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, k := range []string{"root-1", "root-2", "root-3", "targets-1", "targets-2", "snapshot-1", "timestamp-1"} {
		fi, err := os.Stat(filepath.Join(dir, "keys", k+".json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key %s: %v %v, want mode 0600", k, fi, err)
		}
	}
	for _, m := range []string{"1.root.json", "root.json", "timestamp.json", "1.snapshot.json", "snapshot.json", "1.targets.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(r.MetadataDir(), m)); err != nil {
			t.Fatalf("metadata %s: %v", m, err)
		}
	}
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	// a valid root, self-signed 2-of-3, as devices check it
	if _, err := trustedmetadata.New(root); err != nil {
		t.Fatalf("root does not verify: %v", err)
	}
	rm, err := metadata.Root().FromBytes(root)
	if err != nil {
		t.Fatal(err)
	}
	if rm.Signed.Roles["root"].Threshold != 2 || len(rm.Signed.Roles["root"].KeyIDs) != 3 || len(rm.Signatures) != 3 ||
		!rm.Signed.ConsistentSnapshot || !rm.Signed.Expires.Equal(now.Add(365*24*time.Hour)) {
		t.Fatalf("root = %+v, %d signatures", rm.Signed, len(rm.Signatures))
	}
	ts, err := metadata.Timestamp().FromFile(filepath.Join(r.MetadataDir(), "timestamp.json"))
	if err != nil || !ts.Signed.Expires.Equal(now.Add(6*time.Hour)) {
		t.Fatalf("timestamp expires %v (%v), want %v", ts.Signed.Expires, err, now.Add(6*time.Hour))
	}

	if _, err := repo.Create(dir, repo.Options{}); !errors.Is(err, repo.ErrExists) {
		t.Fatalf("Create over a repository = %v, want ErrExists", err)
	}

	// Open keeps the expiry settings and publishes the next versions.
	r2, err := repo.Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := r2.Publish(); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ts, err = metadata.Timestamp().FromFile(filepath.Join(r.MetadataDir(), "timestamp.json"))
	if err != nil || ts.Signed.Version != 2 || ts.Signed.Meta["snapshot.json"].Version != 2 {
		t.Fatalf("timestamp after Publish: %+v %v", ts.Signed, err)
	}
	if d := time.Until(ts.Signed.Expires); d > 6*time.Hour || d < 5*time.Hour {
		t.Fatalf("timestamp expiry after Open %v from now, want the stored 6h", d)
	}
	tg, err := metadata.Targets().FromFile(filepath.Join(r.MetadataDir(), "2.targets.json"))
	if err != nil || len(tg.Signatures) != 2 {
		t.Fatalf("2.targets.json: %v, want 2 signatures (2 targets keys)", err)
	}
}

func TestOpenRefusesKeys(t *testing.T) {
	cases := []struct {
		name  string
		alter func(t *testing.T, dir, other string)
		want  error
	}{
		{"group-readable key", func(t *testing.T, dir, _ string) {
			os.Chmod(filepath.Join(dir, "keys", "snapshot-1.json"), 0o640)
		}, repo.ErrKeyPermissions},
		{"world-readable keys dir", func(t *testing.T, dir, _ string) {
			os.Chmod(filepath.Join(dir, "keys"), 0o755)
		}, repo.ErrKeyPermissions},
		{"key not in root", func(t *testing.T, dir, other string) {
			b, _ := os.ReadFile(filepath.Join(other, "keys", "targets-1.json"))
			os.WriteFile(filepath.Join(dir, "keys", "targets-9.json"), b, 0o600)
		}, repo.ErrKey},
		{"key file for an unknown role", func(t *testing.T, dir, _ string) {
			b, _ := os.ReadFile(filepath.Join(dir, "keys", "targets-1.json"))
			os.WriteFile(filepath.Join(dir, "keys", "mirror-1.json"), b, 0o600)
		}, repo.ErrKey},
		{"public key does not match", func(t *testing.T, dir, other string) {
			p := filepath.Join(dir, "keys", "targets-1.json")
			b, _ := os.ReadFile(p)
			ob, _ := os.ReadFile(filepath.Join(other, "keys", "targets-1.json"))
			pub := func(b []byte) string { i := strings.Index(string(b), `"public": "`); return string(b[i : i+80]) }
			os.WriteFile(p, bytes.Replace(b, []byte(pub(b)), []byte(pub(ob)), 1), 0o600)
		}, repo.ErrKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "r")
			other := filepath.Join(t.TempDir(), "o")
			for _, d := range []string{dir, other} {
				if _, err := repo.Create(d, repo.Options{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := repo.Open(dir); err != nil {
				t.Fatalf("Open before the change: %v", err)
			}
			tc.alter(t, dir, other)
			if _, err := repo.Open(dir); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		name   string
		opts   repo.Options
		option string
	}{
		{"zero threshold", repo.Options{Thresholds: map[string]int{"root": 0}}, `Thresholds["root"]`},
		{"unknown role", repo.Options{Thresholds: map[string]int{"mirror": 1}}, `Thresholds["mirror"]`},
		{"fewer keys than threshold", repo.Options{Thresholds: map[string]int{"targets": 2}, Keys: map[string]int{"targets": 1}}, `Keys["targets"]`},
		{"too many keys", repo.Options{Keys: map[string]int{"snapshot": 100}}, `Keys["snapshot"]`},
		{"negative expiry", repo.Options{Expiry: map[string]time.Duration{"timestamp": -time.Hour}}, `Expiry["timestamp"]`},
		{"expiry for unknown role", repo.Options{Expiry: map[string]time.Duration{"snapshots": time.Hour}}, `Expiry["snapshots"]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "r")
			_, err := repo.Create(dir, tc.opts)
			var oe *repo.OptionError
			if !errors.Is(err, repo.ErrInvalidOption) || !errors.As(err, &oe) || oe.Option != tc.option {
				t.Fatalf("Create = %v, want an OptionError for %s", err, tc.option)
			}
			if _, err := os.Stat(filepath.Join(dir, "keys")); err == nil {
				t.Fatal("keys were generated for invalid options")
			}
		})
	}
}

func TestTargetsStagingAndLayout(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		name := "plain"
		if consistent {
			name = "consistent"
		}
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "r")
			r, err := repo.Create(dir, repo.Options{ConsistentSnapshot: consistent})
			if err != nil {
				t.Fatal(err)
			}
			data := []byte("image bytes")
			tg, err := r.AddTarget("rel/1/image.bin", bytes.NewReader(data), []byte(`{"board":"x"}`))
			if err != nil {
				t.Fatalf("AddTarget: %v", err)
			}
			sum := sha256.Sum256(data)
			if tg.Length != int64(len(data)) || !bytes.Equal(tg.Hashes["sha256"], sum[:]) || len(tg.Hashes["sha512"]) != 64 {
				t.Fatalf("AddTarget = %+v", tg)
			}
			// staged, persisted, and invisible until Publish
			r, err = repo.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(r.Targets()); n != 0 {
				t.Fatalf("%d published targets before Publish", n)
			}
			if !consistent {
				if _, err := os.Stat(filepath.Join(r.TargetsDir(), "rel", "1", "image.bin")); err == nil {
					t.Fatal("plain target visible before Publish")
				}
			}
			if err := r.Publish(); err != nil {
				t.Fatal(err)
			}
			if got := r.Targets(); len(got) != 1 || got[0].Name != "rel/1/image.bin" || string(got[0].Custom) != `{"board":"x"}` {
				t.Fatalf("Targets after Publish = %+v", got)
			}
			var files []string
			if consistent {
				files = []string{hex.EncodeToString(tg.Hashes["sha256"]) + ".image.bin", hex.EncodeToString(tg.Hashes["sha512"]) + ".image.bin"}
			} else {
				files = []string{"image.bin"}
			}
			for _, f := range files {
				b, err := os.ReadFile(filepath.Join(r.TargetsDir(), "rel", "1", f))
				if err != nil || !bytes.Equal(b, data) {
					t.Fatalf("target file %s: %v", f, err)
				}
			}
			if err := r.RemoveTarget("rel/1/image.bin"); err != nil {
				t.Fatal(err)
			}
			if err := r.RemoveTarget("rel/1/image.bin"); !errors.Is(err, repo.ErrUnknownTarget) {
				t.Fatalf("second RemoveTarget = %v, want ErrUnknownTarget", err)
			}
			if err := r.Publish(); err != nil {
				t.Fatal(err)
			}
			if n := len(r.Targets()); n != 0 {
				t.Fatalf("%d targets after removal", n)
			}
			_, err = os.Stat(filepath.Join(r.TargetsDir(), "rel", "1", "image.bin"))
			if !consistent && err == nil {
				t.Fatal("plain target file still served after removal")
			}
		})
	}
}

func TestAddTargetRefusals(t *testing.T) {
	r, err := repo.Create(filepath.Join(t.TempDir(), "r"), repo.Options{ConsistentSnapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		target string
		custom []byte
		want   error
	}{
		{"empty", "", nil, repo.ErrInvalidTargetName},
		{"absolute", "/etc/passwd", nil, repo.ErrInvalidTargetName},
		{"dot-dot", "a/../../b", nil, repo.ErrInvalidTargetName},
		{"empty segment", "a//b", nil, repo.ErrInvalidTargetName},
		{"backslash", `a\b`, nil, repo.ErrInvalidTargetName},
		{"custom not JSON", "ok.bin", []byte("{nope"), repo.ErrInvalidCustom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := r.AddTarget(tc.target, strings.NewReader("x"), tc.custom); !errors.Is(err, tc.want) {
				t.Fatalf("AddTarget = %v, want %v", err, tc.want)
			}
		})
	}
}
