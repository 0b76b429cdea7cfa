package station

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/graft-dev/graft/agent/provision"
	"github.com/graft-dev/graft/tools/flash/ledger"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport/identity"
	"github.com/graft-dev/graft/transport/serialframe"
	"github.com/graft-dev/graft/tuf/repo"
)

// Errors of New.
var (
	ErrConfig = errors.New("station: bad configuration")
)

// Config is what a station needs; New checks it before any device is
// touched.
type Config struct {
	Release    string   // release name in the repository
	RepoDir    string   // TUF repository (graft-fleet repo) holding the release
	CADir      string   // fleet CA directory (ca.crt and ca.key)
	ConfigTmpl []byte   // agent.conf template: {id} {serial} {board} {mac} {repo_url}
	IDTemplate string   // device ID template, default "{board}-{serial}"
	BrokerCA   []byte   // PEM; default the fleet CA certificate
	Slots      []string // slots to write, default A
	Force      bool     // provision again a device or serial already provisioned
	Station    string   // this station's name in the ledger; default the host name
	Baud       int      // default 115200

	// Listen is where the repository server listens (default
	// 127.0.0.1:0); RepoURL is how devices reach it (default
	// http://LISTEN).
	Listen, RepoURL string

	// HelloWait bounds the wait for a device to answer (it may still be
	// booting); default 60s. StepTimeout bounds each step; default 30m.
	HelloWait, StepTimeout time.Duration
	// Retry is the resend interval of unanswered requests; default 1s.
	Retry time.Duration

	// WrapRepo, when set, wraps the repository server's handler (tests
	// shape or cut the traffic with it).
	WrapRepo func(http.Handler) http.Handler

	Ledger *ledger.Ledger
	Logger *slog.Logger
}

// Station provisions devices.
type Station struct {
	c       Config
	ca      *ca.CA
	root    []byte
	srv     *http.Server
	ln      net.Listener
	repoURL string
}

// New checks the configuration — the CA (its key must be there), the
// repository and its root, the release's manifest, the templates — and
// starts the repository server.
func New(c Config) (*Station, error) {
	if c.Release == "" || c.RepoDir == "" || c.CADir == "" || c.Ledger == nil {
		return nil, fmt.Errorf("%w: release, repository, CA and ledger are required", ErrConfig)
	}
	if c.IDTemplate == "" {
		c.IDTemplate = "{board}-{serial}"
	}
	if len(c.Slots) == 0 {
		c.Slots = []string{"A"}
	}
	if c.Baud == 0 {
		c.Baud = 115200
	}
	if c.HelloWait == 0 {
		c.HelloWait = 60 * time.Second
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = 30 * time.Minute
	}
	if c.Retry == 0 {
		c.Retry = time.Second
	}
	if c.Station == "" {
		c.Station, _ = os.Hostname()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	authority, err := ca.Open(c.CADir, ca.Options{})
	if err != nil {
		return nil, fmt.Errorf("station: fleet CA %s: %w", c.CADir, err)
	}
	if c.BrokerCA == nil {
		c.BrokerCA, err = os.ReadFile(filepath.Join(c.CADir, ca.CertFile))
		if err != nil {
			return nil, fmt.Errorf("station: %w", err)
		}
	}
	r, err := repo.OpenReadOnly(c.RepoDir)
	if err != nil {
		return nil, fmt.Errorf("station: repository: %w", err)
	}
	root, err := r.Root()
	if err != nil {
		return nil, fmt.Errorf("station: repository: %w", err)
	}
	mt := "releases/" + c.Release + "/manifest.cbor"
	if !slices.ContainsFunc(r.Targets(), func(t repo.Target) bool { return t.Name == mt }) {
		return nil, fmt.Errorf("%w: release %q is not in the repository %s (no target %s)", ErrConfig, c.Release, c.RepoDir, mt)
	}
	if _, err := expand(c.IDTemplate, vars{Serial: "0", Board: "b", MAC: "m"}); err != nil {
		return nil, fmt.Errorf("%w: --id-template: %w", ErrConfig, err)
	}
	if len(c.ConfigTmpl) == 0 {
		return nil, fmt.Errorf("%w: no agent config template", ErrConfig)
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("station: repository server: %w", err)
	}
	s := &Station{c: c, ca: authority, root: root, ln: ln, repoURL: c.RepoURL}
	if s.repoURL == "" {
		s.repoURL = "http://" + ln.Addr().String()
	}
	s.repoURL = strings.TrimSuffix(s.repoURL, "/")
	// The fleet's own repository handler: files only, never out of the
	// trees, never a private key.
	h := serve.Handler(r.MetadataDir(), r.TargetsDir())
	if c.WrapRepo != nil {
		h = c.WrapRepo(h)
	}
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

// RepoURL is the repository server's URL as devices see it.
func (s *Station) RepoURL() string { return s.repoURL }

// Close stops the repository server.
func (s *Station) Close() error { return s.srv.Close() }

// Result is how one device's provisioning ended.
type Result struct {
	Port       string `json:"port"`
	Outcome    string `json:"outcome"` // ledger.Provisioned, Failed or Refused, or "already-provisioned"
	Code       string `json:"code,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Step       string `json:"step,omitempty"` // the step that failed
	ID         string `json:"id,omitempty"`
	Serial     string `json:"soc_serial,omitempty"`
	Board      string `json:"board,omitempty"`
	MAC        string `json:"mac,omitempty"`
	Release    string `json:"release,omitempty"`
	CertSHA256 string `json:"cert_sha256,omitempty"`
	// ControlMillis is time spent on serial control (everything but the
	// image step); ImageMillis the image step (fetch over the network,
	// write, read back); ImageBytes what the device fetched.
	ControlMillis int64 `json:"control_ms"`
	ImageMillis   int64 `json:"image_ms"`
	ImageBytes    int64 `json:"image_bytes"`
}

// AlreadyProvisioned is Result.Outcome for a device that was provisioned
// before this run (and is recorded in the ledger).
const AlreadyProvisioned = "already-provisioned"

// Good reports whether the device is provisioned.
func (r Result) Good() bool {
	return r.Outcome == ledger.Provisioned || r.Outcome == AlreadyProvisioned
}

// Progress is one device's progress line.
type Progress struct {
	Port  string
	Step  string
	Done  int64
	Total int64
	Note  string
}

// Run provisions the devices on ports in parallel and returns one Result
// per port, in order.
func (s *Station) Run(ctx context.Context, ports []string, progress func(Progress)) []Result {
	res := make([]Result, len(ports))
	var wg sync.WaitGroup
	for i, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = s.Provision(ctx, p, progress)
		}()
	}
	wg.Wait()
	return res
}

// Provision provisions the device on one port.
func (s *Station) Provision(ctx context.Context, port string, progress func(Progress)) Result {
	if progress == nil {
		progress = func(Progress) {}
	}
	start := time.Now()
	r := Result{Port: port}
	res := s.provision(ctx, port, &r, progress)
	r.ControlMillis = time.Since(start).Milliseconds() - r.ImageMillis
	if res != nil {
		r.Outcome, r.Reason = res.outcome, res.reason
		if r.Code == "" {
			r.Code = res.code
		}
	}
	note := r.Outcome
	if r.Reason != "" {
		note += ": " + r.Reason
	}
	progress(Progress{Port: port, Step: "done", Note: note})
	if r.Outcome != ledger.Provisioned && r.Outcome != AlreadyProvisioned || r.Outcome == AlreadyProvisioned && res.record {
		rec := ledger.Record{Station: s.c.Station, Port: port, ID: r.ID, Serial: r.Serial, Board: r.Board, MAC: r.MAC,
			CertSHA256: r.CertSHA256, Release: r.Release, Outcome: r.Outcome, Reason: r.Reason, Forced: s.c.Force}
		if r.Outcome == AlreadyProvisioned {
			rec.Outcome = ledger.Provisioned
		} else if r.Step != "" {
			rec.Reason = r.Step + ": " + r.Reason
		}
		if _, err := s.c.Ledger.Append(context.WithoutCancel(ctx), rec); err != nil {
			s.c.Logger.Error("ledger", "port", port, "err", err)
			r.Reason += fmt.Sprintf(" (ledger: %v)", err)
		}
	}
	return r
}

type ending struct {
	outcome, code, reason string
	record                bool
}

func failed(code, format string, args ...any) *ending {
	return &ending{outcome: ledger.Failed, code: code, reason: fmt.Sprintf(format, args...)}
}

// Result codes the station itself gives (the device's are provision.Code*).
const (
	CodePort       = "port"      // the port could not be opened (busy, missing)
	CodeNoAnswer   = "no-answer" // the device did not answer hello
	CodeLineLost   = "line-lost" // the line failed mid-step: rerun resumes
	CodeIdentity   = "identity"  // the ledger holds another identity for this serial
	CodeProtocol   = "protocol"  // the device speaks another protocol version
	CodeStationErr = "station"   // the station itself failed (CA, template)
)

func (s *Station) provision(ctx context.Context, port string, r *Result, progress func(Progress)) *ending {
	progress(Progress{Port: port, Step: "open"})
	p, err := serial.Open(port, &serial.Mode{BaudRate: s.c.Baud})
	if err != nil {
		return failed(CodePort, "%s", portError(err))
	}
	defer p.Close()
	unlock, err := lockPort(port)
	if err != nil {
		return failed(CodePort, "%v", err)
	}
	defer unlock()
	p.SetReadTimeout(100 * time.Millisecond)
	peer := serialframe.NewPeer(p, serialframe.Options{
		Retry:  s.c.Retry,
		Logger: s.c.Logger,
		OnEvent: func(m serialframe.Message) {
			var pr provision.Progress
			if m.Type == provision.TypeProgress && serialframe.Unmarshal(m.Body, &pr) == nil {
				progress(Progress{Port: port, Step: pr.Step, Done: pr.Done, Total: pr.Total})
			}
		},
		OnText: func(line []byte) { s.c.Logger.Debug("console", "port", port, "line", string(line)) },
	})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	runDone := make(chan struct{})
	go func() { defer close(runDone); peer.Run(rctx) }()
	defer func() { stop(); p.Close(); <-runDone }()

	step := func(name string, timeout time.Duration, req, resp any) error {
		r.Step = name
		progress(Progress{Port: port, Step: name})
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return peer.Call(cctx, name, req, resp)
	}
	var hello provision.Hello
	if err := step(provision.TypeHello, s.c.HelloWait, nil, &hello); err != nil {
		return s.callError(err, "no answer from a device in provisioning mode")
	}
	r.Serial, r.Board = hello.Serial, hello.Board
	if len(hello.MACs) > 0 {
		r.MAC = hello.MACs[0]
	}
	if hello.Proto != provision.Proto {
		return failed(CodeProtocol, "device speaks provisioning protocol %d, this station %d", hello.Proto, provision.Proto)
	}
	if hello.Serial == "" {
		return failed(CodeProtocol, "device reports no SoC serial")
	}
	id, err := expand(s.c.IDTemplate, vars{Serial: hello.Serial, Board: hello.Board, MAC: r.MAC})
	if err == nil {
		_, err = identity.NewDevice(id)
	}
	if err != nil {
		return &ending{outcome: ledger.Refused, code: CodeIdentity, reason: fmt.Sprintf("device ID from %q: %v", s.c.IDTemplate, err)}
	}
	r.ID = id
	prev, known, err := s.c.Ledger.Identity(ctx, hello.Serial)
	if err != nil {
		return failed(CodeStationErr, "%v", err)
	}
	if known && prev.ID != id && !s.c.Force {
		return &ending{outcome: ledger.Refused, code: CodeIdentity, reason: fmt.Sprintf("SoC serial %s is already %s in the ledger (%s); --force to give it a new identity", hello.Serial, prev.ID, prev.Time.Format(time.RFC3339))}
	}
	if hello.State == provision.StateProvisioned && !s.c.Force {
		r.ID, r.Release, r.CertSHA256 = hello.ID, hello.Release, hex.EncodeToString(hello.CertSHA256)
		e := &ending{outcome: AlreadyProvisioned, code: provision.CodeProvisioned, reason: fmt.Sprintf("already provisioned as %s with %s", hello.ID, hello.Release)}
		e.record = !known || prev.ID != hello.ID || prev.CertSHA256 != r.CertSHA256
		return e
	}

	vs := vars{ID: id, Serial: hello.Serial, Board: hello.Board, MAC: r.MAC, RepoURL: s.repoURL}
	resume := hello.State == provision.StateInProgress && hello.ID == id && !s.c.Force &&
		(hello.Step == provision.StepInstall || hello.Step == provision.StepImage)
	if resume {
		r.CertSHA256 = hex.EncodeToString(hello.CertSHA256)
	} else {
		var ir provision.IdentityResponse
		if err := step(provision.TypeIdentity, time.Minute, provision.IdentityRequest{ID: id, Force: s.c.Force}, &ir); err != nil {
			return s.callError(err, "")
		}
		dev, _ := identity.NewDevice(id)
		iss, err := s.ca.IssueCSR(dev, ir.CSR, 0)
		if err != nil {
			return failed(CodeStationErr, "signing the device's request: %v", err)
		}
		sum := sha256.Sum256(iss.Cert.Raw)
		r.CertSHA256 = hex.EncodeToString(sum[:])
		conf, err := expand(string(s.c.ConfigTmpl), vs)
		if err != nil {
			return failed(CodeStationErr, "config template: %v", err)
		}
		if err := step(provision.TypeInstall, time.Minute, provision.InstallRequest{Cert: iss.CertPEM, Config: []byte(conf), BrokerCA: s.c.BrokerCA, TUFRoot: s.root}, nil); err != nil {
			return s.callError(err, "")
		}
	}
	t0 := time.Now()
	var img provision.ImageResponse
	err = step(provision.TypeImage, s.c.StepTimeout, provision.ImageRequest{
		Release: s.c.Release, MetadataURL: s.repoURL + "/metadata", TargetsURL: s.repoURL + "/targets", Slots: s.c.Slots,
	}, &img)
	r.ImageMillis = time.Since(t0).Milliseconds()
	if err != nil {
		return s.callError(err, "")
	}
	r.Release, r.ImageBytes = img.Release, img.Fetched
	var fin provision.FinishResponse
	if err := step(provision.TypeFinish, time.Minute, nil, &fin); err != nil {
		return s.callError(err, "")
	}
	if fin.ID != id || fin.Release != s.c.Release || !bytes.Equal(fin.CertSHA256, mustHex(r.CertSHA256)) {
		return failed(CodeProtocol, "device finished as %s with %s, certificate %x; expected %s with %s, certificate %s", fin.ID, fin.Release, fin.CertSHA256, id, s.c.Release, r.CertSHA256)
	}
	rec := ledger.Record{Station: s.c.Station, Port: port, ID: id, Serial: hello.Serial, Board: hello.Board, MAC: r.MAC,
		CertSHA256: r.CertSHA256, Release: fin.Release, Outcome: ledger.Provisioned, Forced: s.c.Force,
		Reason: fmt.Sprintf("slots %s, boot order %s", strings.Join(img.Slots, ","), fin.BootEnv["BOOT_ORDER"])}
	if _, err := s.c.Ledger.Append(ctx, rec); err != nil {
		return &ending{outcome: ledger.Refused, code: CodeIdentity, reason: err.Error()}
	}
	if err := step(provision.TypeReboot, 10*time.Second, nil, nil); err != nil {
		s.c.Logger.Warn("reboot request", "port", port, "err", err)
	}
	r.Step = ""
	return &ending{outcome: ledger.Provisioned, reason: rec.Reason}
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

func (s *Station) callError(err error, quiet string) *ending {
	var re *serialframe.RemoteError
	switch {
	case errors.As(err, &re):
		e := failed(re.Code, "%s", re.Message)
		if re.Code == provision.CodeProvisioned {
			e.outcome = ledger.Refused
		}
		if re.Code == provision.CodeTransfer {
			e.reason += " (rerun resumes)"
		}
		return e
	case errors.Is(err, serialframe.ErrClosed):
		return failed(CodeLineLost, "serial line lost: %v (rerun resumes)", err)
	case errors.Is(err, context.DeadlineExceeded):
		if quiet != "" {
			return failed(CodeNoAnswer, "%s", quiet)
		}
		return failed(CodeNoAnswer, "device stopped answering: %v (rerun resumes)", err)
	}
	return failed(CodeLineLost, "%v", err)
}

func portError(err error) string {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortBusy:
			return "port busy (another program has it open)"
		case serial.PortNotFound:
			return "port not found (unplugged?)"
		case serial.PermissionDenied:
			return "permission denied on the port"
		}
	}
	return err.Error()
}

// vars fill the templates.
type vars struct {
	ID, Serial, Board, MAC, RepoURL string
}

// expand replaces {id}, {serial}, {board}, {mac} (colons dropped) and
// {repo_url} in t; any other {name} is an error.
func expand(t string, v vars) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			b.WriteString(t)
			return b.String(), nil
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("unclosed { in %q", t)
		}
		b.WriteString(t[:i])
		name := t[i+1 : i+j]
		switch name {
		case "id":
			b.WriteString(v.ID)
		case "serial":
			b.WriteString(v.Serial)
		case "board":
			b.WriteString(v.Board)
		case "mac":
			b.WriteString(strings.ReplaceAll(v.MAC, ":", ""))
		case "repo_url":
			b.WriteString(v.RepoURL)
		default:
			return "", fmt.Errorf("unknown placeholder {%s} (known: {id} {serial} {board} {mac} {repo_url})", name)
		}
		t = t[i+j+1:]
	}
}
