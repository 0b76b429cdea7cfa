package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/graft-dev/graft/agent/atomicfile"
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
}

// Outcome is how the last update ended.
type Outcome struct {
	Release  string    `json:"release"`
	Sequence uint64    `json:"sequence"`
	State    string    `json:"state"` // committed, rolled-back, failed, refused
	Path     string    `json:"path,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
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
		r.Update = &u
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
