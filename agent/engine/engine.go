package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/graft-dev/graft/agent/bootenv"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf"
)

// Source is the trusted source of releases: a TUF client.
type Source interface {
	Refresh(ctx context.Context) error
	ReadTarget(ctx context.Context, name string, max int64) ([]byte, error)
	Download(ctx context.Context, name string, opts tuf.DownloadOptions) (string, error)
}

// HealthChecker decides whether the booted slot is fit to keep.
type HealthChecker interface {
	Check(ctx context.Context, slot string) error
}

// Machine is the device under the engine: which slot booted, which boot
// this is, how to reboot, and what is mounted.
type Machine interface {
	// Booted returns the booted slot and an identifier that changes at
	// every boot.
	Booted() (slot, bootID string, err error)
	// Reboot restarts the device. On a real board it does not return.
	Reboot(ctx context.Context) error
	// Mountinfo returns the content of /proc/self/mountinfo.
	Mountinfo() (io.Reader, error)
}

// Options are everything the engine works with.
type Options struct {
	Board        boards.Board // resolved board
	DeviceClass  string
	AgentVersion string
	Journal      *journal.Journal
	Source       Source
	Env          bootenv.Store
	Health       HealthChecker
	Machine      Machine
	StagingDir   string
	// Report receives every status change; the caller stamps event IDs
	// and delivers them.
	Report func(transport.Status)
	Logger *slog.Logger
	Now    func() time.Time
	// Live holds the appliers of live components by kind; a live
	// component of a kind without one cannot be applied live here.
	Live map[manifest.ComponentKind]LiveApplier
	// Policy is PolicyLiveFirst (also ""), PolicyImageOnly or
	// PolicyLiveNowImageLater.
	Policy string
}

// Engine runs updates. It is not safe for concurrent use: the agent feeds
// it one notice at a time.
type Engine struct {
	o   Options
	log *slog.Logger
}

// New returns an engine.
func New(o Options) *Engine {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Report == nil {
		o.Report = func(transport.Status) {}
	}
	return &Engine{o: o, log: o.Logger}
}

var (
	// ErrRebootPending is returned when the update waits for a reboot that
	// the machine did not perform (for example an install from the command
	// line).
	ErrRebootPending = errors.New("reboot pending")
	// ErrVerifyPending is returned by an engine without health checks when
	// the new slot is up and waits for its verdict (graft-agent mark-good,
	// or the daemon's checks).
	ErrVerifyPending = errors.New("new slot waits for its health verdict")
	// ErrFailed wraps the cause of an update that ended without touching
	// the bootloader; retrying the same notice cannot help.
	ErrFailed = errors.New("update failed")
	// ErrBusy means an update is waiting for its reboot.
	ErrBusy = errors.New("an update is waiting for its reboot")
	// errWaitReboot tells run that the update now waits for a reboot.
	errWaitReboot = errors.New("wait for reboot")
)

// Install runs the release named by a notice: verify its manifest through
// TUF, plan, and apply. It returns when the update ended, waits for a
// reboot, or hit an error worth retrying later.
func (e *Engine) Install(ctx context.Context, n transport.Notice) error {
	rec := e.o.Journal.Record()
	if u := rec.Update; u != nil {
		// Finish what is in flight first; the notice is handled after it.
		if err := e.Resume(ctx); err != nil || u.Release.Name == n.Release {
			return err
		}
		rec = e.o.Journal.Record()
	}
	if n.Release != "" && n.Release == rec.Installed.Name {
		e.log.Debug("release already installed", "release", n.Release)
		return nil
	}
	if l := rec.Last; l != nil && l.Release == n.Release &&
		(l.State == string(transport.StateRolledBack) || (l.State == string(transport.StateFailed) && !renotified(l, n))) {
		// The retained notice of a release that already ended badly here:
		// its outcome stands until the fleet notifies again.
		e.log.Debug("release already tried", "release", n.Release, "outcome", l.State)
		return nil
	}
	if err := e.o.Source.Refresh(ctx); err != nil {
		return e.refuseOrRetry(n.Release, fmt.Errorf("TUF refresh: %w", err))
	}
	raw, err := e.o.Source.ReadTarget(ctx, n.Manifest, manifest.MaxSize)
	if err != nil {
		return e.refuseOrRetry(n.Release, fmt.Errorf("manifest %s: %w", n.Manifest, err))
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		return e.refuse(n.Release, 0, err)
	}
	booted, _, err := e.o.Machine.Booted()
	if err != nil {
		return fmt.Errorf("booted slot: %w", err)
	}
	p, err := MakePlan(m, Facts{
		Device: manifest.Device{
			Board:             e.o.Board.Name,
			Arch:              e.o.Board.Arch,
			DeviceClass:       e.o.DeviceClass,
			InstalledSequence: rec.Installed.Sequence,
			AgentVersion:      e.o.AgentVersion,
		},
		RolledBack: rec.RolledBack,
		Board:      e.o.Board,
		Booted:     booted,
		Policy:     e.o.Policy,
		LiveCheck:  e.liveChecks(ctx, m),
	})
	if err != nil {
		if errors.Is(err, manifest.ErrOldSequence) && m.Name == rec.Installed.Name {
			return nil // the retained notice of what runs now
		}
		return e.refuse(m.Name, m.Sequence, err)
	}
	rec.Update = &journal.Update{
		Release:        journal.Release{Name: m.Name, Version: m.Version, Sequence: m.Sequence, Slot: p.Target},
		From:           p.From,
		ManifestTarget: n.Manifest,
		Manifest:       raw,
		Path:           p.Path,
		Why:            p.Why,
		Step:           journal.StepPlanned,
		Started:        e.o.Now().UTC(),
		Image:          p.ImageName,
		Fallback:       p.Fallback,
		FallbackSlot:   p.FallbackSlot,
		Deferred:       p.Deferred,
		NoticeID:       n.ID,
		NoticeTime:     n.Time,
	}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Info("planned", "release", m.Name, "sequence", m.Sequence, "path", p.Path, "from", p.From, "to", p.Target, "why", p.Why)
	e.report(rec, rec.Update, transport.StateDownloading, p.Why, 0, 0)
	return e.run(ctx)
}

// Resume continues whatever the journal says is in flight. The agent calls
// it at start, after a crash, a power cut or a reboot.
func (e *Engine) Resume(ctx context.Context) error {
	rec := e.o.Journal.Record()
	u := rec.Update
	booted, bootID, err := e.o.Machine.Booted()
	if err != nil {
		return fmt.Errorf("booted slot: %w", err)
	}
	if e.reconcileLive(&rec) {
		if err := e.save(rec); err != nil {
			return err
		}
	}
	if u == nil {
		return e.confirm(rec, booted)
	}
	e.refillBooted(u, booted)
	target := u.Release.Slot
	if u.Path == PathLive {
		// Live steps never leave the booted slot; the appliers restored
		// at start what survives a reboot, and Apply is idempotent.
		if booted != u.From {
			return e.abort(rec, fmt.Errorf("booted slot changed from %s to %s during the live update", u.From, booted))
		}
		return e.run(ctx)
	}
	switch u.Step {
	case journal.StepPlanned, journal.StepDownloading, journal.StepDownloaded,
		journal.StepInstalling, journal.StepInstalled:
		if booted != u.From {
			return e.abort(rec, fmt.Errorf("booted slot changed from %s to %s during the update", u.From, booted))
		}
	case journal.StepSwitching:
		if booted == target && u.From != target {
			u.Step, u.BootID = journal.StepVerifying, bootID
			if err := e.save(rec); err != nil {
				return err
			}
		}
	case journal.StepRebooting:
		switch {
		case bootID == u.BootID:
			// The reboot did not happen yet: ask again below.
		case booted == target:
			u.Step, u.BootID = journal.StepVerifying, bootID
			if err := e.save(rec); err != nil {
				return err
			}
		default:
			return e.fellBack(ctx, rec, fmt.Sprintf("bootloader fell back to %s: slot %s did not come up", booted, target))
		}
	case journal.StepVerifying:
		if booted != target {
			return e.fellBack(ctx, rec, fmt.Sprintf("bootloader fell back to %s before slot %s was marked good (reset during health checks)", booted, target))
		}
	case journal.StepReverting:
		switch {
		case booted == u.From && bootID != u.BootID:
			return e.rolledBack(rec, u.Reason)
		case !e.revertArmed(u):
			// The agent stopped (or the power went) between journalling
			// the revert and writing the boot environment: arm it now,
			// then reboot.
			if err := e.revert(rec, u.Reason); err != nil {
				return err
			}
		case bootID == u.BootID:
			// The reboot did not happen yet: ask again below.
		default:
			// The old slot failed to boot too: stay where we are.
			return e.keep(rec, fmt.Sprintf("%s; and fallback slot %s did not boot, so slot %s stays", u.Reason, u.From, booted))
		}
	default:
		return e.abort(rec, fmt.Errorf("journal step %q unknown to this agent", u.Step))
	}
	return e.run(ctx)
}

// run drives the update in flight through its steps until it ends or
// waits for a reboot.
func (e *Engine) run(ctx context.Context) error {
	for {
		rec := e.o.Journal.Record()
		u := rec.Update
		if u == nil {
			return nil
		}
		var err error
		switch {
		case u.Path == PathLive:
			err = e.runLive(ctx, rec)
		default:
			err = e.runAB(ctx, rec)
		}
		if errors.Is(err, errWaitReboot) {
			return e.reboot(ctx, rec)
		}
		if err != nil {
			if permanent(err) {
				// The step may have journalled more than rec holds.
				return e.abort(e.o.Journal.Record(), err)
			}
			e.log.Warn("update step failed; will retry", "step", u.Step, "err", err)
			return err
		}
	}
}

// runLive does the next step of the live path.
func (e *Engine) runLive(ctx context.Context, rec journal.Record) error {
	switch rec.Update.Step {
	case journal.StepPlanned, journal.StepDownloading:
		return e.liveDownload(ctx, rec)
	case journal.StepApplying:
		return e.liveApply(ctx, rec)
	case journal.StepUnapplying:
		return e.unapply(ctx, rec)
	case journal.StepVerifying:
		return e.liveVerify(ctx, rec)
	}
	return fmt.Errorf("%w: live step %q", manifest.ErrInvalid, rec.Update.Step)
}

// runAB does the next step of the A/B path.
func (e *Engine) runAB(ctx context.Context, rec journal.Record) error {
	switch rec.Update.Step {
	case journal.StepPlanned, journal.StepDownloading:
		return e.download(ctx, rec)
	case journal.StepDownloaded, journal.StepInstalling:
		return e.install(ctx, rec)
	case journal.StepInstalled, journal.StepSwitching:
		return e.switchSlot(rec)
	case journal.StepRebooting, journal.StepReverting:
		return errWaitReboot
	case journal.StepVerifying:
		return e.verify(ctx, rec)
	}
	return fmt.Errorf("%w: A/B step %q", manifest.ErrInvalid, rec.Update.Step)
}

// permanent tells errors that retrying cannot fix from transient ones.
func permanent(err error) bool {
	for _, target := range []error{
		tuf.ErrHash, tuf.ErrLength, tuf.ErrUnknownTarget,
		slot.ErrHashMismatch, slot.ErrSize, slot.ErrTooLarge, slot.ErrWrite,
		slot.ErrActiveSlot, slot.ErrMounted, slot.ErrDecompress, slot.ErrBadImage, slot.ErrTarget,
		slot.ErrBadState, manifest.ErrMalformed, manifest.ErrInvalid, ErrLiveTarget,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func (e *Engine) download(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	img, err := e.image(u)
	if err != nil {
		return err
	}
	// The metadata may be stale (an agent restart in the middle of the
	// download): refresh before trusting the target's length and hashes.
	if err := e.o.Source.Refresh(ctx); err != nil {
		return fmt.Errorf("TUF refresh: %w", err)
	}
	if u.Staging == "" {
		u.Staging = filepath.Join(e.o.StagingDir, stagingName(u.Release.Name, img.Target))
		u.Offset = 0
	}
	u.Step = journal.StepDownloading
	if err := e.save(rec); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(u.Staging), 0o700); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	prog := e.progress(rec, transport.StateDownloading)
	path, err := e.o.Source.Download(ctx, img.Target, tuf.DownloadOptions{
		Dest:   u.Staging,
		Offset: u.Offset,
		Checkpoint: func(off int64) error {
			u.Offset = off
			return e.save(rec)
		},
		Progress: prog,
	})
	if err != nil {
		return fmt.Errorf("download %s: %w", img.Target, err)
	}
	u.Staging, u.Step = path, journal.StepDownloaded
	return e.save(rec)
}

func (e *Engine) install(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	img, err := e.image(u)
	if err != nil {
		return err
	}
	g, err := e.o.Board.Group(img.SlotGroup)
	if err != nil {
		return fmt.Errorf("%w: %w", slot.ErrActiveSlot, err)
	}
	dev, err := device(g, u.Release.Slot)
	if err != nil {
		return fmt.Errorf("%w: %w", slot.ErrActiveSlot, err)
	}
	bootedDev, err := device(g, u.From)
	if err != nil {
		return fmt.Errorf("%w: %w", slot.ErrActiveSlot, err)
	}
	if booted, _, err := e.o.Machine.Booted(); err != nil || booted != u.From {
		return fmt.Errorf("%w: booted slot is %q, the update began in %q (%v)", slot.ErrActiveSlot, booted, u.From, err)
	}
	mi, err := e.o.Machine.Mountinfo()
	if err != nil {
		return fmt.Errorf("mountinfo: %w", err)
	}
	if err := slot.CheckWritable(dev, bootedDev, mi); err != nil {
		return err
	}
	if err := e.disarmTarget(&rec); err != nil {
		return err
	}
	e.log.Info("writing slot", "slot", u.Release.Slot, "device", dev, "bytes", img.Size, "compression", img.Compression.String())
	e.report(rec, u, transport.StateInstalling, "", 0, int64(img.Size))
	f, err := os.Open(u.Staging)
	if errors.Is(err, fs.ErrNotExist) {
		// The staged image is gone (cleaned up, or lost in a power cut
		// before the step was journalled): fetch it again.
		e.log.Warn("staged image missing; downloading again", "path", u.Staging)
		u.Step, u.Staging, u.Offset = journal.StepPlanned, "", 0
		return e.save(rec)
	}
	if err != nil {
		return fmt.Errorf("staged image: %w", err)
	}
	defer f.Close()
	err = slot.Install(ctx, dev, f, slot.Image{
		Size:        int64(img.Size),
		SHA256:      img.SHA256,
		Compression: slot.Compression(img.Compression.String()),
	}, e.progress(rec, transport.StateInstalling))
	if err != nil {
		return fmt.Errorf("install slot %s (%s): %w", u.Release.Slot, dev, err)
	}
	// Journal first, then drop the staged copy: a cut in between leaves a
	// stray file, never a step that needs a file that is gone.
	staged := u.Staging
	u.Step, u.Staging, u.Offset = journal.StepInstalled, "", 0
	if err := e.save(rec); err != nil {
		return err
	}
	os.Remove(staged)
	return nil
}

// switchSlot tells the bootloader to try the new slot once.
func (e *Engine) switchSlot(rec journal.Record) error {
	u := rec.Update
	u.Step = journal.StepSwitching
	if err := e.save(rec); err != nil {
		return err
	}
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.MarkTry(u.Release.Slot, e.o.Board.Bootloader.TryAttempts)
	}); err != nil {
		return err
	}
	_, bootID, err := e.o.Machine.Booted()
	if err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	u.Step, u.BootID = journal.StepRebooting, bootID
	if err := e.save(rec); err != nil {
		return err
	}
	e.report(rec, u, transport.StateRebooting, fmt.Sprintf("slot %s armed to be tried once", u.Release.Slot), 0, 0)
	return nil
}

func (e *Engine) reboot(ctx context.Context, rec journal.Record) error {
	e.log.Info("rebooting", "step", rec.Update.Step, "next", rec.Update.Release.Slot)
	if err := e.o.Machine.Reboot(ctx); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return ErrRebootPending
}

// verify runs the health checks in the new slot, then commits or arms the
// revert.
func (e *Engine) verify(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	if e.o.Health == nil {
		return ErrVerifyPending
	}
	e.report(rec, u, transport.StateVerifying, "", 0, 0)
	if err := e.o.Health.Check(ctx, u.Release.Slot); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return e.revert(rec, fmt.Sprintf("slot %s: %v", u.Release.Slot, err))
	}
	return e.commit(ctx, rec)
}

// commit keeps the new slot. The image of a live release installed at
// the maintenance window retires that release's live components.
func (e *Engine) commit(ctx context.Context, rec journal.Record) error {
	u := rec.Update
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.MarkGood(u.Release.Slot, e.o.Board.Bootloader.Attempts)
	}); err != nil {
		return err
	}
	if u.Later {
		e.retireLive(ctx, &rec, u.Release.Name)
	}
	rec.Deferred = nil // a newer install supersedes an image still waiting
	rec.Previous, rec.Installed = rec.Installed, u.Release
	rec.Update = nil
	rec.Last = &journal.Outcome{Release: u.Release.Name, Sequence: u.Release.Sequence, State: string(transport.StateCommitted), Path: u.Path, Reason: u.Why, Time: e.o.Now().UTC()}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Info("committed", "release", u.Release.Name, "slot", u.Release.Slot)
	e.report(rec, u, transport.StateCommitted, fmt.Sprintf("slot %s healthy and marked good", u.Release.Slot), 0, 0)
	return nil
}

// revert arms the fallback to the slot the update started from; the run
// loop then reboots into it. The verdict is journalled before the boot
// environment changes: a power cut in between boots the old slot (the
// try was spent), and Resume then finishes the rollback with the
// health reason instead of taking the boot for a fallback without a
// verdict and arming the failed slot again.
func (e *Engine) revert(rec journal.Record, reason string) error {
	u := rec.Update
	e.log.Warn("reverting", "release", u.Release.Name, "reason", reason)
	_, bootID, err := e.o.Machine.Booted()
	if err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	u.Step, u.BootID, u.Reason = journal.StepReverting, bootID, reason
	if err := e.save(rec); err != nil {
		return err
	}
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.MarkBad(u.Release.Slot).MarkGood(u.From, e.o.Board.Bootloader.Attempts)
	}); err != nil {
		return err
	}
	e.report(rec, u, transport.StateRebooting, reason, 0, 0)
	return nil
}

// revertArmed reports whether the boot environment already sends the
// next boot back to the slot u started from (revert wrote it).
func (e *Engine) revertArmed(u *journal.Update) bool {
	env, err := e.o.Env.Load()
	if err != nil {
		return true // cannot tell: do not loop
	}
	s, err := slot.ParseState(env, e.o.Board.SlotNames())
	return err != nil || len(s.Order) > 0 && s.Order[0] == u.From
}

// disarmTarget journals the installing step and then takes the target
// slot out of the boot order (counter 0) before a byte of it is written:
// an install cut off or aborted at any point leaves a slot that no
// fallback and no counter reset can boot. The slot no longer holds the
// previous release either, so the record stops saying so. MarkTry puts
// the slot back once it is written and verified.
func (e *Engine) disarmTarget(rec *journal.Record) error {
	u := rec.Update
	u.Step = journal.StepInstalling
	if rec.Previous.Slot == u.Release.Slot {
		rec.Previous = journal.Release{}
	}
	if err := e.save(*rec); err != nil {
		return err
	}
	return e.editBootState(func(s slot.State) slot.State { return s.MarkNonBootable(u.Release.Slot) })
}

// refillBooted refills the booted slot's counter at every start with an
// update in flight: a download spread over days and power cycles must
// never run the running slot down to 0 and leave the bootloader the
// other slot. The slot on trial is left alone (its one try is the
// point). The order is not changed. A failure is logged; the update
// goes on.
func (e *Engine) refillBooted(u *journal.Update, booted string) {
	if u.Path != PathLive && booted == u.Release.Slot && booted != u.From {
		return
	}
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.Refill(booted, e.o.Board.Bootloader.Attempts)
	}); err != nil {
		e.log.Warn("refilling the booted slot's attempts", "slot", booted, "err", err)
	}
}

// MaxTries is how often a new slot is tried when its tries end without a
// verdict: a reset or power cut before the health checks could decide.
// A failed health check is a verdict, and final.
const MaxTries = 2

// fellBack handles a try that ended in the old slot without a verdict: it
// arms the new slot again while tries remain, else rolls back.
func (e *Engine) fellBack(ctx context.Context, rec journal.Record, reason string) error {
	u := rec.Update
	u.Tries++
	if u.Tries >= MaxTries {
		return e.rolledBack(rec, fmt.Sprintf("%s (%d tries)", reason, u.Tries))
	}
	e.log.Warn("new slot tried without a verdict; trying again", "reason", reason, "try", u.Tries+1, "of", MaxTries)
	u.Step = journal.StepSwitching
	if err := e.save(rec); err != nil {
		return err
	}
	e.report(rec, u, transport.StateRebooting, fmt.Sprintf("%s; trying slot %s again (%d of %d)", reason, u.Release.Slot, u.Tries+1, MaxTries), 0, 0)
	return e.run(ctx)
}

// rolledBack records that the device runs the old slot again.
func (e *Engine) rolledBack(rec journal.Record, reason string) error {
	u := rec.Update
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.MarkBad(u.Release.Slot).MarkGood(u.From, e.o.Board.Bootloader.Attempts)
	}); err != nil {
		return err
	}
	rec.RolledBack = max(rec.RolledBack, u.Release.Sequence)
	rec.Update = nil
	rec.Last = &journal.Outcome{Release: u.Release.Name, Sequence: u.Release.Sequence, State: string(transport.StateRolledBack), Path: u.Path, Reason: reason, Time: e.o.Now().UTC()}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Warn("rolled back", "release", u.Release.Name, "slot", u.From, "reason", reason)
	e.report(rec, u, transport.StateRolledBack, reason, 0, 0)
	return nil
}

// abort ends an update that cannot go on before the try was armed: the
// booted slot is still the good one, and a target that was being written
// stays out of the boot order (disarmTarget), so only the journal changes.
func (e *Engine) abort(rec journal.Record, cause error) error {
	u := rec.Update
	if u.Path != PathLive && (u.Step == journal.StepSwitching || u.Step == journal.StepRebooting || u.Step == journal.StepVerifying || u.Step == journal.StepReverting) {
		return e.rolledBack(rec, cause.Error())
	}
	if u.Staging != "" {
		os.Remove(u.Staging)
	}
	rec.Update = nil
	rec.Last = &journal.Outcome{Release: u.Release.Name, Sequence: u.Release.Sequence, State: string(transport.StateFailed), Path: u.Path, Reason: cause.Error(), Time: e.o.Now().UTC(),
		NoticeID: u.NoticeID, NoticeTime: u.NoticeTime}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Error("update failed", "release", u.Release.Name, "err", cause)
	e.report(rec, u, transport.StateFailed, cause.Error(), 0, 0)
	return fmt.Errorf("%w: %w", ErrFailed, cause)
}

// keep ends an update whose fallback did not boot: the target runs, so it
// is what is installed, and the outcome says what happened.
func (e *Engine) keep(rec journal.Record, reason string) error {
	u := rec.Update
	if err := e.editBootState(func(s slot.State) slot.State {
		return s.MarkGood(u.Release.Slot, e.o.Board.Bootloader.Attempts)
	}); err != nil {
		return err
	}
	rec.Previous, rec.Installed = rec.Installed, u.Release
	rec.Update = nil
	rec.Last = &journal.Outcome{Release: u.Release.Name, Sequence: u.Release.Sequence, State: string(transport.StateFailed), Path: u.Path, Reason: reason, Time: e.o.Now().UTC()}
	if err := e.save(rec); err != nil {
		return err
	}
	e.log.Error("fallback failed; keeping the new slot", "release", u.Release.Name, "reason", reason)
	e.report(rec, u, transport.StateFailed, reason, 0, 0)
	return nil
}

// confirm runs at every start with no update in flight. It refills the
// booted slot's attempts (RAUC's mark-good after a good boot), so that
// ordinary reboots never drain a committed slot into a fallback, and it
// notices when the bootloader fell back outside an update.
func (e *Engine) confirm(rec journal.Record, booted string) error {
	if inst := rec.Installed; inst.Slot != "" && inst.Slot != booted {
		reason := fmt.Sprintf("bootloader fell back to slot %s: slot %s (%s) stopped booting", booted, inst.Slot, inst.Name)
		e.log.Error("unexpected fallback", "booted", booted, "installed", inst.Slot)
		rec.Installed, rec.Previous = rec.Previous, journal.Release{}
		if rec.Installed.Slot != booted {
			rec.Installed = journal.Release{Slot: booted}
		}
		rec.Last = &journal.Outcome{Release: inst.Name, Sequence: inst.Sequence, State: string(transport.StateRolledBack), Reason: reason, Time: e.o.Now().UTC()}
		if err := e.save(rec); err != nil {
			return err
		}
		e.o.Report(transport.Status{State: transport.StateRolledBack, Release: inst.Name, Sequence: inst.Sequence, Reason: reason, Slot: booted, Installed: rec.Installed.Name})
	}
	return e.editBootState(func(s slot.State) slot.State {
		return s.MarkGood(booted, e.o.Board.Bootloader.Attempts)
	})
}

// renotified reports whether notice n is another notice than the one
// the failed update l came from: the fleet notified again. The fleet's
// notice ID decides; without IDs (an older fleet), the fleet's own send
// times are compared with each other, never with this device's clock (a
// board without an RTC may think it is 1970, or a year ahead).
func renotified(l *journal.Outcome, n transport.Notice) bool {
	if n.ID != "" || l.NoticeID != "" {
		return n.ID != l.NoticeID
	}
	return n.Time > l.NoticeTime
}

// refuseOrRetry refuses a release whose metadata failed verification, and
// hands transfer failures back to be retried.
func (e *Engine) refuseOrRetry(release string, err error) error {
	if transient(err) {
		return err
	}
	return e.refuse(release, 0, err)
}

// transient tells failures of the network or of this moment from answers.
func transient(err error) bool {
	var ne net.Error
	return errors.Is(err, tuf.ErrTransfer) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

func (e *Engine) refuse(release string, seq uint64, cause error) error {
	e.log.Warn("release refused", "release", release, "err", cause)
	rec := e.o.Journal.Record()
	e.o.Report(transport.Status{
		State:     transport.StateRefused,
		Release:   release,
		Sequence:  seq,
		Reason:    cause.Error(),
		Slot:      e.booted(),
		Installed: rec.Installed.Name,
	})
	if errors.Is(cause, ErrRefused) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrRefused, cause)
}

// MarkGood marks the booted slot good by hand (graft-agent mark-good). An
// update waiting for its health checks is committed.
func (e *Engine) MarkGood(ctx context.Context) (string, error) {
	booted, _, err := e.o.Machine.Booted()
	if err != nil {
		return "", fmt.Errorf("booted slot: %w", err)
	}
	rec := e.o.Journal.Record()
	if u := rec.Update; u != nil {
		switch {
		case u.Release.Slot == booted && (u.Step == journal.StepVerifying || u.Step == journal.StepRebooting || u.Step == journal.StepSwitching):
			return booted, e.commit(ctx, rec)
		case u.Step == journal.StepSwitching || u.Step == journal.StepRebooting || u.Step == journal.StepReverting:
			return booted, fmt.Errorf("%w: slot %s is armed for release %s; reboot first", ErrBusy, u.Release.Slot, u.Release.Name)
		}
	}
	return booted, e.editBootState(func(s slot.State) slot.State {
		return s.MarkGood(booted, e.o.Board.Bootloader.Attempts)
	})
}

// editBootState changes the RAUC boot variables under the environment's
// lock; bootenv.Update writes only when something changed.
func (e *Engine) editBootState(fn func(slot.State) slot.State) error {
	return bootenv.Update(e.o.Env, func(env bootenv.Env) error {
		s, err := slot.ParseState(env, e.o.Board.SlotNames())
		if err != nil {
			return err
		}
		fn(s).Apply(env)
		return nil
	})
}

func (e *Engine) image(u *journal.Update) (*manifest.Image, error) {
	m, err := manifest.Decode(u.Manifest)
	if err != nil {
		return nil, err
	}
	if u.Image != "" {
		if c := m.Component(u.Image); c != nil && c.Image != nil {
			return c.Image, nil
		}
		return nil, fmt.Errorf("%w: image component %q: %w", manifest.ErrInvalid, u.Image, ErrNothingToApply)
	}
	for _, img := range m.Images() {
		if _, err := e.o.Board.Group(img.SlotGroup); err == nil {
			return img, nil
		}
	}
	return nil, fmt.Errorf("%w: %w", manifest.ErrInvalid, ErrNothingToApply)
}

func (e *Engine) save(rec journal.Record) error {
	if err := e.o.Journal.Save(rec); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func (e *Engine) booted() string {
	s, _, err := e.o.Machine.Booted()
	if err != nil {
		return ""
	}
	return s
}

// report sends the status of update u.
func (e *Engine) report(rec journal.Record, u *journal.Update, state transport.State, reason string, done, total int64) {
	e.o.Report(transport.Status{
		State:     state,
		Release:   u.Release.Name,
		Sequence:  u.Release.Sequence,
		Path:      u.Path,
		Reason:    reason,
		Slot:      e.booted(),
		Done:      done,
		Total:     total,
		Installed: rec.Installed.Name,
	})
}

// progress returns a callback that reports every tenth of the way.
func (e *Engine) progress(rec journal.Record, state transport.State) func(done, total int64) {
	last := int64(-1)
	return func(done, total int64) {
		if total <= 0 {
			return
		}
		tenth := done * 10 / total
		if tenth == last {
			return
		}
		last = tenth
		e.log.Debug(string(state), "release", rec.Update.Release.Name, "done", done, "total", total)
		e.report(rec, rec.Update, state, "", done, total)
	}
}

func stagingName(release, target string) string {
	r := strings.NewReplacer("/", "_", "\\", "_", "..", "_")
	return r.Replace(release) + "--" + r.Replace(target)
}
