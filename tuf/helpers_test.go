package tuf_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// fixture is a real repository (tuf/repo, real go-tuf metadata), a served
// copy of it in pub/ that attacks can alter, and an HTTP server on
// 127.0.0.1 serving pub/.
type fixture struct {
	t     *testing.T
	dir   string
	r     *repo.Repo
	pub   string
	url   string
	clock time.Time
}

func newFixture(t *testing.T, opts repo.Options) *fixture {
	t.Helper()
	dir := t.TempDir()
	r, err := repo.Create(filepath.Join(dir, "repo"), opts)
	if err != nil {
		t.Fatalf("repo.Create: %v", err)
	}
	f := &fixture{t: t, dir: dir, r: r, pub: filepath.Join(dir, "pub"), clock: time.Now()}
	f.url = serve(t, http.FileServer(http.Dir(f.pub)))
	f.sync()
	return f
}

// serve runs h on 127.0.0.1 until the test ends and returns its base URL.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// sync makes pub/ a copy of the repository's metadata and targets.
func (f *fixture) sync() {
	f.t.Helper()
	if err := os.RemoveAll(f.pub); err != nil {
		f.t.Fatal(err)
	}
	copyTree(f.t, f.r.MetadataDir(), filepath.Join(f.pub, "metadata"))
	copyTree(f.t, f.r.TargetsDir(), filepath.Join(f.pub, "targets"))
}

func (f *fixture) add(name string, data []byte, custom string) {
	f.t.Helper()
	var c json.RawMessage
	if custom != "" {
		c = json.RawMessage(custom)
	}
	if _, err := f.r.AddTarget(name, bytes.NewReader(data), c); err != nil {
		f.t.Fatalf("AddTarget %s: %v", name, err)
	}
}

func (f *fixture) publish() {
	f.t.Helper()
	if err := f.r.Publish(); err != nil {
		f.t.Fatalf("Publish: %v", err)
	}
	f.sync()
}

// snapshot copies the whole repository (keys included) as it is now.
func (f *fixture) snapshot() string {
	f.t.Helper()
	dst := filepath.Join(f.t.TempDir(), "repo")
	copyTree(f.t, filepath.Join(f.dir, "repo"), dst)
	return dst
}

// urls gives MetadataURL and TargetsURL for pub/ over a transport.
func (f *fixture) urls(transport string) (string, string) {
	switch transport {
	case "http":
		return f.url + "/metadata", f.url + "/targets"
	case "dir":
		return filepath.Join(f.pub, "metadata"), filepath.Join(f.pub, "targets")
	case "file-url":
		return "file://" + filepath.Join(f.pub, "metadata"), "file://" + filepath.Join(f.pub, "targets") + "/"
	}
	f.t.Fatalf("unknown transport %q", transport)
	return "", ""
}

// device provisions a fresh device with the repository's root and returns
// its client for the transport; mod may adjust the config.
func (f *fixture) device(transport string, mod func(*tuf.Config)) *tuf.Client {
	f.t.Helper()
	md, tu := f.urls(transport)
	return f.deviceAt(md, tu, mod)
}

func (f *fixture) deviceAt(metaURL, targetsURL string, mod func(*tuf.Config)) *tuf.Client {
	f.t.Helper()
	root, err := f.r.Root()
	if err != nil {
		f.t.Fatal(err)
	}
	dev := f.t.TempDir()
	mdir := filepath.Join(dev, "metadata")
	if err := tuf.Init(mdir, root); err != nil {
		f.t.Fatalf("Init: %v", err)
	}
	cfg := tuf.Config{
		MetadataDir: mdir,
		MetadataURL: metaURL,
		TargetsURL:  targetsURL,
		TargetDir:   filepath.Join(dev, "staging"),
		Now:         func() time.Time { return f.clock },
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := tuf.New(cfg)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	return c
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(out, info.Mode().Perm())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// payload returns n deterministic pseudo-random bytes.
func payload(n int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// hashedName is the consistent-snapshot file name (sha256 prefix) of data
// published as name.
func hashedName(data []byte, name string) string {
	sum := sha256Sum(data)
	return hex.EncodeToString(sum) + "." + name
}

// signingKey reads a repository key file (keys/<role>-<n>.json).
func signingKey(t *testing.T, repoDir, role string, n int) signature.Signer {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir, "keys", role+"-"+strconv.Itoa(n)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var kf struct {
		KeyVal struct {
			Private string `json:"private"`
		} `json:"keyval"`
	}
	if err := json.Unmarshal(data, &kf); err != nil {
		t.Fatal(err)
	}
	seed, err := hex.DecodeString(kf.KeyVal.Private)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signature.LoadED25519Signer(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resignTimestamp rewrites pub's timestamp.json after edit, signed only by
// signer.
func resignTimestamp(t *testing.T, path string, edit func(*metadata.TimestampType), signer signature.Signer) {
	t.Helper()
	ts, err := metadata.Timestamp().FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(&ts.Signed)
	ts.ClearSignatures()
	if _, err := ts.Sign(signer); err != nil {
		t.Fatal(err)
	}
	if err := ts.ToFile(path, false); err != nil {
		t.Fatal(err)
	}
}

// tamperExpires changes one digit of the "expires" value inside the
// signed part of a metadata file, leaving its signatures alone.
func tamperExpires(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(`"expires":"`))
	if i < 0 {
		t.Fatalf("%s has no expires field", path)
	}
	i += len(`"expires":"`) + 3 // last digit of the year
	data[i] = '0' + (data[i]-'0'+1)%10
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
