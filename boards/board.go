package boards

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// ExitReboot is the exit code with which the agent asks its supervisor to
// "reboot" it, on boards whose Reboot is "exit" (the simulated board).
const ExitReboot = 75

// CmdlineSlotParam is the kernel command line parameter naming the booted
// slot, as RAUC's U-Boot and GRUB scripts set it: rauc.slot=A.
const CmdlineSlotParam = "rauc.slot"

// Defaults applied by WithDefaults (and so by every board file).
const (
	DefaultBaud        = 115200
	DefaultAttempts    = 3
	DefaultTryAttempts = 1
	DefaultCmdline     = "/proc/cmdline"
	DefaultReboot      = RebootSyscall
)

// Values of Board.Reboot.
const (
	RebootSyscall = "syscall" // reboot(2)
	RebootExit    = "exit"    // exit with ExitReboot; a supervisor restarts the agent
)

// Values of Bootloader.Kind.
const (
	BootloaderUBoot = "uboot"
	BootloaderGrub  = "grub"
)

// Arches are the architectures a board may have (Go's GOARCH names).
var Arches = []string{"arm64", "arm", "amd64"}

// Slot is one member of a slot group: its name as the bootloader knows it
// ("A", "B") and the block device or file that holds it.
type Slot struct {
	Name   string
	Device string
}

// SlotGroup is a set of interchangeable slots, such as "rootfs".
type SlotGroup struct {
	Name  string
	Slots []Slot
}

// EnvLocation is one line of a fw_env.config: where one copy of the U-Boot
// environment lives. Two locations mean a redundant environment.
type EnvLocation struct {
	Device     string // file or block device
	Offset     int64  // byte offset of the copy in Device
	Size       int64  // size of the copy in bytes
	SectorSize int64  // erase sector size, 0 to leave it out
}

// Bootloader says which boot-state backend a board uses and its try counts.
type Bootloader struct {
	Kind        string // "uboot" or "grub"
	FWEnvConfig string // uboot: path of the fw_env.config to use
	// FWEnv is the content the board expects in FWEnvConfig, for tools that
	// create it (provisioning, the simulated board). It may be empty when
	// the device image ships its own fw_env.config.
	FWEnv       []EnvLocation
	GrubEnv     string // grub: path of the grubenv file
	Attempts    int    // boots a good slot gets before fallback; default 3
	TryAttempts int    // boots a newly installed slot gets; default 1
}

// Board is one kind of device.
type Board struct {
	Name       string
	Arch       string   // "arm64", "arm" or "amd64"
	Compatible []string // device-tree compatible strings that identify it
	Console    string   // console device under /dev, e.g. "ttyAMA0"; "" for none
	Baud       int
	SlotGroups []SlotGroup
	Bootloader Bootloader
	Cmdline    string // file holding the kernel command line; default "/proc/cmdline"
	Reboot     string // "syscall" or "exit"
}

// Group returns the slot group called name.
func (b Board) Group(name string) (SlotGroup, error) {
	for _, g := range b.SlotGroups {
		if g.Name == name {
			g.Slots = slices.Clone(g.Slots)
			return g, nil
		}
	}
	return SlotGroup{}, fmt.Errorf("board %q: %w %q", b.Name, ErrUnknownGroup, name)
}

// SlotNames returns the slot names of all groups, each once, in order
// ("A", "B"): the names the bootloader's BOOT_ORDER speaks of.
func (b Board) SlotNames() []string {
	var names []string
	for _, g := range b.SlotGroups {
		for _, s := range g.Slots {
			if !slices.Contains(names, s.Name) {
				names = append(names, s.Name)
			}
		}
	}
	return names
}

// Resolve returns a copy of b whose relative paths (slot devices,
// fw_env.config and the locations in FWEnv, grubenv, cmdline file) are
// joined to base, which should be absolute (the agent's data directory).
func (b Board) Resolve(base string) Board {
	r := b.clone()
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	for i := range r.SlotGroups {
		for j := range r.SlotGroups[i].Slots {
			s := &r.SlotGroups[i].Slots[j]
			s.Device = abs(s.Device)
		}
	}
	r.Bootloader.FWEnvConfig = abs(r.Bootloader.FWEnvConfig)
	for i := range r.Bootloader.FWEnv {
		r.Bootloader.FWEnv[i].Device = abs(r.Bootloader.FWEnv[i].Device)
	}
	r.Bootloader.GrubEnv = abs(r.Bootloader.GrubEnv)
	r.Cmdline = abs(r.Cmdline)
	return r
}

// WithDefaults returns a copy of b with unset fields given their defaults:
// baud (when there is a console), attempts, try attempts, cmdline, reboot.
func (b Board) WithDefaults() Board {
	r := b.clone()
	if r.Console != "" && r.Baud == 0 {
		r.Baud = DefaultBaud
	}
	if r.Bootloader.Attempts == 0 {
		r.Bootloader.Attempts = DefaultAttempts
	}
	if r.Bootloader.TryAttempts == 0 {
		r.Bootloader.TryAttempts = DefaultTryAttempts
	}
	if r.Cmdline == "" {
		r.Cmdline = DefaultCmdline
	}
	if r.Reboot == "" {
		r.Reboot = DefaultReboot
	}
	return r
}

// FWEnvConfigText returns the fw_env.config content described by FWEnv, in
// the format fw_printenv and fw_setenv read: "device offset size [sector]".
func (bl Bootloader) FWEnvConfigText() string {
	var sb strings.Builder
	sb.WriteString("# device offset size [sector-size]\n")
	for _, l := range bl.FWEnv {
		fmt.Fprintf(&sb, "%s 0x%x 0x%x", l.Device, l.Offset, l.Size)
		if l.SectorSize > 0 {
			fmt.Fprintf(&sb, " 0x%x", l.SectorSize)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

// token reports whether s is 1 to max bytes, each an ASCII letter (upper
// case only if upper), a digit or one of punct. A loop, not a counted
// regexp: those compile at package init into programs that cost the
// device binary's init time and resident memory.
func token(s string, max int, upper bool, punct string) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z' && upper:
		case c < 0x80 && strings.IndexByte(punct, c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validBoardName(s string) bool { return token(s, 64, true, "._-") }
func validGroup(s string) bool     { return token(s, 32, false, "_-") }
func validSlotName(s string) bool  { return token(s, 16, true, "") }
func validConsole(s string) bool   { return token(s, 32, true, "._-") }

// Bauds are the console speeds a board may use.
var Bauds = []int{9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1500000, 3000000}

const maxAttempts = 255

// Validate checks b field by field and returns the first problem as a
// *FieldError (matching ErrInvalid) that names the field. Defaults are not
// applied: call WithDefaults first for a board built in code.
func (b Board) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fieldErr(b.Name, field, format, args...)
	}
	missing := func(field string) error {
		return &FieldError{Board: b.Name, Field: field, Err: ErrMissing}
	}
	if b.Name == "" {
		return missing("name")
	}
	if !validBoardName(b.Name) {
		return bad("name", "must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	if b.Arch == "" {
		return missing("arch")
	}
	if !slices.Contains(Arches, b.Arch) {
		return bad("arch", "must be one of %s, not %q", strings.Join(Arches, ", "), b.Arch)
	}
	for i, c := range b.Compatible {
		f := fmt.Sprintf("compatible[%d]", i)
		if c == "" || strings.ContainsAny(c, "\x00\n") {
			return bad(f, "must be a non-empty string without NUL or newline")
		}
		if slices.Index(b.Compatible, c) != i {
			return bad(f, "%q is listed twice", c)
		}
	}
	if b.Console != "" {
		if !validConsole(b.Console) {
			return bad("console.device", "must be a device name under /dev, like \"ttyAMA0\"")
		}
		if !slices.Contains(Bauds, b.Baud) {
			return bad("console.baud", "%d is not one of %v", b.Baud, Bauds)
		}
	} else if b.Baud != 0 {
		return bad("console.baud", "set without console.device")
	}
	if err := b.validateSlots(); err != nil {
		return err
	}
	if err := b.validateBootloader(); err != nil {
		return err
	}
	if b.Cmdline == "" {
		return missing("cmdline")
	}
	if strings.ContainsRune(b.Cmdline, 0) {
		return bad("cmdline", "path contains NUL")
	}
	if b.Reboot != RebootSyscall && b.Reboot != RebootExit {
		return bad("reboot", "must be %q or %q, not %q", RebootSyscall, RebootExit, b.Reboot)
	}
	return nil
}

func (b Board) validateSlots() error {
	if len(b.SlotGroups) == 0 {
		return &FieldError{Board: b.Name, Field: "slots", Err: ErrMissing}
	}
	devices := map[string]string{}
	hasRootfs := false
	for gi, g := range b.SlotGroups {
		gf := "slots." + g.Name
		if !validGroup(g.Name) {
			return fieldErr(b.Name, gf, "group name must be 1 to 32 of a-z 0-9 _ -")
		}
		if slices.IndexFunc(b.SlotGroups, func(o SlotGroup) bool { return o.Name == g.Name }) != gi {
			return fieldErr(b.Name, gf, "group listed twice")
		}
		hasRootfs = hasRootfs || g.Name == "rootfs"
		if len(g.Slots) < 2 {
			return fieldErr(b.Name, gf, "needs at least two slots, has %d", len(g.Slots))
		}
		for si, s := range g.Slots {
			sf := gf + "." + s.Name
			if !validSlotName(s.Name) {
				return fieldErr(b.Name, sf, "slot name must be 1 to 16 of A-Z a-z 0-9")
			}
			if slices.IndexFunc(g.Slots, func(o Slot) bool { return o.Name == s.Name }) != si {
				return fieldErr(b.Name, sf, "slot listed twice")
			}
			if s.Device == "" {
				return &FieldError{Board: b.Name, Field: sf, Err: fmt.Errorf("%w: slot device", ErrMissing)}
			}
			if strings.ContainsRune(s.Device, 0) {
				return fieldErr(b.Name, sf, "device path contains NUL")
			}
			if other, ok := devices[s.Device]; ok {
				return fieldErr(b.Name, sf, "device %s is also slot %s", s.Device, other)
			}
			devices[s.Device] = g.Name + "." + s.Name
		}
	}
	if !hasRootfs {
		return &FieldError{Board: b.Name, Field: "slots.rootfs", Err: ErrMissing}
	}
	return nil
}

func (b Board) validateBootloader() error {
	bl := b.Bootloader
	switch bl.Kind {
	case BootloaderUBoot:
		if bl.FWEnvConfig == "" {
			return &FieldError{Board: b.Name, Field: "bootloader.fw_env_config", Err: ErrMissing}
		}
		if len(bl.FWEnv) > 2 {
			return fieldErr(b.Name, "bootloader.fw_env", "at most two copies, has %d", len(bl.FWEnv))
		}
		for i, l := range bl.FWEnv {
			f := fmt.Sprintf("bootloader.fw_env[%d]", i)
			switch {
			case l.Device == "":
				return &FieldError{Board: b.Name, Field: f + ".device", Err: ErrMissing}
			case strings.ContainsAny(l.Device, "\x00 \t\n#"):
				return fieldErr(b.Name, f+".device", "path contains a blank, '#' or NUL")
			case l.Offset < 0:
				return fieldErr(b.Name, f+".offset", "must not be negative")
			case l.Size <= 0:
				return fieldErr(b.Name, f+".size", "must be positive")
			case l.SectorSize < 0:
				return fieldErr(b.Name, f+".sector_size", "must not be negative")
			case i > 0 && l.Size != bl.FWEnv[0].Size:
				return fieldErr(b.Name, f+".size", "redundant copies must have the same size")
			}
		}
	case BootloaderGrub:
		if bl.GrubEnv == "" {
			return &FieldError{Board: b.Name, Field: "bootloader.grubenv", Err: ErrMissing}
		}
	case "":
		return &FieldError{Board: b.Name, Field: "bootloader.kind", Err: ErrMissing}
	default:
		return fieldErr(b.Name, "bootloader.kind", "must be %q or %q, not %q", BootloaderUBoot, BootloaderGrub, bl.Kind)
	}
	if bl.Attempts < 1 || bl.Attempts > maxAttempts {
		return fieldErr(b.Name, "bootloader.attempts", "must be 1 to %d, not %d", maxAttempts, bl.Attempts)
	}
	if bl.TryAttempts < 1 || bl.TryAttempts > maxAttempts {
		return fieldErr(b.Name, "bootloader.try_attempts", "must be 1 to %d, not %d", maxAttempts, bl.TryAttempts)
	}
	return nil
}

// clone returns a deep copy of b, sharing no slices.
func (b Board) clone() Board {
	r := b
	r.Compatible = slices.Clone(b.Compatible)
	r.SlotGroups = slices.Clone(b.SlotGroups)
	for i := range r.SlotGroups {
		r.SlotGroups[i].Slots = slices.Clone(r.SlotGroups[i].Slots)
	}
	r.Bootloader.FWEnv = slices.Clone(b.Bootloader.FWEnv)
	return r
}
