package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/eventseq"
	"github.com/graft-dev/graft/agent/health"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/klp"
	"github.com/graft-dev/graft/agent/memtrim"
	"github.com/graft-dev/graft/agent/outbox"
	"github.com/graft-dev/graft/agent/telemetry"
	"github.com/graft-dev/graft/agent/userpatch"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/transport/httpfetch"
	"github.com/graft-dev/graft/transport/mqtt"
	"github.com/graft-dev/graft/tuf"
)

// version is stamped by the build (-ldflags -X); otherwise it comes from
// the module's build info.
var version string

// Version is the agent's version.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// buildTime is stamped by the build (-ldflags -X …buildTime=RFC3339);
// otherwise it comes from the build info's vcs.time.
var buildTime string

// BuildTime is when the agent was built (its commit's time), or the zero
// time when the build does not say. The TUF client's time floor never
// goes below it: a device whose clock restarts at 1970 still refuses
// metadata that expired before its agent was built.
func BuildTime() time.Time {
	s := buildTime
	if s == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, kv := range bi.Settings {
				if kv.Key == "vcs.time" {
					s = kv.Value
				}
			}
		}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// suspectRetryMin is the first pause before a release that failed
// verification (engine.ErrRetry) is tried again.
var suspectRetryMin = 30 * time.Second

// ErrLocked means another graft-agent holds the state directory.
var ErrLocked = errors.New("state directory is in use by another graft-agent")

// Device is everything the agent needs on one device, opened from a config.
type Device struct {
	Config  *config.Config
	Board   boards.Board
	Journal *journal.Journal
	Env     bootenv.Store // nil on a live-only board
	TUF     *tuf.Client
	Machine *machine
	// NoReboot leaves the reboot to the operator (graft-agent install):
	// the engine stops at "reboot pending".
	NoReboot bool
	Logger   *slog.Logger
	// Faults found while opening that were repaired (a corrupt journal
	// moved aside): the daemon reports each as StateFault.
	Faults []string
	lock   *os.File

	// The live appliers, opened by Live.
	klp      *klp.Applier
	user     *userpatch.Applier
	liveOpen bool
}

// Compile-time checks: the appliers are the engine's.
var (
	_ engine.LiveApplier = (*klp.Applier)(nil)
	_ engine.LiveApplier = (*userpatch.Applier)(nil)
)

// Paths inside the data directory.
// IdleTrimDelay is how long the agent stays idle before it gives the
// kernel back its binary's clean pages (agent/memtrim).
var IdleTrimDelay = 10 * time.Second

func journalPath(dataDir string) string { return filepath.Join(dataDir, "journal.json") }
func tufDir(dataDir string) string      { return filepath.Join(dataDir, "tuf") }

// JournalPath is the agent's journal in the data directory.
func JournalPath(dataDir string) string { return journalPath(dataDir) }

// TUFDir is the TUF metadata directory (trusted root and cache) in the
// data directory.
func TUFDir(dataDir string) string     { return tufDir(dataDir) }
func stagingDir(dataDir string) string { return filepath.Join(dataDir, "staging") }
func outboxDir(dataDir string) string  { return filepath.Join(dataDir, "outbox") }

// KLPDir is where the kernel livepatch applier keeps its state and modules.
func KLPDir(dataDir string) string { return filepath.Join(dataDir, "klp") }

// LoadBoard returns the board the config names (or detects), resolved
// against the data directory.
func LoadBoard(cfg *config.Config) (boards.Board, error) {
	set := boards.Builtin()
	if cfg.BoardFile != "" {
		if err := set.LoadFile(cfg.BoardFile); err != nil {
			return boards.Board{}, err
		}
	}
	var b boards.Board
	var err error
	if cfg.Board == "" || cfg.Board == "auto" {
		b, err = detectBoard(set, boards.DefaultCompatiblePath, boards.DefaultOSReleasePath)
	} else {
		b, err = set.Lookup(cfg.Board)
	}
	if err != nil {
		return boards.Board{}, err
	}
	return b.WithDefaults().Resolve(cfg.DataDir), nil
}

// detectBoard finds the board from the device tree's compatible strings,
// and on a host no device tree identifies (no /proc/device-tree, as on
// x86-64 servers, or no board lists its strings) from os-release.
func detectBoard(set *boards.Set, compatPath, osReleasePath string) (boards.Board, error) {
	compat, cerr := boards.ReadCompatible(compatPath)
	if cerr == nil {
		b, err := set.Detect(compat)
		if !errors.Is(err, boards.ErrNoMatch) {
			return b, err
		}
		cerr = err
	} else if !errors.Is(cerr, fs.ErrNotExist) {
		return boards.Board{}, fmt.Errorf("board auto-detection: %w", cerr)
	}
	ids, err := boards.ReadOSRelease(osReleasePath)
	if err != nil {
		return boards.Board{}, fmt.Errorf("board auto-detection: %w; %w", cerr, err)
	}
	b, err := set.DetectOS(ids)
	if err != nil {
		return boards.Board{}, fmt.Errorf("board auto-detection: %w; %w", cerr, err)
	}
	return b, nil
}

// ErrNoBootEnv means the board has no bootloader environment: a
// live-only board (bootloader "none").
var ErrNoBootEnv = errors.New("no bootloader environment")

// OpenEnv opens the bootloader environment a board uses.
func OpenEnv(b boards.Board) (bootenv.Store, error) {
	switch b.Bootloader.Kind {
	case boards.BootloaderNone:
		return nil, fmt.Errorf("board %s is live-only (bootloader %q, no A/B slots): %w", b.Name, b.Bootloader.Kind, ErrNoBootEnv)
	case boards.BootloaderUBoot:
		if len(b.Bootloader.FWEnv) == 0 {
			return bootenv.OpenUBoot(b.Bootloader.FWEnvConfig)
		}
		var locs []bootenv.FWLocation
		for _, l := range b.Bootloader.FWEnv {
			locs = append(locs, bootenv.FWLocation{Device: l.Device, Offset: l.Offset, Size: l.Size, SectorSize: l.SectorSize})
		}
		return bootenv.NewUBoot(locs...)
	case boards.BootloaderGrub:
		return bootenv.OpenGrub(b.Bootloader.GrubEnv), nil
	}
	return nil, fmt.Errorf("board %s: bootloader %q unsupported", b.Name, b.Bootloader.Kind)
}

// Open opens the device's state. With lock set it takes the state-directory
// lock, so that a command line install and the daemon never run together.
func Open(cfg *config.Config, logger *slog.Logger, lock bool) (*Device, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := LoadBoard(cfg)
	if err != nil {
		return nil, err
	}
	if err := privateDir(cfg.DataDir); err != nil {
		return nil, err
	}
	d := &Device{Config: cfg, Board: b, Logger: logger, Machine: &machine{board: b}}
	if lock {
		f, err := os.OpenFile(filepath.Join(cfg.DataDir, "lock"), os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, fmt.Errorf("%w (%s)", ErrLocked, cfg.DataDir)
		}
		d.lock = f
	}
	if lock {
		// The owner of the state directory recovers a corrupt journal.
		var note string
		d.Journal, note, err = openJournal(journalPath(cfg.DataDir), logger)
		if note != "" {
			d.Faults = append(d.Faults, note)
		}
	} else {
		d.Journal, err = journal.Open(journalPath(cfg.DataDir))
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	if b.LiveOnly() {
		return d, nil // Env stays nil: no boot state to keep
	}
	if d.Env, err = OpenEnv(b); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// privateDir creates dir, or checks the one there is a directory, and
// makes it 0700: staging, the journal and the TUF cache are no one else's.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return nil
}

// OpenTUF opens the TUF client on the configured repository, or on a local
// directory repository when offlineDir is set.
func (d *Device) OpenTUF(offlineDir string) error {
	metadataURL, targetsURL := d.Config.MetadataURL, d.Config.TargetsURL
	if offlineDir != "" {
		metadataURL = filepath.Join(offlineDir, "metadata")
		targetsURL = filepath.Join(offlineDir, "targets")
	}
	client, err := NewTUF(d.Config.DataDir, metadataURL, targetsURL, d.Config.StallTimeout, d.Logger)
	if err != nil {
		return err
	}
	d.TUF = client
	return nil
}

// NewTUF opens the agent's TUF client of the data directory on a
// repository (http(s) URLs, fetched with resume, or local directories).
//
// No server holds a download forever: HTTP fetches use httpfetch's default
// timeouts with stall as the stall timeout (0: the default).
func NewTUF(dataDir, metadataURL, targetsURL string, stall time.Duration, logger *slog.Logger) (*tuf.Client, error) {
	c := tuf.Config{
		MetadataDir: tufDir(dataDir),
		MetadataURL: metadataURL,
		TargetsURL:  targetsURL,
		TargetDir:   stagingDir(dataDir),
		MinTime:     BuildTime(),
		Logger:      logger,
	}
	if strings.HasPrefix(metadataURL, "http://") || strings.HasPrefix(metadataURL, "https://") {
		c.Fetcher = &httpfetch.Client{Logger: logger, Timeouts: httpfetch.Timeouts{Stall: stall}}
	}
	return tuf.New(c)
}

// Live opens the live appliers once and returns them by kind: kernel
// live patches (agent/klp) and userspace live patches (agent/userpatch).
// An applier that cannot start is left out, with a log line: its kind is
// then applied through the fallback image.
func (d *Device) Live() map[manifest.ComponentKind]engine.LiveApplier {
	if !d.liveOpen {
		d.liveOpen = true
		sys := &klp.System{Logger: d.Logger}
		d.klp = klp.NewApplier(KLPDir(d.Config.DataDir), sys, d.Config.TransitionTimeout, d.Logger)
		u, err := userpatch.NewApplier(d.Config.DataDir, d.Logger)
		if err != nil {
			d.Logger.Warn("userspace live patching unavailable", "err", err)
		} else {
			d.user = u
		}
	}
	m := map[manifest.ComponentKind]engine.LiveApplier{manifest.KindKernelPatch: d.klp}
	if d.user != nil {
		m[manifest.KindUserPatch] = d.user
	}
	return m
}

// Close stops the live appliers and releases the lock.
func (d *Device) Close() {
	if d.user != nil {
		d.user.Close()
		d.user = nil
	}
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// Engine returns an engine on this device.
func (d *Device) Engine(checker engine.HealthChecker, report func(transport.Status)) *engine.Engine {
	return engine.New(engine.Options{
		Board:        d.Board,
		DeviceClass:  d.Config.Class(d.Board.Name),
		AgentVersion: Version(),
		Journal:      d.Journal,
		Source:       &pacedSource{Client: d.TUF, now: time.Now},
		Env:          d.Env,
		Health:       checker,
		Machine:      d.engineMachine(),
		StagingDir:   stagingDir(d.Config.DataDir),
		Report:       report,
		Logger:       d.Logger,
		Live:         d.Live(),
		Policy:       d.Config.Policy,
	})
}

func (d *Device) engineMachine() engine.Machine {
	if d.NoReboot {
		return operatorReboot{d.Machine}
	}
	return d.Machine
}

// operatorReboot is a machine whose reboot is left to the operator.
type operatorReboot struct{ *machine }

func (operatorReboot) Reboot(context.Context) error { return nil }

// Hooks let tests observe the daemon from inside.
type Hooks struct {
	// BeforeJournal and OnJournal run before and after every durable
	// journal save.
	BeforeJournal, OnJournal func(journal.Record)
	// Actions are the serial console's changing commands, run between
	// updates (agent/console through graft-agent run).
	Actions <-chan Action
}

// Run is `graft-agent run`: it resumes what the journal holds, then
// applies release notices as they come, until ctx ends. On a board whose
// reboot is "exit" it returns ErrExitForReboot when the device must reboot.
//
// A data directory that cannot be written (read-only, full) does not keep
// the agent down in silence: it connects, reports StateFault, keeps the
// booted slot bootable, and starts over once the directory recovers.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger, hooks Hooks) error {
	for {
		fault := checkDataDir(cfg.DataDir)
		if fault == nil {
			err := run(ctx, cfg, logger, hooks)
			if !errors.Is(err, ErrDataDir) || ctx.Err() != nil {
				return err
			}
			fault = err // the directory failed while running
		}
		if err := runFault(ctx, cfg, logger, fault); err != nil || ctx.Err() != nil {
			return err
		}
	}
}

func run(ctx context.Context, cfg *config.Config, logger *slog.Logger, hooks Hooks) error {
	d, err := Open(cfg, logger, true)
	if err != nil {
		return err
	}
	defer d.Close()
	d.Journal.BeforeSave = hooks.BeforeJournal
	if err := d.OpenTUF(""); err != nil {
		return err
	}
	box, err := outbox.Open(outboxDir(cfg.DataDir), 1000)
	if err != nil {
		return err
	}
	// Without its counter the agent still reports; the fleet then
	// orders its statuses the old way.
	seq, err := eventseq.Open(filepath.Join(cfg.DataDir, "status.seq"))
	if err != nil {
		logger.Error("status event counter unusable; statuses go out without Seq", "err", err)
	}
	tq, err := telemetry.OpenQueue(telemetryDir(cfg.DataDir), cfg.TelemetryQueue, logger)
	if err != nil {
		return err
	}
	notices := make(chan transport.Notice, 1)
	session, closeSession, err := startSession(ctx, cfg, d.Board, logger, box, false, func(n transport.Notice) {
		for { // keep only the newest notice
			select {
			case notices <- n:
				return
			default:
			}
			select {
			case <-notices:
			default:
			}
		}
	})
	if err != nil {
		return err
	}
	defer closeSession()
	// The command line first: kernel live patches may change what
	// /proc/cmdline shows.
	if _, _, err := d.Machine.Booted(); err != nil {
		logger.Warn("booted slot unknown", "err", err)
	}
	phone := newPhoneHome(d, session, seq, tq, logger)
	d.Journal.OnSave = func(r journal.Record) {
		phone.saved(r)
		if hooks.OnJournal != nil {
			hooks.OnJournal(r)
		}
	}
	tctx, tstop := context.WithCancel(ctx)
	tdone := make(chan struct{})
	go func() { defer close(tdone); phone.rep.Run(tctx) }()
	defer func() { tstop(); <-tdone }()
	d.Machine.beforeReboot = func(ctx context.Context) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		session.Drained(dctx)
	}
	sendStatus := reporter(cfg, logger, seq, box.Add, session.Kick)
	report := func(s transport.Status) {
		sendStatus(s)
		phone.reported(s)
	}
	checks, err := health.Build(cfg.HealthChecks, health.Probes{
		WaitConnected: session.WaitConnected,
		RefreshTUF:    d.TUF.Refresh,
		SlotEnv: func(slot string) []string {
			env := []string{"GRAFT_DATA_DIR=" + cfg.DataDir}
			for _, g := range d.Board.SlotGroups {
				for _, s := range g.Slots {
					if s.Name == slot && g.Name == "rootfs" {
						env = append(env, "GRAFT_SLOT_DEVICE="+s.Device)
					}
				}
			}
			return env
		},
	})
	if err != nil {
		return err
	}
	eng := d.Engine(phone.recordHealth(health.Checker{Checks: checks, Timeout: cfg.HealthTimeout}), report)

	logger.Info("graft-agent started", "device", cfg.DeviceID, "board", d.Board.Name, "version", Version())
	restored := d.restoreLive(ctx)
	if d.user != nil {
		uctx, ustop := context.WithCancel(ctx)
		udone := make(chan struct{})
		go func() { defer close(udone); d.user.Run(uctx) }()
		defer func() { ustop(); <-udone }()
	}
	retry := backoff{min: 2 * time.Second, max: 2 * time.Minute}
	// Failures that may be a man in the middle (engine.ErrRetry) are
	// retried more patiently: every attempt may cost a whole download.
	suspect := backoff{min: suspectRetryMin, max: 30 * time.Minute}
	var pending *transport.Notice
	for _, f := range d.Faults {
		booted, _, _ := d.Machine.Booted()
		report(transport.Status{State: transport.StateFault, Slot: booted, Reason: f})
	}
	err = eng.Resume(ctx)
	if rec := d.Journal.Record(); err == nil && rec.Update == nil {
		reportIdle(report, d, rec, restored)
	}
	var trim <-chan time.Time // fires once the agent has been idle a while
	for {
		if err == nil && trim == nil && d.Journal.Record().Update == nil {
			trim = time.After(IdleTrimDelay)
		}
		if errors.Is(err, ErrExitForReboot) {
			return err
		}
		if localFault(err) {
			// When the data directory is what failed (not a slot, not
			// the network), go to the fault mode rather than retry mute.
			if derr := checkDataDir(cfg.DataDir); derr != nil {
				return fmt.Errorf("%w (while running: %w)", derr, err)
			}
		}
		var wait <-chan time.Time
		if err != nil && ctx.Err() == nil {
			if errors.Is(err, engine.ErrRetry) {
				delay := suspect.next()
				logger.Warn("release failed in a way that may pass; retrying", "in", delay.Round(time.Millisecond), "err", err)
				wait = time.After(delay)
			} else if errors.Is(err, engine.ErrRefused) || errors.Is(err, engine.ErrFailed) {
				pending = nil // reported; retrying the same notice cannot help
			} else {
				delay := retry.next()
				logger.Warn("update interrupted; retrying", "in", delay.Round(time.Millisecond), "err", err)
				wait = time.After(delay)
			}
		} else if err == nil {
			retry.reset()
			suspect.reset()
			pending = nil
		}
		var window <-chan time.Time
		if rec := d.Journal.Record(); rec.Deferred != nil && rec.Update == nil && wait == nil {
			now := time.Now()
			at := cfg.Maintenance.Next(now)
			if at.After(now) {
				logger.Info("deferred image waits for the maintenance window", "release", rec.Deferred.Release.Name, "at", at.Format(time.RFC3339))
			}
			window = time.After(at.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case a := <-hooks.Actions:
			trim = nil
			aerr := d.act(ctx, eng, report, a)
			a.Done <- aerr
			if errors.Is(aerr, ErrExitForReboot) {
				return aerr
			}
			continue
		case <-trim:
			debug.FreeOSMemory() // the heap's free spans back to the kernel too
			res, terr := memtrim.Trim()
			logger.Debug("idle: released the binary's clean pages", "mappings", res.Mappings, "bytes", res.Bytes, "advice", res.Advice, "err", terr)
			continue
		case <-window:
			trim = nil
			err = eng.InstallDeferred(ctx)
		case n := <-notices:
			trim = nil
			pending = &n
			logger.Debug("release notice", "release", n.Release, "manifest", n.Manifest)
			err = eng.Install(ctx, n)
		case <-wait:
			trim = nil
			if pending != nil {
				err = eng.Install(ctx, *pending)
			} else {
				err = eng.Resume(ctx)
			}
		}
	}
}

// startSession starts the device's MQTT session from the agent's config
// (TLS with the device certificate, the inventory of board b) on a context
// that outlives ctx, and returns it with its close: after ctx ends the
// session gets 5 s to close (and, with drain, to deliver what q holds).
func startSession(ctx context.Context, cfg *config.Config, b boards.Board, logger *slog.Logger, q mqtt.Queue, drain bool, onNotice func(transport.Notice)) (*mqtt.Session, func(), error) {
	mcfg := mqtt.Config{
		Broker:    cfg.Broker,
		DeviceID:  cfg.DeviceID,
		Groups:    cfg.Groups,
		KeepAlive: cfg.KeepAlive,
		Inventory: &transport.Inventory{Board: b.Name, Arch: b.Arch, Groups: cfg.Groups, AgentVersion: Version()},
		Outbox:    q,
		Logger:    logger,
		OnNotice:  onNotice,
	}
	if cfg.CertFile != "" || cfg.CAFile != "" {
		var err error
		if mcfg.TLS, err = mqtt.TLSConfig(cfg.CAFile, cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, nil, err
		}
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	session, err := mqtt.Start(sctx, mcfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return session, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if drain {
			session.Drained(cctx)
		}
		session.Close(cctx)
		stop()
	}, nil
}

// reporter returns the status reporter: stamp (with the next Seq when
// seq is not nil), encode, queue, kick.
func reporter(cfg *config.Config, logger *slog.Logger, seq *eventseq.Counter, add func([]byte) (string, error), kick func()) func(transport.Status) {
	return func(s transport.Status) {
		s.Reason = cleanReason(s.Reason)
		s.EventID = newEventID()
		s.Device = cfg.DeviceID
		s.Time = time.Now().UnixMilli()
		if seq != nil {
			if n, err := seq.Next(); err == nil {
				s.Seq = n
			} else {
				logger.Warn("status event counter", "err", err)
			}
		}
		s.AgentVersion = Version()
		b, err := transport.EncodeStatus(s)
		if err == nil {
			_, err = add(b)
		}
		if err != nil {
			logger.Error("status not queued", "state", s.State, "err", err)
			return
		}
		kick()
	}
}

// restoreLive loads the kernel live patches kept for this kernel again
// (after a reboot) and drops those for another kernel, and returns one
// line per patch for the status report.
func (d *Device) restoreLive(ctx context.Context) []string {
	d.Live()
	rs, err := d.klp.Restore(ctx)
	if err != nil {
		d.Logger.Error("restoring kernel live patches", "err", err)
	}
	var notes []string
	for _, r := range rs {
		switch {
		case r.Dropped != "":
			notes = append(notes, fmt.Sprintf("kernel live patch %s dropped: %s", r.Name, r.Dropped))
		case r.Reloaded:
			notes = append(notes, fmt.Sprintf("kernel live patch %s reloaded", r.Name))
		default:
			notes = append(notes, fmt.Sprintf("kernel live patch %s still enabled", r.Name))
		}
	}
	return notes
}

// LiveStatus lists the live patches in force: the kernel's (from sysfs,
// with the component graft loaded each for) and the journal's account of
// live components by release.
func (d *Device) LiveStatus() []string {
	var out []string
	d.Live()
	if ps, err := d.klp.List(); err != nil {
		out = append(out, fmt.Sprintf("kernel live patches unreadable: %v", err))
	} else {
		for _, p := range ps {
			st := "enabled"
			switch {
			case p.Transition:
				st = "in transition"
			case !p.Enabled:
				st = "disabled"
			}
			by := "not loaded by graft"
			if p.Component != "" {
				by = "component " + p.Component
			}
			out = append(out, fmt.Sprintf("kernel %s %s (%s)", p.Name, st, by))
		}
	}
	for _, l := range d.Journal.Record().Live {
		if l.Component.Kind == manifest.KindUserPatch {
			out = append(out, fmt.Sprintf("userspace %s of %s (release %s)", l.Component.Name, l.Component.UserPatch.Soname, l.Release))
		}
	}
	return out
}

// reportIdle tells the fleet the agent is up and what it runs; the last
// outcome, the live patches in force and what happened to the kernel's
// at this start go in the reason.
func reportIdle(report func(transport.Status), d *Device, rec journal.Record, restored []string) {
	booted, _, _ := d.Machine.Booted()
	s := transport.Status{State: transport.StateIdle, Slot: booted, Installed: rec.Installed.Name, Sequence: rec.Installed.Sequence}
	var parts []string
	if l := rec.Last; l != nil {
		parts = append(parts, fmt.Sprintf("last update: %s %s", l.Release, l.State))
	}
	if live := d.LiveStatus(); len(live) > 0 {
		parts = append(parts, "live: "+strings.Join(live, ", "))
	}
	parts = append(parts, restored...)
	if rec.Deferred != nil {
		parts = append(parts, fmt.Sprintf("image %s of %s waits for the maintenance window %s", rec.Deferred.Image, rec.Deferred.Release.Name, d.Config.Maintenance))
	}
	s.Reason = strings.Join(parts, "; ")
	report(s)
}

// cleanReason keeps a status reason printable and bounded, whatever a
// health check printed: control characters become spaces.
func cleanReason(r string) string {
	r = strings.ToValidUTF8(r, "?")
	r = strings.Map(func(c rune) rune {
		if c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			return ' '
		}
		return c
	}, r)
	if len(r) > 1024 {
		r = strings.ToValidUTF8(r[:1021], "") + "..."
	}
	return r
}

func newEventID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// backoff is a capped exponential delay with full jitter, so devices that
// failed together do not retry together.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.min << min(b.n, 16)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

func (b *backoff) reset() { b.n = 0 }
