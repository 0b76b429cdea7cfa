package manifest

import (
	"fmt"
	"slices"
)

// Device is what Check needs to know about the device a manifest is for.
type Device struct {
	Board             string // board name, matched against Manifest.Boards
	Arch              string // "arm64", "arm", "amd64"
	DeviceClass       string // the class whose sequence InstalledSequence is
	InstalledSequence uint64 // sequence of the installed release; 0 if none
	AgentVersion      string // the running agent's version
}

// Check decides whether m may be installed on d. It is pure. It returns
// nil, or the first failed check in this order, wrapping its sentinel:
// Validate (ErrInvalid, ErrUnsupportedFormat); d.Board in m.Boards
// (ErrWrongBoard); m.Arch empty or equal to d.Arch (ErrWrongArch);
// m.DeviceClass equal to d.DeviceClass when both are set (ErrWrongClass);
// m.Sequence strictly above d.InstalledSequence (ErrOldSequence);
// d.AgentVersion at least m.MinAgentVersion when that is set
// (ErrAgentTooOld, also when d.AgentVersion cannot be parsed, and for a
// development build, "devel" or "(devel)": a build that carries no version
// cannot show that it is new enough).
func Check(m *Manifest, d Device) error {
	if err := m.Validate(); err != nil {
		return err
	}
	if !slices.Contains(m.Boards, d.Board) {
		return fmt.Errorf("manifest: board %q is not in boards %q: %w", d.Board, m.Boards, ErrWrongBoard)
	}
	if m.Arch != "" && m.Arch != d.Arch {
		return fmt.Errorf("manifest: arch %q does not match device arch %q: %w", m.Arch, d.Arch, ErrWrongArch)
	}
	if m.DeviceClass != "" && d.DeviceClass != "" && m.DeviceClass != d.DeviceClass {
		return fmt.Errorf("manifest: device class %q does not match the device's class %q: %w", m.DeviceClass, d.DeviceClass, ErrWrongClass)
	}
	if m.Sequence <= d.InstalledSequence {
		return fmt.Errorf("manifest: sequence %d is not above installed %d: %w", m.Sequence, d.InstalledSequence, ErrOldSequence)
	}
	if m.MinAgentVersion != "" {
		agent, err := parseVersion(d.AgentVersion)
		if err != nil {
			// An agent that cannot show it is new enough is not.
			return fmt.Errorf("manifest: agent %w: %w", err, ErrAgentTooOld)
		}
		if agent.devel {
			return fmt.Errorf("manifest: agent %q is a development build without a version, min agent version is %s: %w", d.AgentVersion, m.MinAgentVersion, ErrAgentTooOld)
		}
		need, _ := parseVersion(m.MinAgentVersion) // Validate parsed it
		if agent.compare(need) < 0 {
			return fmt.Errorf("manifest: agent version %s is below min agent version %s: %w", d.AgentVersion, m.MinAgentVersion, ErrAgentTooOld)
		}
	}
	return nil
}
