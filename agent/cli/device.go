package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/graft-dev/graft/agent/config"
	"path"
	"slices"
	"strings"

	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/agent/journal"
	"github.com/graft-dev/graft/agent/slot"
	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/transport"
)

func openDevice(e env, cfgPath string, lock bool) (*daemon.Device, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	return daemon.Open(cfg, logger(e.stderr, cfg.LogLevel), lock)
}

// slotView is one slot as `slots` and `status` show it.
type slotView struct {
	Group  string `json:"group"`
	Name   string `json:"name"`
	Device string `json:"device"`
	Booted bool   `json:"booted"`
	Left   int    `json:"attempts_left"`
}

type statusView struct {
	Device    string           `json:"device"`
	Board     string           `json:"board"`
	Version   string           `json:"agent_version"`
	LiveOnly  bool             `json:"live_only"` // no A/B slots: live patches only, images refused
	Booted    string           `json:"booted_slot"`
	BootOrder []string         `json:"boot_order"`
	Installed journal.Release  `json:"installed"`
	Update    *journal.Update  `json:"update,omitempty"`
	Last      *journal.Outcome `json:"last,omitempty"`
	Slots     []slotView       `json:"slots"`
}

func view(d *daemon.Device) (statusView, error) {
	booted, _, err := d.Machine.Booted()
	if err != nil {
		return statusView{}, err
	}
	var st slot.State
	if !d.Board.LiveOnly() {
		env, err := d.Env.Load()
		if err != nil {
			return statusView{}, err
		}
		if st, err = slot.ParseState(env, d.Board.SlotNames()); err != nil {
			return statusView{}, err
		}
	}
	rec := d.Journal.Record()
	v := statusView{
		Device: d.Config.DeviceID, Board: d.Board.Name, Version: daemon.Version(), LiveOnly: d.Board.LiveOnly(),
		Booted: booted, BootOrder: st.Order, Installed: rec.Installed, Update: rec.Update, Last: rec.Last,
	}
	if v.Update != nil {
		v.Update.Manifest = nil
	}
	for _, g := range d.Board.SlotGroups {
		for _, s := range g.Slots {
			v.Slots = append(v.Slots, slotView{Group: g.Name, Name: s.Name, Device: s.Device, Booted: s.Name == booted, Left: st.Left[s.Name]})
		}
	}
	return v, nil
}

// viewCommand parses `--config FILE [--json]` and reads the device's view.
func viewCommand(e env, name string, args []string) (statusView, bool, error) {
	fs := flags(e, name, "[--config FILE] [--json]")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return statusView{}, false, err
	}
	d, err := openDevice(e, *cfgPath, false)
	if err != nil {
		return statusView{}, false, err
	}
	defer d.Close()
	v, err := view(d)
	return v, *asJSON, err
}

func cmdStatus(_ context.Context, e env, args []string) error {
	v, asJSON, err := viewCommand(e, "status", args)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, v)
	}
	w := e.stdout
	fmt.Fprintf(w, "device     %s (board %s, agent %s)\n", v.Device, v.Board, v.Version)
	if v.LiveOnly {
		fmt.Fprintf(w, "mode       live-only: kernel and userspace live patches; no A/B slots, so releases that need an image are refused\n")
	} else {
		fmt.Fprintf(w, "booted     slot %s   boot order: %s\n", v.Booted, strings.Join(v.BootOrder, " "))
	}
	switch {
	case v.Installed.Name != "" && v.LiveOnly:
		fmt.Fprintf(w, "installed  %s (version %s, sequence %d), live\n", v.Installed.Name, v.Installed.Version, v.Installed.Sequence)
	case v.Installed.Name != "":
		fmt.Fprintf(w, "installed  %s (version %s, sequence %d) in slot %s\n", v.Installed.Name, v.Installed.Version, v.Installed.Sequence, v.Installed.Slot)
	case v.LiveOnly:
		fmt.Fprintf(w, "installed  no release yet\n")
	default:
		fmt.Fprintf(w, "installed  factory image\n")
	}
	if u := v.Update; u != nil {
		fmt.Fprintf(w, "update     %s → slot %s: %s (%s path)\n", u.Release.Name, u.Release.Slot, u.Step, u.Path)
	}
	if l := v.Last; l != nil {
		fmt.Fprintf(w, "last       %s %s at %s", l.Release, l.State, l.Time.Format("2006-01-02 15:04:05Z"))
		if l.Reason != "" {
			fmt.Fprintf(w, ": %s", l.Reason)
		}
		fmt.Fprintln(w)
	}
	return nil
}

func cmdSlots(_ context.Context, e env, args []string) error {
	v, asJSON, err := viewCommand(e, "slots", args)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(e.stdout, v.Slots)
	}
	fmt.Fprintf(e.stdout, "%-8s %-4s %-7s %-6s %s\n", "GROUP", "SLOT", "BOOTED", "LEFT", "DEVICE")
	for _, s := range v.Slots {
		booted := ""
		if s.Booted {
			booted = "yes"
		}
		fmt.Fprintf(e.stdout, "%-8s %-4s %-7s %-6d %s\n", s.Group, s.Name, booted, s.Left, s.Device)
	}
	return nil
}

func cmdMarkGood(ctx context.Context, e env, args []string) error {
	fs := flags(e, "mark-good", "[--config FILE]")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	if err := parse(fs, args); err != nil {
		return err
	}
	d, err := openDevice(e, *cfgPath, true)
	if err != nil {
		return err
	}
	defer d.Close()
	s, err := d.Engine(nil, nil).MarkGood(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "slot %s marked good\n", s)
	return nil
}

func cmdInstall(ctx context.Context, e env, args []string) error {
	fs := flags(e, "install", "--offline DIR [--release NAME] [--config FILE] [--reboot]")
	cfgPath := fs.String("config", defaultConfig, "agent config `file`")
	dir := fs.String("offline", "", "TUF repository on a `directory` (holding metadata/ and targets/)")
	release := fs.String("release", "", "release `name` (default: the newest that fits this device)")
	reboot := fs.Bool("reboot", false, "reboot into the new slot when it is armed")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --offline DIR is required", errUsage)
	}
	d, err := openDevice(e, *cfgPath, true)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.OpenTUF(*dir); err != nil {
		return err
	}
	if err := d.TUF.Refresh(ctx); err != nil {
		return fmt.Errorf("repository %s: %w", *dir, err)
	}
	n := transport.Notice{Release: *release, Manifest: manifestTarget(*release)}
	if *release == "" {
		if n, err = newest(ctx, d); err != nil {
			return err
		}
	}
	d.NoReboot = !*reboot
	var last transport.Status
	progress := func(s transport.Status) {
		last = s
		switch {
		case s.Total > 0:
			fmt.Fprintf(e.stderr, "%s %s: %3d%% (%d/%d bytes)\n", s.State, s.Release, s.Done*100/s.Total, s.Done, s.Total)
		case s.Reason != "":
			fmt.Fprintf(e.stderr, "%s %s: %s\n", s.State, s.Release, s.Reason)
		default:
			fmt.Fprintf(e.stderr, "%s %s\n", s.State, s.Release)
		}
	}
	err = d.Engine(nil, progress).Install(ctx, n)
	rec := d.Journal.Record()
	switch {
	case errors.Is(err, engine.ErrRebootPending):
		fmt.Fprintf(e.stdout, "%s installed in slot %s and armed to be tried once: reboot to try it\n", rec.Update.Release.Name, rec.Update.Release.Slot)
		return nil
	case errors.Is(err, engine.ErrVerifyPending):
		fmt.Fprintf(e.stdout, "%s is running in slot %s: check it, then graft-agent mark-good (or let the daemon's health checks decide)\n", rec.Update.Release.Name, rec.Update.Release.Slot)
		return nil
	case err != nil:
		return err
	case last.State != "" && liveUserPatch(rec.Live, n.Release):
		// This command ends here: nothing watches for processes that
		// start later until the daemon runs, which re-applies the
		// journalled patches at start.
		fmt.Fprintf(e.stdout, "%s: userspace live patches applied to the processes running now; processes started later are patched once the agent daemon runs (graft-agent run)\n", n.Release)
	case last.State == "" && rec.Installed.Name == n.Release:
		fmt.Fprintf(e.stdout, "%s is already installed\n", n.Release)
	case last.State == "" && rec.Last != nil && rec.Last.Release == n.Release:
		fmt.Fprintf(e.stdout, "%s was already tried here: %s (%s)\n", n.Release, rec.Last.State, rec.Last.Reason)
	}
	return nil
}

// liveUserPatch reports whether release has a userspace live patch
// recorded as live.
func liveUserPatch(live []journal.Live, release string) bool {
	for _, l := range live {
		if l.Release == release && l.Component.Kind == manifest.KindUserPatch {
			return true
		}
	}
	return false
}

func manifestTarget(release string) string {
	return path.Join("releases", release, "manifest.cbor")
}

// newest finds the release with the highest sequence that fits this device.
func newest(ctx context.Context, d *daemon.Device) (transport.Notice, error) {
	targets, err := d.TUF.Targets(ctx)
	if err != nil {
		return transport.Notice{}, err
	}
	var best transport.Notice
	var bestSeq uint64
	for _, t := range targets {
		if path.Base(t.Name) != "manifest.cbor" || !strings.HasPrefix(t.Name, "releases/") {
			continue
		}
		raw, err := d.TUF.ReadTarget(ctx, t.Name, manifest.MaxSize)
		if err != nil {
			return transport.Notice{}, err
		}
		m, err := manifest.Decode(raw)
		if err != nil || !slices.Contains(m.Boards, d.Board.Name) {
			continue
		}
		if m.Sequence > bestSeq {
			best, bestSeq = transport.Notice{Release: m.Name, Manifest: t.Name, Sequence: m.Sequence}, m.Sequence
		}
	}
	if best.Manifest == "" {
		return best, fmt.Errorf("no release for board %s in the repository", d.Board.Name)
	}
	return best, nil
}
