package agenttest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/simboard"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

// Repo is a TUF repository served over HTTP.
type Repo struct {
	*repo.Repo
	URL string // base URL: URL/metadata and URL/targets
	// BytesPerSecond, when set, slows target downloads down.
	BytesPerSecond atomic.Int64
	// CutAfter, when set, cuts each target response after that many bytes.
	CutAfter atomic.Int64
	// Stalls, when > 0, makes that many of the next target responses stop
	// after their first 64 KiB and hold the connection, silent, until the
	// client gives up; each stalled response counts it down.
	Stalls atomic.Int64
	// Refreshes counts the requests for timestamp.json: one per client
	// refresh.
	Refreshes atomic.Int64
	// Tamper, when set, flips bits in every target response past its
	// first 64 KiB (images, not manifests), as a man in the middle would.
	Tamper atomic.Bool
}

// NewRepo creates a repository in a temporary directory and serves it.
func NewRepo(t testing.TB, opts repo.Options) *Repo {
	t.Helper()
	opts.ConsistentSnapshot = true
	r, err := repo.Create(filepath.Join(t.TempDir(), "repo"), opts)
	if err != nil {
		t.Fatal(err)
	}
	rr := &Repo{Repo: r}
	mux := http.NewServeMux()
	meta := http.StripPrefix("/metadata/", http.FileServer(http.Dir(r.MetadataDir())))
	mux.Handle("/metadata/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if path.Base(req.URL.Path) == "timestamp.json" {
			rr.Refreshes.Add(1)
		}
		meta.ServeHTTP(w, req)
	}))
	targets := http.StripPrefix("/targets/", http.FileServer(http.Dir(r.TargetsDir())))
	mux.Handle("/targets/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		targets.ServeHTTP(&shapedWriter{ResponseWriter: w, r: rr, req: req}, req)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rr.URL = srv.URL
	return rr
}

// shapedWriter throttles and cuts responses as the Repo says.
type shapedWriter struct {
	http.ResponseWriter
	r       *Repo
	req     *http.Request
	written int64
	stalled bool
}

func (w *shapedWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n := min(len(p), 32<<10)
		if cut := w.r.CutAfter.Load(); cut > 0 {
			if w.written >= cut {
				panic(http.ErrAbortHandler) // drop the connection mid-body
			}
			n = int(min(int64(n), cut-w.written))
		}
		if bps := w.r.BytesPerSecond.Load(); bps > 0 {
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / bps))
		}
		if w.written >= 64<<10 && !w.stalled && w.r.Stalls.Load() > 0 && w.r.Stalls.Add(-1) >= 0 {
			w.stalled = true
			http.NewResponseController(w.ResponseWriter).Flush()
			<-w.req.Context().Done() // silent until the client leaves
			return total, w.req.Context().Err()
		}
		chunk := p[:n]
		if w.r.Tamper.Load() && w.written >= 64<<10 {
			chunk = append([]byte(nil), chunk...)
			chunk[len(chunk)/2] ^= 0x40
		}
		m, err := w.ResponseWriter.Write(chunk)
		total += m
		w.written += int64(m)
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// Release describes a release to publish.
type Release struct {
	Name        string
	Sequence    uint64
	Boards      []string // default sim
	Arch        string
	Image       []byte
	Compression manifest.Compression
	// SHA256 overrides the image hash in the manifest (to publish a lie).
	SHA256 []byte
	// Role signs the release's targets: a delegated role (Repo.Delegate)
	// instead of the top-level targets.
	Role string
}

// ManifestTarget is the TUF target name of a release's manifest.
func ManifestTarget(name string) string { return path.Join("releases", name, "manifest.cbor") }

// Publish adds a release (image and manifest targets) and publishes it.
func (r *Repo) Publish(t testing.TB, rel Release) string {
	t.Helper()
	sum := sha256.Sum256(rel.Image)
	payload, ext := rel.Image, ".img"
	switch rel.Compression {
	case manifest.CompressionGzip:
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(rel.Image)
		zw.Close()
		payload, ext = b.Bytes(), ".img.gz"
	case manifest.CompressionZstd:
		enc, _ := zstd.NewWriter(nil)
		payload, ext = enc.EncodeAll(rel.Image, nil), ".img.zst"
	}
	role := rel.Role
	if role == "" {
		role = "targets"
	}
	imgTarget := path.Join("releases", rel.Name, "rootfs"+ext)
	if _, err := r.AddTargetFor(role, imgTarget, bytes.NewReader(payload), nil); err != nil {
		t.Fatal(err)
	}
	boardNames := rel.Boards
	if boardNames == nil {
		boardNames = []string{"sim"}
	}
	hash := sum[:]
	if rel.SHA256 != nil {
		hash = rel.SHA256
	}
	m := &manifest.Manifest{
		Format: manifest.FormatVersion, Name: rel.Name, Version: fmt.Sprintf("%d.0.0", rel.Sequence),
		Sequence: rel.Sequence, Boards: boardNames, Arch: rel.Arch,
		Components: []manifest.Component{{Kind: manifest.KindImage, Name: "rootfs", Image: &manifest.Image{
			SlotGroup: "rootfs", Target: imgTarget, Size: uint64(len(rel.Image)), SHA256: hash, Compression: rel.Compression,
		}}},
	}
	raw, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return r.publishRaw(t, role, rel.Name, raw)
}

// PublishRaw publishes arbitrary bytes as a release's manifest target.
func (r *Repo) PublishRaw(t testing.TB, name string, raw []byte) string {
	t.Helper()
	return r.publishRaw(t, "targets", name, raw)
}

func (r *Repo) publishRaw(t testing.TB, role, name string, raw []byte) string {
	t.Helper()
	target := ManifestTarget(name)
	if _, err := r.AddTargetFor(role, target, bytes.NewReader(raw), nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Repo.Publish(); err != nil {
		t.Fatal(err)
	}
	return target
}

// Image is a test root filesystem image: a header line naming the version
// and whether its self-test passes, then pseudo-random data.
func Image(version string, healthy bool, size int) []byte {
	self := "fail"
	if healthy {
		self = "pass"
	}
	img := make([]byte, size)
	n := copy(img, fmt.Sprintf("graft test rootfs %s\nselftest=%s\n", version, self))
	seed := sha256.Sum256([]byte(version))
	rnd := rand.New(rand.NewChaCha8(seed))
	for i := n; i < size; i++ {
		img[i] = byte(rnd.Uint32() & 0x3f)
	}
	return img
}

// Device is a provisioned device on the simulated board.
type Device struct {
	ID      string
	Dir     string
	Config  string // agent.conf path
	Board   *simboard.Board
	Factory []byte // slot A's content
}

// SlotSize is the size of each slot file of a test device.
const SlotSize = 4 << 20

// DeviceOptions tune NewDevice.
type DeviceOptions struct {
	Broker string   // mqtt URL
	Checks []string // health checks; default broker, tuf and the self-test
	Board  string   // board file content to load (overrides sim), optional
	Dir    string   // where to provision it; default a new temporary directory
}

// NewDevice provisions a device: slot A holds a factory image, the trusted
// root is r's, and agent.conf points at r and the broker.
func NewDevice(t testing.TB, r *Repo, id string, o DeviceOptions) *Device {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	if o.Dir != "" {
		dir = o.Dir
	}
	set := boards.Builtin()
	if o.Board != "" {
		if err := set.Load(strings.NewReader(o.Board), "test-board.json"); err != nil {
			t.Fatal(err)
		}
	}
	def, err := set.Lookup("sim")
	if err != nil {
		t.Fatal(err)
	}
	factory := Image("v1", true, 1<<20)
	b, err := simboard.Provision(dir, def, SlotSize, factory)
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.Root()
	if err != nil {
		t.Fatal(err)
	}
	if err := tuf.Init(filepath.Join(dir, "tuf"), root); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.DeviceID, c.Board, c.DataDir = id, "sim", dir
	c.Broker, c.KeepAlive = o.Broker, 5*time.Second
	if c.Broker == "" {
		c.Broker = "tcp://127.0.0.1:1"
	}
	c.MetadataURL, c.TargetsURL = r.URL+"/metadata", r.URL+"/targets"
	c.HealthTimeout, c.LogLevel = 20*time.Second, "debug"
	c.HealthChecks = o.Checks
	if c.HealthChecks == nil {
		c.HealthChecks = []string{"broker", "tuf", `exec:grep -q selftest=pass "$GRAFT_SLOT_DEVICE"`}
	}
	if o.Board != "" {
		c.BoardFile = filepath.Join(dir, "boards.json")
		if err := os.WriteFile(c.BoardFile, []byte(o.Board), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(cfgPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Device{ID: id, Dir: dir, Config: cfgPath, Board: b, Factory: factory}
}

// Slot returns the bytes of slot name ("A", "B").
func (d *Device) Slot(name string) []byte {
	b, err := os.ReadFile(filepath.Join(d.Dir, "slot-"+strings.ToLower(name)+".img"))
	if err != nil {
		return nil
	}
	return b
}
