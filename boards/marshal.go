package boards

import (
	"bytes"
	"encoding/json"
)

// The wire shapes of a board file, in the order fields are written.
type wireBoard struct {
	Name       string         `json:"name"`
	Arch       string         `json:"arch"`
	Compatible []string       `json:"compatible,omitempty"`
	OSRelease  []string       `json:"os_release,omitempty"`
	Console    *wireConsole   `json:"console,omitempty"`
	Slots      wireSlots      `json:"slots,omitempty"`
	Bootloader wireBootloader `json:"bootloader"`
	Cmdline    string         `json:"cmdline,omitempty"`
	Reboot     string         `json:"reboot,omitempty"`
}

type wireConsole struct {
	Device string `json:"device"`
	Baud   int    `json:"baud,omitempty"`
}

type wireBootloader struct {
	Kind        string        `json:"kind"`
	FWEnvConfig string        `json:"fw_env_config,omitempty"`
	FWEnv       []wireEnvLine `json:"fw_env,omitempty"`
	GrubEnv     string        `json:"grubenv,omitempty"`
	Attempts    int           `json:"attempts,omitempty"`
	TryAttempts int           `json:"try_attempts,omitempty"`
}

type wireEnvLine struct {
	Device     string `json:"device"`
	Offset     int64  `json:"offset"`
	Size       int64  `json:"size"`
	SectorSize int64  `json:"sector_size,omitempty"`
}

// wireSlots keeps the groups and slots in order, which a Go map would not.
type wireSlots []SlotGroup

func (ws wireSlots) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, g := range ws {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := writeKey(&buf, g.Name); err != nil {
			return nil, err
		}
		buf.WriteByte('{')
		for j, s := range g.Slots {
			if j > 0 {
				buf.WriteByte(',')
			}
			if err := writeKey(&buf, s.Name); err != nil {
				return nil, err
			}
			v, err := json.Marshal(s.Device)
			if err != nil {
				return nil, err
			}
			buf.Write(v)
		}
		buf.WriteByte('}')
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func writeKey(buf *bytes.Buffer, k string) error {
	v, err := json.Marshal(k)
	if err != nil {
		return err
	}
	buf.Write(v)
	buf.WriteByte(':')
	return nil
}

// MarshalJSON writes b in the board-file format (docs/boards.md), so that
// what a tool prints can be loaded back as a board file.
func (b Board) MarshalJSON() ([]byte, error) {
	w := wireBoard{
		Name:       b.Name,
		Arch:       b.Arch,
		Compatible: b.Compatible,
		OSRelease:  b.OSRelease,
		Slots:      wireSlots(b.SlotGroups),
		Bootloader: wireBootloader{
			Kind:        b.Bootloader.Kind,
			FWEnvConfig: b.Bootloader.FWEnvConfig,
			GrubEnv:     b.Bootloader.GrubEnv,
			Attempts:    b.Bootloader.Attempts,
			TryAttempts: b.Bootloader.TryAttempts,
		},
		Cmdline: b.Cmdline,
		Reboot:  b.Reboot,
	}
	if b.Console != "" || b.Baud != 0 {
		w.Console = &wireConsole{Device: b.Console, Baud: b.Baud}
	}
	for _, l := range b.Bootloader.FWEnv {
		w.Bootloader.FWEnv = append(w.Bootloader.FWEnv, wireEnvLine(l))
	}
	return json.Marshal(w)
}
