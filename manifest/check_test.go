package manifest_test

import (
	"errors"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

func TestCheck(t *testing.T) {
	// fixtureManifest: boards rpi4, qemu-arm64; arch arm64; class gateway;
	// sequence 7; min agent 1.2.0.
	dev := manifest.Device{Board: "rpi4", Arch: "arm64", DeviceClass: "gateway", InstalledSequence: 6, AgentVersion: "v1.2.0"}
	tests := []struct {
		name string
		m    func(m *manifest.Manifest)
		d    func(d *manifest.Device)
		want error
	}{
		{"accepted", nil, nil, nil},
		{"second board", nil, func(d *manifest.Device) { d.Board = "qemu-arm64" }, nil},
		{"wrong board", nil, func(d *manifest.Device) { d.Board = "rpi3" }, manifest.ErrWrongBoard},
		{"empty device board", nil, func(d *manifest.Device) { d.Board = "" }, manifest.ErrWrongBoard},
		{"board match is exact", nil, func(d *manifest.Device) { d.Board = "RPI4" }, manifest.ErrWrongBoard},
		{"wrong arch", nil, func(d *manifest.Device) { d.Arch = "arm" }, manifest.ErrWrongArch},
		{"device arch unknown", nil, func(d *manifest.Device) { d.Arch = "" }, manifest.ErrWrongArch},
		{"any arch", func(m *manifest.Manifest) { m.Arch = "" }, func(d *manifest.Device) { d.Arch = "amd64" }, nil},
		{"wrong class", nil, func(d *manifest.Device) { d.DeviceClass = "camera" }, manifest.ErrWrongClass},
		{"device without class", nil, func(d *manifest.Device) { d.DeviceClass = "" }, nil},
		{"manifest without class", func(m *manifest.Manifest) { m.DeviceClass = "" }, nil, nil},
		{"same sequence", nil, func(d *manifest.Device) { d.InstalledSequence = 7 }, manifest.ErrOldSequence},
		{"older sequence", nil, func(d *manifest.Device) { d.InstalledSequence = 8 }, manifest.ErrOldSequence},
		{"sequence 0 never installs", func(m *manifest.Manifest) { m.Sequence = 0 }, func(d *manifest.Device) { d.InstalledSequence = 0 }, manifest.ErrOldSequence},
		{"first install", nil, func(d *manifest.Device) { d.InstalledSequence = 0 }, nil},
		{"agent too old", nil, func(d *manifest.Device) { d.AgentVersion = "1.1.9" }, manifest.ErrAgentTooOld},
		{"agent pre-release of min", nil, func(d *manifest.Device) { d.AgentVersion = "1.2.0-rc.1" }, manifest.ErrAgentTooOld},
		{"agent newer", nil, func(d *manifest.Device) { d.AgentVersion = "1.10.0" }, nil},
		// A development build has no version: it cannot show that it is new
		// enough (it used to compare above every release).
		{"agent dev build", nil, func(d *manifest.Device) { d.AgentVersion = "(devel)" }, manifest.ErrAgentTooOld},
		{"agent dev build devel", nil, func(d *manifest.Device) { d.AgentVersion = "devel" }, manifest.ErrAgentTooOld},
		// Go stamps a build from a checkout with a pseudo-version: that is
		// what it is, 0.0.0 plus a commit.
		{"agent pseudo-version", nil, func(d *manifest.Device) { d.AgentVersion = "v0.0.0-20261204164601-c39b316aa1b2+dirty" }, manifest.ErrAgentTooOld},
		{"dev build without min agent version", func(m *manifest.Manifest) { m.MinAgentVersion = "" }, func(d *manifest.Device) { d.AgentVersion = "(devel)" }, nil},
		{"agent version unparsable", nil, func(d *manifest.Device) { d.AgentVersion = "garbage" }, manifest.ErrAgentTooOld},
		{"agent version unknown", nil, func(d *manifest.Device) { d.AgentVersion = "" }, manifest.ErrAgentTooOld},
		{"no min agent version", func(m *manifest.Manifest) { m.MinAgentVersion = "" }, func(d *manifest.Device) { d.AgentVersion = "" }, nil},
		{"invalid manifest", func(m *manifest.Manifest) { m.Boards = nil }, nil, manifest.ErrInvalid},
		{"unsupported format", func(m *manifest.Manifest) { m.Format = 2 }, nil, manifest.ErrUnsupportedFormat},
		// The order of checks: the board is checked before the sequence.
		{"wrong board and old sequence", nil, func(d *manifest.Device) { d.Board = "x"; d.InstalledSequence = 99 }, manifest.ErrWrongBoard},
	}
	all := []error{manifest.ErrInvalid, manifest.ErrUnsupportedFormat, manifest.ErrWrongBoard, manifest.ErrWrongArch,
		manifest.ErrWrongClass, manifest.ErrOldSequence, manifest.ErrAgentTooOld}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, d := fixtureManifest(), dev
			if tt.m != nil {
				tt.m(m)
			}
			if tt.d != nil {
				tt.d(&d)
			}
			err := manifest.Check(m, d)
			t.Log(err)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			for _, s := range all {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("Check error %v also wraps %v", err, s)
				}
			}
		})
	}
	if err := manifest.Check(nil, dev); !errors.Is(err, manifest.ErrInvalid) {
		t.Errorf("Check(nil) = %v, want ErrInvalid", err)
	}
}
