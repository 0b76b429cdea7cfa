package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/manifest"
)

// Schema is the version of the record's layout.
const Schema = 1

// ErrCorrupt means the journal file exists but cannot be understood.
var ErrCorrupt = errors.New("journal: corrupt")

// Step is where an update stands. The engine's transition table gives each
// step its meaning; the order is the lifecycle:
// Plan → Apply (download, install, switch, reboot) → Verify → Commit or Revert.
type Step string

// The steps of an update, in lifecycle order.
const (
	StepPlanned     Step = "planned"     // manifest verified and checked, target slot chosen
	StepDownloading Step = "downloading" // fetching the image into staging (Offset journalled)
	StepDownloaded  Step = "downloaded"  // staged image verified against TUF
	StepInstalling  Step = "installing"  // writing the inactive slot
	StepInstalled   Step = "installed"   // slot written and read back
	StepSwitching   Step = "switching"   // telling the bootloader to try the new slot once
	StepRebooting   Step = "rebooting"   // try armed; waiting for the reboot (BootID set)
	StepVerifying   Step = "verifying"   // booted into the new slot; health checks running
	StepReverting   Step = "reverting"   // health failed; fallback armed; waiting for the reboot

	// The live path: Planned → Downloading (the live targets) → Applying
	// → Verifying → committed; a failure on the way goes to Unapplying,
	// then to the fallback image (Planned again, path "ab") or to the
	// outcome.
	StepApplying   Step = "applying"   // live components being applied one by one (Applied, Applying)
	StepUnapplying Step = "unapplying" // reverting the live components applied so far (Reason says why)
)

// Release identifies what a slot holds.
type Release struct {
	Name     string `json:"name,omitempty"`
	Version  string `json:"version,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	Slot     string `json:"slot,omitempty"`
}

// Update is the update in flight.
type Update struct {
	Release        Release   `json:"release"`         // what is being installed, and into which slot
	From           string    `json:"from"`            // the slot booted when the update began
	ManifestTarget string    `json:"manifest_target"` // TUF target name of the manifest
	Manifest       []byte    `json:"manifest"`        // the verified manifest bytes (CBOR)
	Path           string    `json:"path"`            // "ab" or "live"
	Why            string    `json:"why,omitempty"`   // why this path was chosen
	Step           Step      `json:"step"`
	Staging        string    `json:"staging,omitempty"` // staged download
	Offset         int64     `json:"offset,omitempty"`  // bytes of Staging known to be on disk
	BootID         string    `json:"boot_id,omitempty"` // boot in which the reboot was requested
	Reason         string    `json:"reason,omitempty"`  // why a revert is under way
	Tries          int       `json:"tries,omitempty"`   // tries of the new slot that ended without a verdict
	Started        time.Time `json:"started"`
	// The notice that started the update: its fleet-issued ID and the
	// fleet's time (never compared with this device's clock).
	NoticeID   string `json:"notice_id,omitempty"`
	NoticeTime int64  `json:"notice_time,omitempty"`

	// Image is the image component the A/B path installs; "" means the
	// first image of the manifest that fits the board.
	Image string `json:"image,omitempty"`
	// The live path.
	Fallback     string            `json:"fallback,omitempty"`      // image component to install if the live path fails; "" = none
	FallbackSlot string            `json:"fallback_slot,omitempty"` // the slot that image would go to
	Deferred     string            `json:"deferred,omitempty"`      // image component to install at the maintenance window after a live commit
	Files        map[string]string `json:"files,omitempty"`         // verified live targets: TUF target name → local path
	Applied      []string          `json:"applied,omitempty"`       // live components applied, in order
	Applying     string            `json:"applying,omitempty"`      // live component whose apply began and did not end
	Summaries    []string          `json:"summaries,omitempty"`     // one line per applied component, for the report
	// Later is set on the A/B install of an image deferred by the
	// live-now-image-later policy: its commit retires the release's live
	// components.
	Later bool `json:"later,omitempty"`
	// HealthFailed is set when the live path's health checks failed:
	// unapplying then ends in a rollback, never in the fallback image.
	HealthFailed bool `json:"health_failed,omitempty"`
}

// Live is one live component active on this device.
type Live struct {
	Release   string             `json:"release"`
	Sequence  uint64             `json:"sequence"`
	Component manifest.Component `json:"component"`
	Summary   string             `json:"summary,omitempty"`
	Time      time.Time          `json:"time"`
}

// Deferred is an image the live-now-image-later policy installs at the
// next maintenance window, folding a live fix into the base image.
type Deferred struct {
	Release        Release `json:"release"`         // the live release (Slot: the slot the image goes to is chosen then)
	ManifestTarget string  `json:"manifest_target"` // TUF target name of its manifest
	Manifest       []byte  `json:"manifest"`        // the verified manifest bytes
	Image          string  `json:"image"`           // image component to install
}

// Outcome is how the last update ended.
type Outcome struct {
	Release  string    `json:"release"`
	Sequence uint64    `json:"sequence"`
	State    string    `json:"state"` // committed, rolled-back, failed, refused
	Path     string    `json:"path,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"` // this device's clock: for people, never for decisions
	// The notice the update came from (Update.NoticeID, NoticeTime): a
	// failed release is tried again for another notice only.
	NoticeID   string `json:"notice_id,omitempty"`
	NoticeTime int64  `json:"notice_time,omitempty"`
}

// Record is the whole state of the agent.
type Record struct {
	Schema    int     `json:"schema"`
	Installed Release `json:"installed"`
	// Previous is what the other slot holds after a commit: what a
	// bootloader fallback brings back.
	Previous Release `json:"previous,omitempty"`
	// RolledBack is the highest sequence this device tried and rolled back;
	// releases at or below it are not tried again.
	RolledBack uint64   `json:"rolled_back,omitempty"`
	Update     *Update  `json:"update,omitempty"`
	Last       *Outcome `json:"last,omitempty"`
	// Live lists the live components applied by committed releases and
	// not retired since, oldest first. The appliers keep their own
	// state (what to reload at boot); this is the engine's account.
	Live []Live `json:"live,omitempty"`
	// Deferred is an image waiting for the maintenance window.
	Deferred *Deferred `json:"deferred,omitempty"`
}

// Journal is the record on disk. It is not safe for concurrent use.
type Journal struct {
	path string
	rec  Record
	// BeforeSave and OnSave, when set, are called before and after every
	// durable save. Tests use them to cut power at every step.
	BeforeSave, OnSave func(Record)
}

// Open reads the journal at path; a missing file is an empty record.
func Open(path string) (*Journal, error) {
	j := &Journal{path: path, rec: Record{Schema: Schema}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := json.Unmarshal(b, &j.rec); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	if j.rec.Schema != Schema {
		return nil, fmt.Errorf("%w: %s: schema %d, this agent knows %d", ErrCorrupt, path, j.rec.Schema, Schema)
	}
	return j, nil
}

// Path is where the journal lives.
func (j *Journal) Path() string { return j.path }

// Record returns a copy of the current record.
func (j *Journal) Record() Record { return clone(j.rec) }

// clone copies r deeply enough that neither copy can change the other.
func clone(r Record) Record {
	if r.Update != nil {
		u := *r.Update
		u.Manifest = slices.Clone(u.Manifest)
		u.Files = maps.Clone(u.Files)
		u.Applied = slices.Clone(u.Applied)
		u.Summaries = slices.Clone(u.Summaries)
		r.Update = &u
	}
	r.Live = slices.Clone(r.Live)
	if r.Deferred != nil {
		d := *r.Deferred
		r.Deferred = &d
	}
	if r.Last != nil {
		o := *r.Last
		r.Last = &o
	}
	return r
}

// Save makes r the durable record.
func (j *Journal) Save(r Record) error {
	r.Schema = Schema
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if j.BeforeSave != nil {
		j.BeforeSave(r)
	}
	if err := os.MkdirAll(filepath.Dir(j.path), 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := atomicfile.WriteFile(j.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.rec = clone(r)
	if j.OnSave != nil {
		j.OnSave(j.Record())
	}
	return nil
}
