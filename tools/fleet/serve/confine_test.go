package serve_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/serve"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeStaysInTree: the HTTP server never follows a symlink out of
// the served tree and never serves a private key, however it got inside.
func TestServeStaysInTree(t *testing.T) {
	s, meta, targets := start(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "root-1.json")
	os.WriteFile(secret, []byte(`{"keytype":"ed25519","keyval":{"public":"ab","private":"cd"}}`), 0o600)
	os.WriteFile(filepath.Join(outside, "plain.txt"), []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(targets, "image.img"), []byte("public"), 0o644)
	os.Mkdir(filepath.Join(targets, "sub"), 0o755)
	os.Symlink("../image.img", filepath.Join(targets, "sub", "inside"))
	os.Symlink(secret, filepath.Join(targets, "key-link"))
	os.Symlink(filepath.Join(outside, "plain.txt"), filepath.Join(targets, "abs-link"))
	os.Symlink("../"+filepath.Base(outside)+"/plain.txt", filepath.Join(targets, "rel-link"))
	os.Symlink(outside, filepath.Join(meta, "dir-link"))
	pemKey := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
	os.WriteFile(filepath.Join(targets, "copied.key"), []byte(pemKey), 0o644)
	copied, _ := os.ReadFile(secret)
	os.WriteFile(filepath.Join(meta, "1.root-key.json"), copied, 0o644)

	for _, p := range []string{"/targets/image.img", "/targets/sub/inside"} {
		if code, body := get(t, s.HTTPURL()+p); code != http.StatusOK || body != "public" {
			t.Errorf("GET %s: %d %q, want 200", p, code, body)
		}
	}
	for _, p := range []string{
		"/targets/key-link", "/targets/abs-link", "/targets/rel-link", "/metadata/dir-link/plain.txt",
		"/targets/copied.key", "/metadata/1.root-key.json", "/targets/../metadata/x", "/targets/%2e%2e/%2e%2e/etc/passwd",
	} {
		if code, body := get(t, s.HTTPURL()+p); code == http.StatusOK {
			t.Errorf("GET %s served %q", p, body)
		}
	}
}

// TestServeRefusesKeysInTree: Start refuses a private directory inside a
// served one.
func TestServeRefusesKeysInTree(t *testing.T) {
	meta, targets := t.TempDir(), t.TempDir()
	keys := filepath.Join(targets, "keys")
	os.Mkdir(keys, 0o700)
	for name, opts := range map[string]serve.Options{
		"repository keys": {PrivateDirs: []string{keys}},
		"CA":              {CADir: filepath.Join(meta)},
	} {
		opts.MetadataDir, opts.TargetsDir = meta, targets
		opts.MQTTAddr, opts.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
		s, err := serve.Start(t.Context(), opts)
		if !errors.Is(err, serve.ErrKeysServed) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: Start = %v, want ErrKeysServed", name, err)
		}
	}
}
