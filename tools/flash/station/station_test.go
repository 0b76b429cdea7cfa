package station_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/provision"
	"github.com/graft-dev/graft/tools/flash/flashtest"
	"github.com/graft-dev/graft/tools/flash/ledger"
	"github.com/graft-dev/graft/tools/flash/station"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/tuf/repo"
)

const configTmpl = `[device]
id = {id}
board = auto
[mqtt]
broker = tcp://127.0.0.1:1
[tuf]
metadata_url = {repo_url}/metadata
targets_url = {repo_url}/targets
`

// fixture is a station's world: a TUF repository with releases, the
// fleet CA, a ledger.
type fixture struct {
	repo    *agenttest.Repo
	caDir   string
	ledger  *ledger.Ledger
	image   []byte
	release string
	// throttle, when set, limits the repository server to that many
	// bytes per second of targets.
	throttle atomic.Int64
	served   atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{repo: agenttest.NewRepo(t, repo.Options{}), caDir: filepath.Join(t.TempDir(), "ca"), release: "factory-1"}
	if _, err := ca.Init(f.caDir, ca.Options{}); err != nil {
		t.Fatal(err)
	}
	f.image = agenttest.Image("factory-1", true, 3<<20)
	f.repo.Publish(t, agenttest.Release{Name: f.release, Sequence: 1, Boards: []string{flashtest.BoardName}, Image: f.image})
	l, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.ledger = l
	return f
}

func (f *fixture) repoDir() string { return filepath.Dir(f.repo.MetadataDir()) }

func (f *fixture) station(t *testing.T, mod func(*station.Config)) *station.Station {
	t.Helper()
	c := station.Config{
		Release: f.release, RepoDir: f.repoDir(), CADir: f.caDir, ConfigTmpl: []byte(configTmpl),
		IDTemplate: "sim-{serial}", Station: "test-station", Ledger: f.ledger,
		HelloWait: 10 * time.Second, StepTimeout: time.Minute, Retry: 200 * time.Millisecond,
		WrapRepo: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/targets/") {
					w = &shaped{ResponseWriter: w, f: f}
				}
				h.ServeHTTP(w, r)
			})
		},
	}
	if mod != nil {
		mod(&c)
	}
	s, err := station.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type shaped struct {
	http.ResponseWriter
	f *fixture
}

func (w *shaped) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		if bps := w.f.throttle.Load(); bps > 0 {
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / bps))
		}
		m, err := w.ResponseWriter.Write(p[:n])
		total += m
		w.f.served.Add(int64(m))
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

func records(t *testing.T, l *ledger.Ledger, serial, outcome string) []ledger.Record {
	t.Helper()
	rs, err := l.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []ledger.Record
	for _, r := range rs {
		if r.Serial == serial && (outcome == "" || r.Outcome == outcome) {
			out = append(out, r)
		}
	}
	return out
}

// checkProvisioned checks everything a provisioned device must hold.
func checkProvisioned(t *testing.T, f *fixture, d *flashtest.Device, r station.Result, slots ...string) {
	t.Helper()
	if r.Outcome != ledger.Provisioned {
		t.Fatalf("%s: %s (%s): %s", d.Serial, r.Outcome, r.Code, r.Reason)
	}
	for _, s := range slots {
		if got := d.Slot(s); !bytes.Equal(got[:len(f.image)], f.image) {
			t.Errorf("%s: slot %s does not hold the release image", d.Serial, s)
		}
	}
	// The boot state, read through both copies of the redundant env.
	store, err := daemon.OpenEnv(d.Board)
	if err != nil {
		t.Fatal(err)
	}
	env, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if env["BOOT_ORDER"] != "A B" || env["BOOT_A_LEFT"] != "3" {
		t.Errorf("%s: boot env %v", d.Serial, env)
	}
	raw, _ := os.ReadFile(filepath.Join(d.Dir, "uboot.env"))
	for i := 0; i < 2; i++ {
		if _, _, err := bootenv.DecodeUBoot(raw[i*0x4000:(i+1)*0x4000], true); err != nil {
			t.Errorf("%s: env copy %d: %v", d.Serial, i, err)
		}
	}
	// The certificate: signed by the fleet CA, for the device's own key,
	// carrying the ID the template gave.
	caCert, err := ca.LoadCertificate(filepath.Join(f.caDir, ca.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	pemCert, err := os.ReadFile(filepath.Join(d.Dir, provision.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemCert)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s: certificate: %v", d.Serial, err)
	}
	if id, err := identity.FromCertificate(cert); err != nil || id.Name != "sim-"+d.Serial {
		t.Errorf("%s: certificate identity %v %v", d.Serial, id, err)
	}
	if fi, err := os.Stat(filepath.Join(d.Dir, provision.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: key file: %v %v", d.Serial, fi, err)
	}
	// The agent config loads and is this device's.
	cfg, err := config.Load(filepath.Join(d.Dir, provision.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeviceID != "sim-"+d.Serial || cfg.Board != flashtest.BoardName || cfg.CertFile == "" {
		t.Errorf("%s: config %+v", d.Serial, cfg)
	}
	if _, err := os.Stat(filepath.Join(daemon.TUFDir(d.Dir), "root.json")); err != nil {
		t.Errorf("%s: TUF root: %v", d.Serial, err)
	}
	if n := len(records(t, f.ledger, d.Serial, ledger.Provisioned)); n != 1 {
		t.Errorf("%s: %d provisioned ledger records, want 1", d.Serial, n)
	}
	for i := 0; d.Reboots.Load() == 0 && i < 50; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if d.Reboots.Load() == 0 {
		t.Errorf("%s: not rebooted", d.Serial)
	}
}

func TestProvisionTwoInParallel(t *testing.T) {
	f := newFixture(t)
	a, b := flashtest.NewDevice(t, "0000a1"), flashtest.NewDevice(t, "0000b2")
	a.Start()
	b.Start()
	s := f.station(t, func(c *station.Config) { c.Slots = []string{"A", "B"} })
	var lines atomic.Int64
	res := s.Run(context.Background(), []string{a.Port, b.Port}, func(station.Progress) { lines.Add(1) })
	checkProvisioned(t, f, a, res[0], "A", "B")
	checkProvisioned(t, f, b, res[1], "A", "B")
	if lines.Load() == 0 {
		t.Error("no progress")
	}
	// Again: already provisioned, nothing new in the ledger.
	res = s.Run(context.Background(), []string{a.Port}, nil)
	if res[0].Outcome != station.AlreadyProvisioned {
		t.Fatalf("second run: %+v", res[0])
	}
	if n := len(records(t, f.ledger, a.Serial, "")); n != 1 {
		t.Errorf("%d ledger records after a rerun on a provisioned device, want 1", n)
	}
	// Another identity for the same serial is refused by the ledger.
	s2 := f.station(t, func(c *station.Config) { c.IDTemplate = "other-{serial}" })
	res = s2.Run(context.Background(), []string{a.Port}, nil)
	if res[0].Outcome != ledger.Refused || res[0].Code != station.CodeIdentity {
		t.Fatalf("second identity: %+v", res[0])
	}
	if n := len(records(t, f.ledger, a.Serial, ledger.Provisioned)); n != 1 {
		t.Errorf("%d provisioned records after a refused second identity, want 1", n)
	}
}

func TestNoiseOnTheLine(t *testing.T) {
	f := newFixture(t)
	d := flashtest.NewDevice(t, "0000c3")
	d.Noise = true
	d.Start()
	res := f.station(t, nil).Run(context.Background(), []string{d.Port}, nil)
	checkProvisioned(t, f, d, res[0], "A")
	if !d.Blank("B") {
		t.Error("slot B written though only A was asked for")
	}
}

func TestCablePullResumes(t *testing.T) {
	f := newFixture(t)
	d := flashtest.NewDevice(t, "0000d4")
	d.Start()
	f.throttle.Store(1 << 20) // the 3 MiB image takes about 3 s
	s := f.station(t, nil)
	ctx, pull := context.WithCancel(context.Background())
	res := s.Run(ctx, []string{d.Port}, func(p station.Progress) {
		if p.Step == "download" && p.Done > 0 {
			pull() // the cable comes out mid-image
		}
	})
	if res[0].Outcome != ledger.Failed {
		t.Fatalf("cable pulled: %+v", res[0])
	}
	f.throttle.Store(0)
	res = s.Run(context.Background(), []string{d.Port}, nil)
	checkProvisioned(t, f, d, res[0], "A")
	if n := len(records(t, f.ledger, d.Serial, ledger.Failed)); n != 1 {
		t.Errorf("%d failed records, want 1 (the pulled cable)", n)
	}
}

func TestPowerCutMidImageResumes(t *testing.T) {
	f := newFixture(t)
	d := flashtest.NewDevice(t, "0000e5")
	d.Start()
	f.throttle.Store(1 << 20)
	s := f.station(t, nil)
	var cut atomic.Bool
	off := make(chan struct{})
	res := s.Run(context.Background(), []string{d.Port}, func(p station.Progress) {
		if p.Step == "download" && p.Done > 1<<20 && !cut.Swap(true) {
			go func() { d.Stop(); close(off) }() // power cut
		}
	})
	<-off
	if res[0].Good() {
		t.Fatalf("power cut: %+v", res[0])
	}
	st, err := provision.ReadState(d.Dir)
	if err != nil || st.Provisioned() || st.Offset == 0 {
		t.Fatalf("after the cut (%+v): state %+v %v (want a download offset kept)", res[0], st, err)
	}
	served := f.served.Load()
	f.throttle.Store(0)
	d.Start()
	res = s.Run(context.Background(), []string{d.Port}, nil)
	checkProvisioned(t, f, d, res[0], "A")
	if again := f.served.Load() - served; again >= int64(len(f.image)) {
		t.Errorf("rerun fetched %d bytes of a %d-byte image: no resume", again, len(f.image))
	}
}

func TestWrongBoardAndTamperedImage(t *testing.T) {
	f := newFixture(t)
	f.repo.Publish(t, agenttest.Release{Name: "rpi-1", Sequence: 2, Boards: []string{"raspberrypi4-64"}, Image: f.image})
	f.repo.Publish(t, agenttest.Release{Name: "tampered-1", Sequence: 3, Boards: []string{flashtest.BoardName}, Image: agenttest.Image("t", true, 1<<20)})
	// Tamper with the published image bytes behind TUF's back (once:
	// the two digest names are links to one file).
	done := false
	filepath.WalkDir(f.repo.TargetsDir(), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !done && !e.IsDir() && strings.Contains(p, "tampered-1") && strings.Contains(filepath.Base(p), "rootfs") {
			done = true
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o644)
		}
		return nil
	})
	for _, tt := range []struct{ release, code string }{
		{"rpi-1", provision.CodeWrongBoard},
		{"tampered-1", provision.CodeUntrusted},
	} {
		d := flashtest.NewDevice(t, "0000f-"+tt.release)
		d.Start()
		s := f.station(t, func(c *station.Config) { c.Release = tt.release; c.IDTemplate = "sim-{serial}" })
		res := s.Run(context.Background(), []string{d.Port}, nil)
		if res[0].Outcome != ledger.Failed || res[0].Code != tt.code {
			t.Errorf("%s: %+v, want failed with %s", tt.release, res[0], tt.code)
		}
		if !d.Blank("A") {
			t.Errorf("%s: slot A written", tt.release)
		}
		if st, _ := provision.ReadState(d.Dir); st.Provisioned() {
			t.Errorf("%s: device marked provisioned", tt.release)
		}
		if n := len(records(t, f.ledger, d.Serial, ledger.Provisioned)); n != 0 {
			t.Errorf("%s: %d provisioned records", tt.release, n)
		}
	}
}

func TestPortsAndCA(t *testing.T) {
	f := newFixture(t)
	d := flashtest.NewDevice(t, "000107")
	d.Start()
	// The same port twice (two stations on one cable), and a port that
	// is gone.
	s := f.station(t, nil)
	res := s.Run(context.Background(), []string{d.Port, d.Port, "/dev/pts/999999"}, nil)
	good, busy := 0, 0
	for _, r := range res[:2] {
		switch {
		case r.Good():
			good++
		case r.Code == station.CodePort:
			busy++
		default:
			t.Errorf("%+v", r)
		}
	}
	if good != 1 || busy != 1 {
		t.Errorf("one port twice: %d provisioned, %d busy; want 1 and 1: %+v", good, busy, res)
	}
	if r := res[2]; r.Outcome != ledger.Failed || r.Code != station.CodePort {
		t.Errorf("missing port: %+v", r)
	}
	// A CA without its key: the station refuses to start.
	os.Remove(filepath.Join(f.caDir, ca.KeyFile))
	_, err := station.New(station.Config{Release: f.release, RepoDir: f.repoDir(), CADir: f.caDir, ConfigTmpl: []byte(configTmpl), Ledger: f.ledger})
	if !errors.Is(err, ca.ErrNoCA) {
		t.Fatalf("missing CA key: err = %v, want ca.ErrNoCA", err)
	}
}
