package provision

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

// Steps recorded in State.Step, in order.
const (
	StepIdentity = "identity" // key generated, ID assigned
	StepInstall  = "install"  // certificate, config, broker CA, TUF root installed
	StepImage    = "image"    // slots written and read back
	StepFinish   = "finish"   // boot environment written and read back: provisioned
)

var stepOrder = []string{"", StepIdentity, StepInstall, StepImage, StepFinish}

func stepIndex(s string) int {
	for i, x := range stepOrder {
		if x == s {
			return i
		}
	}
	return -1
}

// stateSchema is the version of provision.json's layout.
const stateSchema = 1

// State is the device's provisioning progress, kept in provision.json in
// the data directory and written atomically after every step.
type State struct {
	Schema     int            `json:"schema"`
	ID         string         `json:"id,omitempty"`
	Step       string         `json:"step,omitempty"`
	CertSHA256 []byte         `json:"cert_sha256,omitempty"`
	Release    string         `json:"release,omitempty"` // release the image step wrote (or is writing)
	Image      *ImageResponse `json:"image,omitempty"`
	Staging    string         `json:"staging,omitempty"` // image download in progress
	Offset     int64          `json:"offset,omitempty"`  // bytes of Staging known to be on disk
	Time       time.Time      `json:"time"`
}

// Provisioned reports whether every step is done.
func (s State) Provisioned() bool { return s.Step == StepFinish }

// ErrCorruptState: provision.json exists but cannot be read.
var ErrCorruptState = errors.New("provision: corrupt provision.json")

// StateFile is the name of the state file in the data directory.
const StateFile = "provision.json"

// ReadState reads the provisioning state of the data directory dir; a
// missing file is a blank device.
func ReadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{Schema: stateSchema}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("provision: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil || s.Schema != stateSchema || stepIndex(s.Step) < 0 {
		return State{}, fmt.Errorf("%w: %v", ErrCorruptState, err)
	}
	return s, nil
}

func writeState(dir string, s State) error {
	s.Schema = stateSchema
	s.Time = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, StateFile), b, 0o600); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}
