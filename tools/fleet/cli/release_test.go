package cli_test

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// newRepo creates a repository with graft-fleet repo init.
func newRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	code, stdout, stderr := run(t.Context(), "repo", "init", "--dir", dir, "--json", "--expiry", "timestamp=2h")
	if code != cli.ExitOK {
		t.Fatalf("repo init: exit %d: %s", code, stderr)
	}
	var out struct{ Root string }
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("repo init --json: %v: %q", err, stdout)
	}
	if _, err := os.Stat(out.Root); err != nil {
		t.Fatalf("repo init printed root %q: %v", out.Root, err)
	}
	return dir
}

func writeImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	// Half random, half repeated: compressible but not trivially.
	img := make([]byte, size)
	rand.Read(img[:size/2])
	copy(img[size/2:], bytes.Repeat([]byte("graft"), size))
	p := filepath.Join(t.TempDir(), "rootfs.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, img
}

// device is a device-side TUF client of the repository served over HTTP
// by serve, trusting the root graft-fleet repo root prints.
func device(t *testing.T, dir string) *tuf.Client {
	t.Helper()
	r, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: []byte(os.Getenv(cli.PassphraseEnv))})
	if err != nil {
		t.Fatal(err)
	}
	s, err := serve.Start(t.Context(), serve.Options{
		MetadataDir: r.MetadataDir(), TargetsDir: r.TargetsDir(), MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	code, root, stderr := run(t.Context(), "repo", "root", "--dir", dir)
	if code != cli.ExitOK {
		t.Fatalf("repo root: exit %d: %s", code, stderr)
	}
	meta := t.TempDir()
	if err := tuf.Init(meta, []byte(root)); err != nil {
		t.Fatalf("tuf.Init with the printed root: %v", err)
	}
	c, err := tuf.New(tuf.Config{
		MetadataDir: meta, MetadataURL: s.HTTPURL() + "/metadata/", TargetsURL: s.HTTPURL() + "/targets/", TargetDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(t.Context()); err != nil {
		t.Fatalf("device refresh over HTTP: %v", err)
	}
	return c
}

func TestReleaseAddEndToEnd(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	imgPath, img := writeImage(t, 256<<10)
	sum := sha256.Sum256(img)

	tests := []struct {
		name, compress, target string
		seq                    string
		decompress             func(io.Reader) (io.Reader, error)
	}{
		{name: "v1", compress: "none", seq: "1", target: "releases/v1/rootfs.img",
			decompress: func(r io.Reader) (io.Reader, error) { return r, nil }},
		{name: "v2", compress: "gzip", seq: "2", target: "releases/v2/rootfs.img.gz",
			decompress: func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{name: "v3", compress: "zstd", seq: "5", target: "releases/v3/rootfs.img.zst",
			decompress: func(r io.Reader) (io.Reader, error) {
				d, err := zstd.NewReader(r)
				if err != nil {
					return nil, err
				}
				return d.IOReadCloser(), nil
			}},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t.Context(), "release", "add", "--repo", dir, "--name", tt.name, "--version", tt.name+".0.0",
			"--sequence", tt.seq, "--board", "sim", "--board", "qemu-arm64", "--class", "bench", "--arch", "arm64",
			"--min-agent", "0.1.0", "--image", imgPath, "--compress", tt.compress, "--json")
		if code != cli.ExitOK {
			t.Fatalf("release add %s: exit %d: %s", tt.name, code, stderr)
		}
		var out struct {
			ImageTarget string `json:"image_target"`
			ImageSHA256 string `json:"image_sha256"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil || out.ImageTarget != tt.target {
			t.Fatalf("release add --json: %v: %s", err, stdout)
		}
	}

	// What a device sees: signed metadata over HTTP, the manifest and the
	// image as verified targets.
	c := device(t, dir)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := c.ReadTarget(t.Context(), "releases/"+tt.name+"/manifest.cbor", manifest.MaxSize)
			if err != nil {
				t.Fatalf("ReadTarget manifest: %v", err)
			}
			m, err := manifest.Decode(data)
			if err != nil {
				t.Fatalf("manifest.Decode: %v", err)
			}
			if m.Name != tt.name || m.Version != tt.name+".0.0" || m.DeviceClass != "bench" || m.Arch != "arm64" ||
				m.MinAgentVersion != "0.1.0" || strings.Join(m.Boards, ",") != "sim,qemu-arm64" {
				t.Fatalf("manifest %+v", m)
			}
			imgs := m.Images()
			if len(imgs) != 1 || imgs[0].Target != tt.target || imgs[0].SlotGroup != "rootfs" ||
				imgs[0].Size != uint64(len(img)) || !bytes.Equal(imgs[0].SHA256, sum[:]) ||
				imgs[0].Compression.String() != tt.compress {
				t.Fatalf("image component %+v", imgs[0])
			}
			path, err := c.Download(t.Context(), imgs[0].Target, tuf.DownloadOptions{})
			if err != nil {
				t.Fatalf("Download image: %v", err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := tt.decompress(f)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, r); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.Sum(nil), imgs[0].SHA256) {
				t.Fatal("downloaded image does not decompress to the manifest's SHA-256")
			}
		})
	}
}

func TestReleaseAddRefuses(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	imgPath, _ := writeImage(t, 4096)
	add := func(name, seq, class string) (int, string) {
		t.Helper()
		code, _, stderr := run(t.Context(), "release", "add", "--repo", dir, "--name", name, "--version", "1.0.0",
			"--sequence", seq, "--board", "sim", "--class", class, "--image", imgPath)
		return code, stderr
	}
	if code, stderr := add("v5", "5", "sim"); code != cli.ExitOK {
		t.Fatalf("first release: exit %d: %s", code, stderr)
	}
	targetsBefore := targetNames(t, dir)

	tests := []struct {
		name, release, seq, class string
		wantCode                  int
	}{
		{name: "same sequence", release: "v6", seq: "5", class: "sim", wantCode: cli.ExitFailure},
		{name: "lower sequence", release: "v4", seq: "4", class: "sim", wantCode: cli.ExitFailure},
		{name: "duplicate name", release: "v5", seq: "9", class: "sim", wantCode: cli.ExitFailure},
		{name: "other class counts apart", release: "r1", seq: "1", class: "rpi", wantCode: cli.ExitOK},
		{name: "higher sequence", release: "v6", seq: "6", class: "sim", wantCode: cli.ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := add(tt.release, tt.seq, tt.class)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tt.wantCode, stderr)
			}
			if code != cli.ExitOK {
				if strings.Count(stderr, "\n") != 1 {
					t.Fatalf("want one error line, got %q", stderr)
				}
				if got := targetNames(t, dir); strings.Join(got, " ") != strings.Join(targetsBefore, " ") {
					t.Fatalf("refused release changed the targets: %v", got)
				}
			} else {
				targetsBefore = targetNames(t, dir)
			}
		})
	}
}

// TestReleaseAddEmptyImageStagesNothing: an image Build refuses leaves no
// staged target behind for a later publish to pick up.
func TestReleaseAddEmptyImageStagesNothing(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	empty := filepath.Join(t.TempDir(), "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t.Context(), "release", "add", "--repo", dir, "--name", "v1", "--version", "1.0.0",
		"--sequence", "1", "--board", "sim", "--image", empty)
	if code != cli.ExitFailure {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(t.Context(), "repo", "publish", "--dir", dir); code != cli.ExitOK {
		t.Fatalf("publish: %s", stderr)
	}
	if got := targetNames(t, dir); len(got) != 0 {
		t.Fatalf("published targets after a refused release: %v", got)
	}
}

func TestRepoCommands(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	file := filepath.Join(t.TempDir(), "hello.txt")
	if err := os.WriteFile(file, []byte("hello device\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := [][]string{
		{"repo", "add-target", "--dir", dir, "docs/hello.txt", file},
		{"repo", "publish", "--dir", dir},
		{"repo", "timestamp", "--dir", dir},
		{"repo", "root", "--dir", dir, "--out", filepath.Join(t.TempDir(), "root.json")},
	}
	for _, s := range steps {
		if code, _, stderr := run(t.Context(), s...); code != cli.ExitOK {
			t.Fatalf("%v: exit %d: %s", s, code, stderr)
		}
	}
	// A device trusting the printed root sees the target, after the
	// refreshed timestamp.
	c := device(t, dir)
	data, err := c.ReadTarget(t.Context(), "docs/hello.txt", 100)
	if err != nil || string(data) != "hello device\n" {
		t.Fatalf("ReadTarget: %q, %v", data, err)
	}

	// A second init over the same directory fails, not usage.
	code, _, stderr := run(t.Context(), "repo", "init", "--dir", dir)
	if code != cli.ExitFailure {
		t.Fatalf("re-init: exit %d: %s", code, stderr)
	}
	// So does opening a directory that is not a repository.
	code, _, _ = run(t.Context(), "repo", "publish", "--dir", t.TempDir())
	if code != cli.ExitFailure {
		t.Fatalf("publish of a non-repository: exit %d", code)
	}
}

func targetNames(t *testing.T, dir string) []string {
	t.Helper()
	r, err := repo.OpenWith(dir, repo.OpenOptions{Passphrase: []byte(os.Getenv(cli.PassphraseEnv))})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range r.Targets() {
		names = append(names, tg.Name)
	}
	return names
}

// TestReleaseAddSequenceTop: a sequence that leaves no room for another
// release is refused, and the repository is unchanged.
func TestReleaseAddSequenceTop(t *testing.T) {
	t.Parallel()
	dir := newRepo(t)
	img, _ := writeImage(t, 4<<10)
	before := mustRun(t, "repo", "root", "--dir", dir)
	code, _, stderr := run(t.Context(), "release", "add", "--repo", dir, "--name", "v9", "--version", "9.0.0",
		"--sequence", "18446744073709551000", "--board", "sim", "--image", img)
	if code == cli.ExitOK || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("release add near the top of the range: exit %d, stderr %q", code, stderr)
	}
	r, err := repo.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Targets()) != 0 || mustRun(t, "repo", "root", "--dir", dir) != before {
		t.Fatalf("the refused release changed the repository: %v", r.Targets())
	}
	// 1000 below the top is the highest allowed.
	mustRun(t, "release", "add", "--repo", dir, "--name", "v8", "--version", "8.0.0",
		"--sequence", "18446744073709550615", "--board", "sim", "--image", img)
}
