package boards

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestBuiltinsValidate(t *testing.T) {
	s := Builtin()
	want := []string{"beaglebone-black", "debian-server", "qemu-virt-amd64", "qemu-virt-arm64", "qemu-virt-armv7", "raspberrypi4-64", "sim"}
	if got := s.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	files, err := fs.Glob(builtinFS, "builtin/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d built-in files for %d boards", len(files), len(want))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		b, err := s.Lookup(name)
		if err != nil {
			t.Fatalf("%s: file name is not the board name: %v", f, err)
		}
		if err := b.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if b.LiveOnly() {
			if len(b.SlotGroups) != 0 {
				t.Errorf("%s: live-only board with slots %+v", name, b.SlotGroups)
			}
			continue
		}
		rootfs, err := b.Group("rootfs")
		if err != nil || len(rootfs.Slots) != 2 || rootfs.Slots[0].Name != "A" || rootfs.Slots[1].Name != "B" {
			t.Errorf("%s: rootfs = %+v, %v; want slots A, B", name, rootfs, err)
		}
		if b.Bootloader.Attempts != 3 || b.Bootloader.TryAttempts != 1 {
			t.Errorf("%s: attempts %d/%d, want 3/1", name, b.Bootloader.Attempts, b.Bootloader.TryAttempts)
		}
	}
}

func TestBuiltinFacts(t *testing.T) {
	s := Builtin()
	tests := []struct {
		board, arch, console, slotA, slotB, reboot string
		envLines                                   int
	}{
		{"sim", runtime.GOARCH, "", "slot-a.img", "slot-b.img", RebootExit, 1},
		{"qemu-virt-arm64", "arm64", "ttyAMA0", "/dev/vda2", "/dev/vda3", RebootSyscall, 2},
		{"qemu-virt-armv7", "arm", "ttyAMA0", "/dev/vda2", "/dev/vda3", RebootSyscall, 2},
		{"raspberrypi4-64", "arm64", "ttyS0", "/dev/mmcblk0p2", "/dev/mmcblk0p3", RebootSyscall, 1},
		{"beaglebone-black", "arm", "ttyS0", "/dev/mmcblk1p2", "/dev/mmcblk1p3", RebootSyscall, 2},
		{"qemu-virt-amd64", "amd64", "ttyS0", "/dev/vda2", "/dev/vda3", RebootSyscall, 0},
	}
	for _, tt := range tests {
		t.Run(tt.board, func(t *testing.T) {
			b, err := s.Lookup(tt.board)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := b.Group("rootfs")
			got := []string{b.Arch, b.Console, g.Slots[0].Device, g.Slots[1].Device, b.Reboot}
			want := []string{tt.arch, tt.console, tt.slotA, tt.slotB, tt.reboot}
			if !slices.Equal(got, want) {
				t.Errorf("arch, console, A, B, reboot = %q, want %q", got, want)
			}
			if tt.envLines == 0 {
				if b.Bootloader.Kind != BootloaderGrub || b.Bootloader.GrubEnv != "/boot/grub/grubenv" {
					t.Errorf("bootloader %+v, want GRUB's /boot/grub/grubenv", b.Bootloader)
				}
			} else if len(b.Bootloader.FWEnv) != tt.envLines || b.Bootloader.Kind != BootloaderUBoot {
				t.Errorf("bootloader %+v, want uboot with %d env copies", b.Bootloader, tt.envLines)
			}
			if b.Console != "" && b.Baud != 115200 {
				t.Errorf("baud %d", b.Baud)
			}
		})
	}
}

// TestFWEnvConfigWithFwPrintenv writes each U-Boot board's fw_env.config
// (devices moved into a temporary directory) and an environment made by
// mkenvimage at the board's offsets, then reads it back with the real
// fw_printenv and writes it with fw_setenv.
func TestFWEnvConfigWithFwPrintenv(t *testing.T) {
	for _, tool := range []string{"fw_printenv", "fw_setenv", "mkenvimage"} {
		if _, err := execLookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	for _, name := range []string{"sim", "qemu-virt-arm64", "beaglebone-black"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := Builtin().Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			// Keep offsets and sizes; put every device in dir.
			for i := range b.Bootloader.FWEnv {
				b.Bootloader.FWEnv[i].Device = "disk.img"
			}
			b.Bootloader.FWEnvConfig = "fw_env.config"
			b = b.Resolve(dir)
			bl := b.Bootloader
			if err := os.WriteFile(bl.FWEnvConfig, []byte(bl.FWEnvConfigText()), 0o644); err != nil {
				t.Fatal(err)
			}
			redundant := len(bl.FWEnv) == 2
			img := mkenvimage(t, dir, bl.FWEnv[0].Size, redundant, "BOOT_ORDER=A B\nBOOT_A_LEFT=3\n")
			last := bl.FWEnv[len(bl.FWEnv)-1]
			disk := make([]byte, last.Offset+last.Size)
			copy(disk[bl.FWEnv[0].Offset:], img)
			if err := os.WriteFile(bl.FWEnv[0].Device, disk, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := runTool(t, "fw_printenv", "-c", bl.FWEnvConfig, "BOOT_ORDER"); got != "BOOT_ORDER=A B" {
				t.Fatalf("fw_printenv: %q", got)
			}
			runTool(t, "fw_setenv", "-c", bl.FWEnvConfig, "BOOT_ORDER", "B A")
			if got := runTool(t, "fw_printenv", "-c", bl.FWEnvConfig, "BOOT_ORDER"); got != "BOOT_ORDER=B A" {
				t.Fatalf("after fw_setenv: %q", got)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	sim, err := Builtin().Lookup("sim")
	if err != nil {
		t.Fatal(err)
	}
	r := sim.Resolve("/var/lib/graft")
	g, _ := r.Group("rootfs")
	got := []string{g.Slots[0].Device, g.Slots[1].Device, r.Bootloader.FWEnvConfig, r.Bootloader.FWEnv[0].Device, r.Cmdline}
	want := []string{"/var/lib/graft/slot-a.img", "/var/lib/graft/slot-b.img", "/var/lib/graft/fw_env.config", "/var/lib/graft/uboot.env", "/var/lib/graft/cmdline"}
	if !slices.Equal(got, want) {
		t.Errorf("resolved %q, want %q", got, want)
	}
	if g0, _ := sim.Group("rootfs"); g0.Slots[0].Device != "slot-a.img" {
		t.Errorf("Resolve changed the original: %q", g0.Slots[0].Device)
	}
	rpi, _ := Builtin().Lookup("raspberrypi4-64")
	if !reflect.DeepEqual(rpi.Resolve("/x"), rpi) {
		t.Error("Resolve changed absolute paths")
	}
}

func TestGroup(t *testing.T) {
	b, _ := Builtin().Lookup("qemu-virt-arm64")
	g, err := b.Group("rootfs")
	if err != nil {
		t.Fatal(err)
	}
	g.Slots[0].Device = "/dev/changed"
	if g2, _ := b.Group("rootfs"); g2.Slots[0].Device != "/dev/vda2" {
		t.Error("Group shares its slots with the board")
	}
	if _, err := b.Group("appfs"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Group(appfs) = %v, want ErrUnknownGroup", err)
	}
}

func TestLookupUnknown(t *testing.T) {
	if _, err := Builtin().Lookup("nope"); !errors.Is(err, ErrUnknownBoard) {
		t.Errorf("got %v, want ErrUnknownBoard", err)
	}
}

func TestValidateBoardInCode(t *testing.T) {
	b := Board{
		Name: "bench", Arch: "arm64", Console: "ttyAMA0",
		SlotGroups: []SlotGroup{{Name: "rootfs", Slots: []Slot{{"A", "/dev/sda2"}, {"B", "/dev/sda3"}}}},
		Bootloader: Bootloader{Kind: BootloaderGrub, GrubEnv: "/boot/grub/grubenv"},
	}
	var fe *FieldError
	if err := b.Validate(); !errors.As(err, &fe) || fe.Field != "console.baud" || fe.Board != "bench" {
		t.Fatalf("without defaults: %v, want a console.baud error", err)
	}
	d := b.WithDefaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Baud != DefaultBaud || d.Bootloader.Attempts != 3 || d.Bootloader.TryAttempts != 1 || d.Cmdline != "/proc/cmdline" || d.Reboot != RebootSyscall {
		t.Errorf("defaults not applied: %+v", d)
	}
	d.SlotGroups[0].Slots[1].Device = "/dev/sda2"
	if err := d.Validate(); !errors.As(err, &fe) || fe.Field != "slots.rootfs.B" {
		t.Errorf("shared device: %v, want a slots.rootfs.B error", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	s := Builtin()
	if err := s.LoadFile("testdata/override.json"); err != nil {
		t.Fatal(err)
	}
	for _, name := range s.Names() {
		b, _ := s.Lookup(name)
		data, err := b.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		s2 := &Set{}
		if err := s2.Load(strings.NewReader(string(data)), name+".json"); err != nil {
			t.Fatalf("%s: reloading %s: %v", name, data, err)
		}
		b2, _ := s2.Lookup(name)
		if !reflect.DeepEqual(b, b2) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", name, b2, b)
		}
	}
}
