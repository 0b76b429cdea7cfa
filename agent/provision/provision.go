package provision

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/transport/serialframe"
	"github.com/graft-dev/graft/tuf"
)

// Files the provisioning writes in the data directory.
const (
	KeyFile      = "device.key"    // the device's private key, 0600; never sent
	CertFile     = "device.crt"    // its certificate from the fleet CA
	BrokerCAFile = "broker-ca.crt" // the CA the broker's certificate chains to
	ConfigFile   = "agent.conf"    // the agent config (default ConfigPath)
)

// Facts are what a device says about itself in Hello.
type Facts struct {
	Compatible []string
	Serial     string
	MACs       []string
	Storage    uint64
}

// Options configure a Provisioner.
type Options struct {
	Board boards.Board // resolved against DataDir
	// BoardFile is the board definitions file the board came from, if
	// any: the installed config names it when its board is "auto".
	BoardFile string
	DataDir   string
	// ConfigPath is where the agent config goes; default DataDir/agent.conf.
	ConfigPath string
	Facts      Facts
	// Reboot boots the provisioned system; nil means reboot(2) (or the
	// board's "exit" reboot).
	Reboot func(ctx context.Context) error
	// Notify sends a progress event to the station (best effort).
	Notify func(Progress)
	Logger *slog.Logger
}

// Provisioner answers a station's requests on one device. Handle may be
// called from several goroutines: steps run one at a time, and an image
// step asked for again while it runs waits for the one in flight.
type Provisioner struct {
	o   Options
	mu  sync.Mutex // one step at a time
	job *imageJob  // the image step in flight or last finished
	jmu sync.Mutex
	wg  sync.WaitGroup // image jobs running
}

type imageJob struct {
	req  ImageRequest
	done chan struct{}
	resp *ImageResponse
	err  error
}

// New returns a Provisioner for the board and data directory in o.
func New(o Options) (*Provisioner, error) {
	if o.DataDir == "" {
		return nil, errors.New("provision: no data directory")
	}
	if o.ConfigPath == "" {
		o.ConfigPath = filepath.Join(o.DataDir, ConfigFile)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("provision: data dir: %w", err)
	}
	return &Provisioner{o: o}, nil
}

func remote(code string, format string, args ...any) error {
	return &serialframe.RemoteError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Handle is the serialframe.Handler of provisioning mode.
func (p *Provisioner) Handle(ctx context.Context, typ string, body []byte) (any, error) {
	decode := func(v any) error {
		if err := serialframe.Unmarshal(body, v); err != nil {
			return remote(CodeBadRequest, "%s: %v", typ, err)
		}
		return nil
	}
	switch typ {
	case TypeHello:
		return p.Hello()
	case TypeIdentity:
		var r IdentityRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return p.Identity(r)
	case TypeInstall:
		var r InstallRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return struct{}{}, p.Install(r)
	case TypeImage:
		var r ImageRequest
		if err := decode(&r); err != nil {
			return nil, err
		}
		return p.Image(ctx, r)
	case TypeFinish:
		return p.Finish()
	case TypeReboot:
		return p.Reboot(ctx)
	}
	return nil, remote(serialframe.CodeUnsupported, "unknown request %q", typ)
}

func (p *Provisioner) path(name string) string { return filepath.Join(p.o.DataDir, name) }

// Hello describes the device and how far its provisioning got.
func (p *Provisioner) Hello() (*Hello, error) {
	st, err := ReadState(p.o.DataDir)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	h := &Hello{
		Proto: Proto, Agent: daemon.Version(), Board: p.o.Board.Name, Arch: p.o.Board.Arch,
		Compatible: p.o.Facts.Compatible, Serial: p.o.Facts.Serial, MACs: p.o.Facts.MACs, Storage: p.o.Facts.Storage,
		Step: st.Step, ID: st.ID, CertSHA256: st.CertSHA256,
	}
	if st.Image != nil {
		h.Release = st.Image.Release
	}
	switch {
	case st.Provisioned():
		h.State = StateProvisioned
	case st.Step == "":
		h.State = StateBlank
	default:
		h.State = StateInProgress
	}
	return h, nil
}

// Identity assigns the device its ID and returns a certificate request
// for its key, generating the key the first time (or again when forced on
// a provisioned device, or when the ID changes).
func (p *Provisioner) Identity(r IdentityRequest) (*IdentityResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := identity.NewDevice(r.ID); err != nil {
		return nil, remote(CodeBadRequest, "device ID: %v", err)
	}
	st, err := ReadState(p.o.DataDir)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	if st.Step != "" && !r.Force && (st.Provisioned() || st.ID != r.ID) {
		if st.Provisioned() {
			return nil, remote(CodeProvisioned, "already provisioned as %s with release %s", st.ID, releaseOf(st))
		}
		return nil, remote(CodeProvisioned, "provisioning as %s is under way; force to change the ID to %s", st.ID, r.ID)
	}
	key, err := p.loadKey()
	if r.Force || st.ID != r.ID || errors.Is(err, fs.ErrNotExist) {
		if key, err = p.newKey(); err != nil {
			return nil, remote(CodeWrite, "%v", err)
		}
		os.Remove(p.path(CertFile))
		st = State{ID: r.ID, Step: StepIdentity}
		if err := writeState(p.o.DataDir, st); err != nil {
			return nil, remote(CodeWrite, "%v", err)
		}
	} else if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.ID}}, key)
	if err != nil {
		return nil, remote(CodeInternal, "certificate request: %v", err)
	}
	return &IdentityResponse{CSR: csr, CertSHA256: st.CertSHA256}, nil
}

func releaseOf(st State) string {
	if st.Image != nil {
		return st.Image.Release
	}
	return "(none)"
}

func (p *Provisioner) loadKey() (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(p.path(KeyFile))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", KeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ECDSA key", KeyFile)
	}
	return ek, nil
}

func (p *Provisioner) newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(p.path(KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

// Install checks and installs the certificate (it must carry the device's
// ID and key), the agent config (rendered for this device; the device
// points its TLS files and data directory at its own), the broker CA and
// the TUF root. Installing the same again is a no-op.
func (p *Provisioner) Install(r InstallRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := ReadState(p.o.DataDir)
	if err != nil {
		return remote(CodeInternal, "%v", err)
	}
	if stepIndex(st.Step) < stepIndex(StepIdentity) {
		return remote(CodeBadRequest, "install before identity")
	}
	if st.Provisioned() {
		return remote(CodeProvisioned, "already provisioned as %s", st.ID)
	}
	key, err := p.loadKey()
	if err != nil {
		return remote(CodeInternal, "device key: %v", err)
	}
	blk, _ := pem.Decode(r.Cert)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return remote(CodeBadRequest, "certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return remote(CodeBadRequest, "certificate: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return remote(CodeMismatch, "certificate is for another key than this device's")
	}
	id, err := identity.FromCertificate(cert)
	if err != nil || id.Kind != identity.Device || id.Name != st.ID {
		return remote(CodeMismatch, "certificate names %v, this device is %s (%v)", id, st.ID, err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(r.BrokerCA) {
		return remote(CodeBadRequest, "broker CA: no PEM certificate")
	}
	cfg, err := config.Parse(bytes.NewReader(r.Config), "agent.conf from the station")
	if err != nil {
		return remote(CodeBadRequest, "%v", err)
	}
	cfg.DeviceID = st.ID
	cfg.DataDir = p.o.DataDir
	if cfg.Board == config.BoardAuto && p.o.BoardFile != "" {
		cfg.Board, cfg.BoardFile = p.o.Board.Name, p.o.BoardFile
	}
	cfg.CertFile, cfg.KeyFile, cfg.CAFile = p.path(CertFile), p.path(KeyFile), p.path(BrokerCAFile)
	conf, err := cfg.Encode()
	if err != nil {
		return remote(CodeBadRequest, "config: %v", err)
	}
	err = tuf.Init(daemon.TUFDir(p.o.DataDir), r.TUFRoot)
	if errors.Is(err, tuf.ErrRootExists) {
		// A root from an earlier try: the station's is the one to trust.
		if err = os.Remove(filepath.Join(daemon.TUFDir(p.o.DataDir), "root.json")); err == nil {
			err = tuf.Init(daemon.TUFDir(p.o.DataDir), r.TUFRoot)
		}
	}
	if err != nil {
		return remote(CodeUntrusted, "TUF root: %v", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{p.path(CertFile), r.Cert, 0o644},
		{p.path(BrokerCAFile), r.BrokerCA, 0o644},
		{p.o.ConfigPath, conf, 0o644},
	} {
		if err := atomicfile.WriteFile(f.path, f.data, f.perm); err != nil {
			return remote(CodeWrite, "%v", err)
		}
	}
	sum := sha256.Sum256(cert.Raw)
	st.CertSHA256 = sum[:]
	if stepIndex(st.Step) < stepIndex(StepInstall) {
		st.Step = StepInstall
	}
	if err := writeState(p.o.DataDir, st); err != nil {
		return remote(CodeWrite, "%v", err)
	}
	return nil
}

// Image fetches the release through TUF and writes it to the slots. A
// repeated request while one runs waits for it; a request after a failure
// resumes the download where it stopped.
func (p *Provisioner) Image(ctx context.Context, r ImageRequest) (*ImageResponse, error) {
	if len(r.Slots) == 0 {
		r.Slots = []string{"A"}
	}
	p.jmu.Lock()
	j := p.job
	if j == nil || !sameImage(j.req, r) || finished(j) && j.err != nil {
		j = &imageJob{req: r, done: make(chan struct{})}
		p.job = j
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(j.done)
			j.resp, j.err = p.image(ctx, r)
		}()
	}
	p.jmu.Unlock()
	select {
	case <-j.done:
		return j.resp, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func finished(j *imageJob) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

func sameImage(a, b ImageRequest) bool {
	return a.Release == b.Release && a.MetadataURL == b.MetadataURL && a.TargetsURL == b.TargetsURL && slices.Equal(a.Slots, b.Slots)
}

func (p *Provisioner) notify(step string, done, total int64) {
	if p.o.Notify != nil {
		p.o.Notify(Progress{Step: step, Done: done, Total: total})
	}
}

func (p *Provisioner) image(ctx context.Context, r ImageRequest) (*ImageResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	st, err := ReadState(p.o.DataDir)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	if stepIndex(st.Step) < stepIndex(StepInstall) {
		return nil, remote(CodeBadRequest, "image before install")
	}
	if st.Image != nil && st.Image.Release == r.Release && slices.Equal(st.Image.Slots, r.Slots) && stepIndex(st.Step) >= stepIndex(StepImage) {
		done := *st.Image
		done.Fetched, done.Millis = 0, 0
		return &done, nil // written and read back already
	}
	if st.Provisioned() {
		return nil, remote(CodeProvisioned, "already provisioned as %s", st.ID)
	}
	for _, u := range []string{r.MetadataURL, r.TargetsURL} {
		if _, err := url.Parse(u); err != nil || u == "" {
			return nil, remote(CodeBadRequest, "repository URL %q", u)
		}
	}
	cfg, err := config.Load(p.o.ConfigPath)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	client, err := daemon.NewTUF(p.o.DataDir, r.MetadataURL, r.TargetsURL, 0, p.o.Logger)
	if err != nil {
		return nil, remote(CodeUntrusted, "%v", err)
	}
	p.notify("metadata", 0, 0)
	if err := client.Refresh(ctx); err != nil {
		return nil, tufError("TUF refresh", err)
	}
	mt := path.Join("releases", r.Release, "manifest.cbor")
	raw, err := client.ReadTarget(ctx, mt, manifest.MaxSize)
	if err != nil {
		return nil, tufError("manifest "+mt, err)
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		return nil, remote(CodeUntrusted, "manifest %s: %v", mt, err)
	}
	err = manifest.Check(m, manifest.Device{Board: p.o.Board.Name, Arch: p.o.Board.Arch, DeviceClass: cfg.Class(p.o.Board.Name), AgentVersion: daemon.Version()})
	switch {
	case errors.Is(err, manifest.ErrWrongBoard), errors.Is(err, manifest.ErrWrongArch), errors.Is(err, manifest.ErrWrongClass):
		return nil, remote(CodeWrongBoard, "release %s: %v (this is a %s, %s)", r.Release, err, p.o.Board.Name, p.o.Board.Arch)
	case err != nil:
		return nil, remote(CodeBadRequest, "release %s: %v", r.Release, err)
	}
	var img *manifest.Image
	for _, im := range m.Images() {
		if _, err := p.o.Board.Group(im.SlotGroup); err == nil {
			img = im
			break
		}
	}
	if img == nil {
		return nil, remote(CodeWrongBoard, "release %s has no image for this board's slots", r.Release)
	}
	g, err := p.o.Board.Group(img.SlotGroup)
	if err != nil {
		return nil, remote(CodeWrongBoard, "%v", err)
	}
	var devs []string
	for _, s := range r.Slots {
		i := slices.IndexFunc(g.Slots, func(x boards.Slot) bool { return x.Name == s })
		if i < 0 {
			return nil, remote(CodeBadRequest, "board %s has no slot %q in %s", p.o.Board.Name, s, g.Name)
		}
		devs = append(devs, g.Slots[i].Device)
	}

	// Download: resume what an earlier try (or a power cut) left.
	if st.Release != r.Release || st.Staging == "" {
		st.Release, st.Offset = r.Release, 0
		st.Staging = filepath.Join(p.o.DataDir, "staging", "provision-"+url.PathEscape(img.Target))
	}
	st.Image = nil
	if err := writeState(p.o.DataDir, st); err != nil {
		return nil, remote(CodeWrite, "%v", err)
	}
	if err := os.MkdirAll(filepath.Dir(st.Staging), 0o700); err != nil {
		return nil, remote(CodeWrite, "%v", err)
	}
	startOff := st.Offset
	var got int64
	staged, err := client.Download(ctx, img.Target, tuf.DownloadOptions{
		Dest: st.Staging, Offset: st.Offset,
		Checkpoint: func(off int64) error {
			st.Offset = off
			return writeState(p.o.DataDir, st)
		},
		Progress: func(done, total int64) {
			got = done
			p.notify("download", done, total)
		},
	})
	if err != nil {
		return nil, tufError("image "+img.Target, err)
	}
	fetched := max(got-startOff, 0)

	// Write and read back every slot asked for.
	for i, dev := range devs {
		f, err := os.Open(staged)
		if err != nil {
			return nil, remote(CodeWrite, "staged image: %v", err)
		}
		step := "write " + r.Slots[i]
		err = slot.Install(ctx, dev, f, slot.Image{Size: int64(img.Size), SHA256: img.SHA256, Compression: slot.Compression(img.Compression.String())},
			func(w, t int64) { p.notify(step, w, t) })
		f.Close()
		switch {
		case errors.Is(err, slot.ErrHashMismatch), errors.Is(err, slot.ErrDecompress), errors.Is(err, slot.ErrSize):
			return nil, remote(CodeUntrusted, "slot %s: %v", r.Slots[i], err)
		case err != nil:
			return nil, remote(CodeWrite, "slot %s: %v", r.Slots[i], err)
		}
	}
	os.Remove(staged)
	st.Staging, st.Offset = "", 0
	st.Image = &ImageResponse{Release: m.Name, Version: m.Version, Sequence: m.Sequence, SHA256: img.SHA256, Size: img.Size, Slots: r.Slots}
	st.Step = StepImage
	if err := writeState(p.o.DataDir, st); err != nil {
		return nil, remote(CodeWrite, "%v", err)
	}
	resp := *st.Image
	resp.Fetched, resp.Millis = fetched, time.Since(start).Milliseconds()
	return &resp, nil
}

func tufError(what string, err error) error {
	switch {
	case errors.Is(err, tuf.ErrTransfer):
		return remote(CodeTransfer, "%s: %v", what, err)
	case errors.Is(err, tuf.ErrHash), errors.Is(err, tuf.ErrLength), errors.Is(err, tuf.ErrSignature),
		errors.Is(err, tuf.ErrExpired), errors.Is(err, tuf.ErrRollback), errors.Is(err, tuf.ErrMalformed),
		errors.Is(err, tuf.ErrUnknownTarget), errors.Is(err, tuf.ErrUntrustedRootFile):
		return remote(CodeUntrusted, "%s: %v", what, err)
	}
	return remote(CodeInternal, "%s: %v", what, err)
}

// Finish writes the boot state (the written slots good, slot A first),
// reads it back, records the release in the agent's journal and marks the
// device provisioned.
func (p *Provisioner) Finish() (*FinishResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := ReadState(p.o.DataDir)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	if stepIndex(st.Step) < stepIndex(StepImage) || st.Image == nil {
		return nil, remote(CodeBadRequest, "finish before image")
	}
	env, err := p.writeBootEnv(st.Image.Slots)
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(daemon.JournalPath(p.o.DataDir))
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	rec := j.Record()
	rec.Installed = journal.Release{Name: st.Image.Release, Version: st.Image.Version, Sequence: st.Image.Sequence, Slot: st.Image.Slots[0]}
	rec.Update, rec.Last = nil, nil
	if err := j.Save(rec); err != nil {
		return nil, remote(CodeWrite, "%v", err)
	}
	if !st.Provisioned() {
		st.Step = StepFinish
		if err := writeState(p.o.DataDir, st); err != nil {
			return nil, remote(CodeWrite, "%v", err)
		}
	}
	return &FinishResponse{ID: st.ID, Release: st.Image.Release, CertSHA256: st.CertSHA256, BootEnv: env}, nil
}

// writeBootEnv sets the RAUC boot state — BOOT_ORDER with the written
// slots first, their counters full, the others empty — keeping the rest
// of a valid environment, saves it (every copy the board has) and reads it
// back.
func (p *Provisioner) writeBootEnv(written []string) (map[string]string, error) {
	store, err := daemon.OpenEnv(p.o.Board)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	env, err := store.Load()
	if err != nil {
		env = bootenv.Env{} // blank or foreign: start afresh
	}
	names := p.o.Board.SlotNames()
	order := slices.Clone(written)
	for _, n := range names {
		if !slices.Contains(order, n) {
			order = append(order, n)
		}
	}
	s := slot.State{Order: order, Left: map[string]int{}}
	for _, n := range names {
		if slices.Contains(written, n) {
			s.Left[n] = p.o.Board.Bootloader.Attempts
		} else {
			s.Left[n] = 0
		}
	}
	s.Apply(env)
	copies := 1
	if r, ok := store.(interface{ Redundant() bool }); ok && r.Redundant() {
		copies = 2 // each save writes the older copy: write both
	}
	for range copies {
		if err := store.Save(env); err != nil {
			return nil, remote(CodeWrite, "boot environment: %v", err)
		}
	}
	back, err := store.Load()
	if err != nil {
		return nil, remote(CodeWrite, "boot environment read back: %v", err)
	}
	got, err := slot.ParseState(back, names)
	if err != nil || got.String() != s.String() {
		return nil, remote(CodeWrite, "boot environment read back as %v, wrote %v (%v)", got, s, err)
	}
	out := map[string]string{}
	for k, v := range back {
		if k == "BOOT_ORDER" || slices.ContainsFunc(names, func(n string) bool { return k == slot.LeftVar(n) }) {
			out[k] = v
		}
	}
	return out, nil
}

// Reboot answers, then boots the provisioned system shortly after (so the
// answer leaves first). It refuses a device that is not provisioned.
func (p *Provisioner) Reboot(ctx context.Context) (any, error) {
	st, err := ReadState(p.o.DataDir)
	if err != nil {
		return nil, remote(CodeInternal, "%v", err)
	}
	if !st.Provisioned() {
		return nil, remote(CodeBadRequest, "not provisioned: no reboot")
	}
	reboot := p.o.Reboot
	if reboot == nil {
		reboot = func(ctx context.Context) error { return daemon.RebootBoard(ctx, p.o.Board) }
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		if err := reboot(context.WithoutCancel(ctx)); err != nil {
			p.o.Logger.Error("reboot", "err", err)
		}
	}()
	return struct{}{}, nil
}

var _ serialframe.Handler = (*Provisioner)(nil).Handle
