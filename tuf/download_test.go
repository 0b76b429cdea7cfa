package tuf_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// servedTarget is the path of name's file in pub/ for a consistent repo.
func (f *fixture) servedTarget(data []byte, name string) string {
	return filepath.Join(f.pub, "targets", hashedName(data, name))
}

func refreshed(t *testing.T, c *tuf.Client) *tuf.Client {
	t.Helper()
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	return c
}

// TestDownloadRefusals alters the served target bytes and checks which
// check refuses them and whether the staging file is kept for a resume.
func TestDownloadRefusals(t *testing.T) {
	image := payload(256<<10, 5)
	cases := []struct {
		name     string
		alter    func(t *testing.T, p string)
		want     error
		keepFile bool
	}{
		{"tampered byte", func(t *testing.T, p string) {
			b := bytes.Clone(image)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, tuf.ErrHash, false},
		{"longer than signed", func(t *testing.T, p string) {
			os.WriteFile(p, append(bytes.Clone(image), "extra"...), 0o644)
		}, tuf.ErrLength, false},
		{"shorter than signed", func(t *testing.T, p string) {
			os.WriteFile(p, image[:1000], 0o644)
		}, tuf.ErrTransfer, true},
		{"missing", func(t *testing.T, p string) { os.Remove(p) }, tuf.ErrTransfer, true},
	}
	for _, tc := range cases {
		for _, tr := range []string{"http", "dir"} {
			t.Run(tc.name+"/"+tr, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, repo.Options{ConsistentSnapshot: true})
				f.add("image.bin", image, "")
				f.publish()
				tc.alter(t, f.servedTarget(image, "image.bin"))
				c := refreshed(t, f.device(tr, nil))
				dest := filepath.Join(t.TempDir(), "staged")
				p, err := c.Download(context.Background(), "image.bin", tuf.DownloadOptions{Dest: dest})
				t.Logf("refused: %v", err)
				if !errors.Is(err, tc.want) || p != "" {
					t.Fatalf("Download = %q, %v; want %v", p, err, tc.want)
				}
				if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("unverified bytes under the target's name: %v", err)
				}
				_, serr := os.Stat(dest + tuf.PartSuffix)
				if kept := serr == nil; kept != tc.keepFile {
					t.Fatalf("staging file kept = %v, want %v", kept, tc.keepFile)
				}
				if tc.want == tuf.ErrLength || tc.want == tuf.ErrHash {
					if errors.Is(err, tuf.ErrTransfer) {
						t.Fatalf("%v also claims to be a transfer error", err)
					}
				}
			})
		}
	}
}

// TestDownloadStopsAtLength serves the target followed by a stream of
// extra bytes: the client must refuse at the first extra byte and hang up,
// never taking the whole stream.
func TestDownloadStopsAtLength(t *testing.T) {
	image := payload(100_000, 6)
	const extra = 256 << 20
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("image.bin", image, "")
	f.publish()

	var sent atomic.Int64
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/metadata/", http.FileServer(http.Dir(f.pub)))
	var once sync.Once
	mux.HandleFunc("/targets/", func(w http.ResponseWriter, r *http.Request) {
		defer once.Do(func() { close(done) })
		n, _ := w.Write(image)
		sent.Add(int64(n))
		chunk := make([]byte, 64<<10)
		for i := 0; i < extra/len(chunk); i++ {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	base := serve(t, mux)
	c := refreshed(t, f.deviceAt(base+"/metadata", base+"/targets", nil))
	dest := filepath.Join(t.TempDir(), "staged")
	_, err := c.Download(context.Background(), "image.bin", tuf.DownloadOptions{Dest: dest})
	if !errors.Is(err, tuf.ErrLength) {
		t.Fatalf("Download = %v, want ErrLength", err)
	}
	for _, p := range []string{dest, dest + tuf.PartSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after ErrLength: %v, want it absent", p, err)
		}
	}
	<-done
	if got := sent.Load(); got >= int64(len(image))+extra {
		t.Fatalf("server sent all %d bytes: the client did not hang up", got)
	}
	t.Logf("server managed to send %d extra bytes of %d before the client hung up", sent.Load()-int64(len(image)), extra)

	// ReadTarget refuses the same way
	if _, err := c.ReadTarget(context.Background(), "image.bin", 1<<20); !errors.Is(err, tuf.ErrLength) {
		t.Fatalf("ReadTarget = %v, want ErrLength", err)
	}
}

// TestDownloadResume starts from a staging file that already holds a
// prefix.
func TestDownloadResume(t *testing.T) {
	image := payload(6<<20+11, 7)
	const k = 5<<20 + 3
	wrong := bytes.Clone(image[:k])
	wrong[100] ^= 0xff
	cases := []struct {
		name        string
		staged      []byte
		offset      int64
		ignoreRange bool
		want        error
	}{
		{name: "range honoured", staged: image[:k], offset: k},
		{name: "range ignored by the server", staged: image[:k], offset: k, ignoreRange: true},
		{name: "junk after the offset is cut", staged: append(bytes.Clone(image[:k]), "junk"...), offset: k},
		{name: "offset past the file restarts", staged: image[:10], offset: k},
		{name: "offset past the length restarts", staged: image[:10], offset: int64(len(image)) + 5},
		{name: "already complete", staged: image, offset: int64(len(image))},
		{name: "wrong prefix", staged: wrong, offset: k, want: tuf.ErrHash},
	}
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("image.bin", image, "")
	f.publish()
	fileSrv := http.FileServer(http.Dir(f.pub))
	var ignore atomic.Bool
	var ranges atomic.Int64
	base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		if ignore.Load() {
			r.Header.Del("Range")
		}
		fileSrv.ServeHTTP(w, r)
	}))
	c := refreshed(t, f.deviceAt(base+"/metadata", base+"/targets", nil))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ignore.Store(tc.ignoreRange)
			ranges.Store(0)
			dest := filepath.Join(t.TempDir(), "staged")
			if err := os.WriteFile(dest+tuf.PartSuffix, tc.staged, 0o600); err != nil {
				t.Fatal(err)
			}
			var first int64 = -1
			p, err := c.Download(context.Background(), "image.bin", tuf.DownloadOptions{
				Dest: dest, Offset: tc.offset,
				Progress: func(done, _ int64) {
					if first < 0 {
						first = done
					}
				},
			})
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Download = %v, want %v", err, tc.want)
				}
				if _, err := os.Stat(dest + tuf.PartSuffix); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("partial file after %v: %v, want it removed", tc.want, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			if !bytes.Equal(readAll(t, p), image) {
				t.Fatal("resumed image differs")
			}
			if tc.offset == k && len(tc.staged) >= k && first != k {
				t.Fatalf("resumed at %d, want %d", first, k)
			}
			if tc.offset == k && len(tc.staged) >= k && ranges.Load() != 1 {
				t.Fatalf("%d range requests, want 1", ranges.Load())
			}
		})
	}
}

// countingFetcher stands in for the agent's fetcher: the real HTTPFetcher,
// counting calls.
type countingFetcher struct {
	calls atomic.Int64
	tuf.HTTPFetcher
}

func (c *countingFetcher) Fetch(ctx context.Context, url string, offset, maxLength int64, w io.Writer) error {
	c.calls.Add(1)
	return c.HTTPFetcher.Fetch(ctx, url, offset, maxLength, w)
}

// TestDownloadTruncated: the server announces the full length, sends 5 MiB
// and drops the connection. The download fails as a transfer error, keeps
// the fsynced part with a checkpoint at its end, and a resume from that
// checkpoint completes the image.
func TestDownloadTruncated(t *testing.T) {
	image := payload(7<<20+5, 8)
	const cut = 5 << 20
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("image.bin", image, "")
	f.publish()
	fileSrv := http.FileServer(http.Dir(f.pub))
	var truncate atomic.Bool
	truncate.Store(true)
	base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if truncate.Load() && strings.HasPrefix(r.URL.Path, "/targets/") {
			w.Header().Set("Content-Length", strconv.Itoa(len(image)))
			w.Write(image[:cut])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		fileSrv.ServeHTTP(w, r)
	}))
	fetcher := &countingFetcher{}
	c := refreshed(t, f.deviceAt(base+"/metadata", base+"/targets", func(c *tuf.Config) { c.Fetcher = fetcher }))

	var checkpoints []int64
	opts := tuf.DownloadOptions{
		Dest:       filepath.Join(t.TempDir(), "image"),
		Checkpoint: func(off int64) error { checkpoints = append(checkpoints, off); return nil },
	}
	_, err := c.Download(context.Background(), "image.bin", opts)
	if !errors.Is(err, tuf.ErrTransfer) {
		t.Fatalf("Download = %v, want ErrTransfer", err)
	}
	t.Logf("truncated: %v; checkpoints %v", err, checkpoints)
	if len(checkpoints) == 0 {
		t.Fatal("no checkpoint after the transfer error")
	}
	last := checkpoints[len(checkpoints)-1]
	if last < 4<<20 || last > cut {
		t.Fatalf("last checkpoint %d, want between 4 MiB and %d", last, cut)
	}
	// the kept file holds exactly the checkpointed, correct prefix
	got := readAll(t, opts.Dest+tuf.PartSuffix)
	if int64(len(got)) != last || !bytes.Equal(got, image[:last]) {
		t.Fatalf("kept %d bytes (checkpoint %d), prefix correct = %v", len(got), last, bytes.Equal(got, image[:min(len(got), len(image))]))
	}

	truncate.Store(false)
	opts.Offset = last
	p, err := c.Download(context.Background(), "image.bin", opts)
	if err != nil {
		t.Fatalf("resumed Download: %v", err)
	}
	if !bytes.Equal(readAll(t, p), image) {
		t.Fatal("resumed image differs")
	}
	if n := fetcher.calls.Load(); n != 2 {
		t.Fatalf("Config.Fetcher called %d times, want 2", n)
	}
}

// TestDownloadKeepsVerifiedCopy: Dest holds a verified release 1 image;
// release 2 of the same target is then served too long, too short and
// tampered. Each refusal leaves release 1's bytes in Dest, and the
// unverified bytes never appear under Dest's name.
func TestDownloadKeepsVerifiedCopy(t *testing.T) {
	v1, v2 := payload(300_000, 20), payload(300_000, 21)
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("image.bin", v1, "")
	f.publish()
	dest := filepath.Join(t.TempDir(), "image")
	ctx := context.Background()
	c := refreshed(t, f.device("http", nil))
	if _, err := c.Download(ctx, "image.bin", tuf.DownloadOptions{Dest: dest}); err != nil {
		t.Fatal(err)
	}
	f.add("image.bin", v2, "")
	f.publish()
	refreshed(t, c)
	served := f.servedTarget(v2, "image.bin")
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"too long", append(bytes.Clone(v2), "extra"...), tuf.ErrLength},
		{"too short", v2[:1000], tuf.ErrTransfer},
		{"tampered", append(bytes.Clone(v2[:len(v2)-1]), v2[len(v2)-1]^1), tuf.ErrHash},
	} {
		if err := os.WriteFile(served, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := c.Download(ctx, "image.bin", tuf.DownloadOptions{Dest: dest})
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: Download = %v, want %v", tc.name, err, tc.want)
		}
		if !bytes.Equal(readAll(t, dest), v1) {
			t.Fatalf("%s: the verified copy in Dest was changed", tc.name)
		}
		os.Remove(dest + tuf.PartSuffix) // no resume from the short one
	}
	if err := os.WriteFile(served, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Download(ctx, "image.bin", tuf.DownloadOptions{Dest: dest}); err != nil || !bytes.Equal(readAll(t, p), v2) {
		t.Fatalf("Download of the good release 2: %v", err)
	}
}

// TestDownloadSkipsPresent: a target already in Dest with the signed
// length and hashes is not fetched again (counted at the HTTP server); one
// with the right length but other bytes is.
func TestDownloadSkipsPresent(t *testing.T) {
	image := payload(200_000, 22)
	f := newFixture(t, repo.Options{ConsistentSnapshot: true})
	f.add("image.bin", image, "")
	f.publish()
	fileSrv := http.FileServer(http.Dir(f.pub))
	var gets atomic.Int64
	base := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/targets/") {
			gets.Add(1)
		}
		fileSrv.ServeHTTP(w, r)
	}))
	c := refreshed(t, f.deviceAt(base+"/metadata", base+"/targets", nil))
	dest := filepath.Join(t.TempDir(), "image")
	ctx := context.Background()
	var checkpoint int64
	opts := tuf.DownloadOptions{Dest: dest, Checkpoint: func(off int64) error { checkpoint = off; return nil }}
	for i := range 2 {
		p, err := c.Download(ctx, "image.bin", opts)
		if err != nil || p != dest || !bytes.Equal(readAll(t, p), image) {
			t.Fatalf("Download %d: %q, %v", i, p, err)
		}
	}
	if n := gets.Load(); n != 1 {
		t.Fatalf("%d target requests for two downloads of a present target, want 1", n)
	}
	if checkpoint != int64(len(image)) {
		t.Fatalf("checkpoint %d, want %d", checkpoint, len(image))
	}
	bad := bytes.Clone(image)
	bad[0] ^= 1
	if err := os.WriteFile(dest, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, "image.bin", opts); err != nil || !bytes.Equal(readAll(t, dest), image) {
		t.Fatalf("Download over a corrupt copy: %v", err)
	}
	if n := gets.Load(); n != 2 {
		t.Fatalf("%d target requests, want 2 (the corrupt copy is fetched again)", n)
	}
}
