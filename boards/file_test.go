package boards

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLoadOverride(t *testing.T) {
	s := Builtin()
	orig, _ := s.Lookup("raspberrypi4-64")
	if err := s.LoadFile("testdata/override.json"); err != nil {
		t.Fatal(err)
	}
	rpi, err := s.Lookup("raspberrypi4-64")
	if err != nil {
		t.Fatal(err)
	}
	if rpi.Console != "serial0" || rpi.Bootloader.Attempts != 5 {
		t.Errorf("override not applied: console %q attempts %d", rpi.Console, rpi.Bootloader.Attempts)
	}
	// Everything the override does not name is inherited.
	want := orig
	want.Console, want.Bootloader.Attempts = "serial0", 5
	if !reflect.DeepEqual(rpi, want) {
		t.Errorf("override\n got %+v\nwant %+v", rpi, want)
	}
	// A board may extend one defined earlier in the same file.
	cm4, err := s.Lookup("cm4")
	if err != nil {
		t.Fatal(err)
	}
	if cm4.Console != "serial0" || cm4.Bootloader.Attempts != 5 || cm4.Compatible[0] != "raspberrypi,4-compute-module" {
		t.Errorf("cm4 = %+v", cm4)
	}
	x86, err := s.Lookup("x86-grub")
	if err != nil {
		t.Fatal(err)
	}
	if x86.Bootloader.Kind != BootloaderGrub || x86.Bootloader.GrubEnv != "/boot/grub/grubenv" || x86.Compatible != nil || x86.Console != "" {
		t.Errorf("x86-grub = %+v", x86)
	}
	if names := []string{x86.SlotGroups[0].Name, x86.SlotGroups[1].Name}; !slices.Equal(names, []string{"rootfs", "appfs"}) {
		t.Errorf("slot groups out of file order: %v", names)
	}
	// A fresh Builtin set is unaffected.
	if b, _ := Builtin().Lookup("raspberrypi4-64"); b.Console != "ttyS0" {
		t.Errorf("Builtin() shares state with a loaded set: console %q", b.Console)
	}
}

func TestLoadMinimalGetsDefaults(t *testing.T) {
	s := &Set{}
	if err := s.LoadFile("testdata/minimal.json"); err != nil {
		t.Fatal(err)
	}
	b, err := s.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	if b.Bootloader.Attempts != 3 || b.Bootloader.TryAttempts != 1 || b.Cmdline != "/proc/cmdline" || b.Reboot != "syscall" || b.Baud != 0 {
		t.Errorf("defaults: %+v", b)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		cause error // besides ErrInvalid; nil when only the field matters
		field string
		line  int
	}{
		{"syntax", "{\n  \"name\": \"x\",\n  \"arch\" \"arm\"\n}", ErrSyntax, "", 3},
		{"truncated", "{\n  \"name\": \"x\",\n", ErrSyntax, "", 3},
		{"trailing data", "{\"name\": \"x\"}\n{}", ErrSyntax, "", 2},
		{"empty", "", ErrSyntax, "", 1},
		{"top level not an object", "\n\"sim\"", ErrWrongType, "", 2},
		{"unknown field", okBoard(`"consol": {"device": "ttyS0"},`), ErrUnknownField, "consol", 2},
		{"unknown nested field", strings.Replace(okBoard(""), `"kind"`, `"knd"`, 1), ErrUnknownField, "bootloader.knd", 5},
		{"duplicate field", okBoard(`"arch": "arm",`), ErrDuplicateField, "arch", 3},
		{"wrong type string for int", okBoard(`"console": {"device": "ttyS0", "baud": "115200"},`), ErrWrongType, "console.baud", 2},
		{"wrong type float", strings.Replace(okBoard(""), `"kind": "uboot"`, `"kind": "uboot", "attempts": 2.5`, 1), ErrWrongType, "bootloader.attempts", 5},
		{"wrong type slot device", strings.Replace(okBoard(""), `"B": "/dev/b"`, `"B": 3`, 1), ErrWrongType, "slots.rootfs.B", 4},
		{"wrong type compatible", okBoard(`"compatible": "x,y",`), ErrWrongType, "compatible", 2},
		{"bad arch", strings.Replace(okBoard(""), `"arm64"`, `"arm65"`, 1), nil, "arch", 3},
		{"missing arch", strings.Replace(okBoard(""), `"arch": "arm64",`, ``, 1), ErrMissing, "arch", 1},
		{"empty slot device", strings.Replace(okBoard(""), `"B": "/dev/b"`, `"B": ""`, 1), ErrMissing, "slots.rootfs.B", 4},
		{"missing slot B", strings.Replace(okBoard(""), `, "B": "/dev/b"`, ``, 1), nil, "slots.rootfs", 4},
		{"no rootfs group", strings.Replace(okBoard(""), `"rootfs"`, `"data"`, 1), ErrMissing, "slots.rootfs", 4},
		{"bad kind", strings.Replace(okBoard(""), `"uboot"`, `"barebox"`, 1), nil, "bootloader.kind", 5},
		{"zero attempts", strings.Replace(okBoard(""), `"kind": "uboot"`, `"kind": "uboot",`+"\n"+`"attempts": 0`, 1), nil, "bootloader.attempts", 6},
		{"bad reboot", okBoard(`"reboot": "kexec",`), nil, "reboot", 2},
		{"bad baud", okBoard(`"console": {"device": "ttyS0", "baud": 115201},`), nil, "console.baud", 2},
		{"bad console", okBoard(`"console": {"device": "/dev/ttyS0"},`), nil, "console.device", 2},
		{"unknown extends", okBoard(`"extends": "nope",`), ErrUnknownBoard, "extends", 2},
		{"redundant env size mismatch", strings.Replace(okBoard(""), `"kind": "uboot"`, `"kind": "uboot",`+"\n"+
			`"fw_env": [{"device": "/dev/mmcblk0", "offset": "0x1000", "size": "0x2000"},`+"\n"+
			`{"device": "/dev/mmcblk0", "offset": "0x3000", "size": 4096}]`, 1), nil, "bootloader.fw_env[1].size", 7},
		{"bad hex", strings.Replace(okBoard(""), `"kind": "uboot"`, `"kind": "uboot", "fw_env": [{"device": "e", "size": "0xZZ"}]`, 1), ErrWrongType, "bootloader.fw_env[0].size", 5},
		{"same name twice", "[" + okBoard("") + ",\n" + okBoard("") + "]", nil, "name", 7},
		{"array element not an object", "[\n1]", ErrWrongType, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Builtin()
			before := s.Names()
			err := s.Load(strings.NewReader(tt.file), "test.json")
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %v, want an error matching ErrInvalid", err)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Errorf("Load = %v, want cause %v", err, tt.cause)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Load = %T, want *FieldError", err)
			}
			if fe.File != "test.json" || fe.Field != tt.field || fe.Line != tt.line {
				t.Errorf("FieldError file %q field %q line %d, want test.json %q %d (%v)", fe.File, fe.Field, fe.Line, tt.field, tt.line, err)
			}
			if !slices.Equal(s.Names(), before) {
				t.Errorf("a failed Load changed the set: %v", s.Names())
			}
		})
	}
}

// okBoard returns a valid board file with extra inserted as line 2; the
// arch is on line 3, slots on 4, bootloader on 5.
func okBoard(extra string) string {
	return `{"name": "t",
` + extra + `
"arch": "arm64",
"slots": {"rootfs": {"A": "/dev/a", "B": "/dev/b"}},
"bootloader": {"kind": "uboot", "fw_env_config": "/etc/fw_env.config"}
}`
}

func TestOKBoardIsValid(t *testing.T) {
	if err := (&Set{}).Load(strings.NewReader(okBoard("")), "ok.json"); err != nil {
		t.Fatal(err)
	}
}

func TestLoadFileMissing(t *testing.T) {
	err := (&Set{}).LoadFile(filepath.Join(t.TempDir(), "none.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrNotExist", err)
	}
}

func TestDetect(t *testing.T) {
	s := Builtin()
	if err := s.LoadFile("testdata/override.json"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		compatible []string
		arch       string
		want       string
		err        error
	}{
		{"qemu arm64", []string{"linux,dummy-virt"}, "arm64", "qemu-virt-arm64", nil},
		{"qemu armv7", []string{"linux,dummy-virt"}, "arm", "qemu-virt-armv7", nil},
		{"qemu on amd64 is ambiguous", []string{"linux,dummy-virt"}, "amd64", "", ErrAmbiguous},
		{"rpi4", []string{"raspberrypi,4-model-b", "brcm,bcm2711"}, "arm64", "raspberrypi4-64", nil},
		{"rpi4 with 32-bit agent", []string{"raspberrypi,4-model-b", "brcm,bcm2711"}, "arm", "raspberrypi4-64", nil},
		{"most specific string wins", []string{"raspberrypi,4-compute-module", "brcm,bcm2711"}, "arm64", "cm4", nil},
		{"generic fallback", []string{"raspberrypi,400", "brcm,bcm2711"}, "arm64", "cm4", nil},
		{"beaglebone", []string{"ti,am335x-bone-black", "ti,am335x-bone", "ti,am33xx"}, "arm", "beaglebone-black", nil},
		{"unknown", []string{"acme,widget"}, "arm64", "", ErrNoMatch},
		{"empty", nil, "arm64", "", ErrNoMatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.DetectArch(tt.compatible, tt.arch)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("DetectArch = %q, %v; want %v", b.Name, err, tt.err)
				}
				return
			}
			if err != nil || b.Name != tt.want {
				t.Fatalf("DetectArch = %q, %v; want %q", b.Name, err, tt.want)
			}
		})
	}
}

func TestReadCompatible(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "compatible")
	if err := os.WriteFile(p, []byte("raspberrypi,4-model-b\x00brcm,bcm2711\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCompatible(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"raspberrypi,4-model-b", "brcm,bcm2711"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	b, err := Builtin().Detect(got)
	if err != nil || b.Name != "raspberrypi4-64" {
		t.Errorf("Detect = %q, %v", b.Name, err)
	}
	if _, err := ReadCompatible(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func TestArchHost(t *testing.T) {
	defer func(a string) { hostArch = a }(hostArch)
	hostArch = "arm"
	s := &Set{}
	if err := s.Load(strings.NewReader(strings.Replace(okBoard(""), `"arm64"`, `"host"`, 1)), "h.json"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Lookup("t"); b.Arch != "arm" {
		t.Errorf("arch %q, want the host's", b.Arch)
	}
}

func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"builtin", "testdata"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(okBoard(`"console": {"device": "ttyS0", "baud": 9600},`)))
	f.Add([]byte(`[{"name": "a", "extends": "sim"}, {"name": "b", "extends": "a", "arch": "arm"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := Builtin()
		err := s.Load(bytes.NewReader(data), "fuzz.json")
		if err != nil {
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError matching ErrInvalid", err)
			}
			return
		}
		for _, name := range s.Names() {
			b, _ := s.Lookup(name)
			if err := b.Validate(); err != nil {
				t.Fatalf("loaded board %q does not validate: %v", name, err)
			}
			out, err := b.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			s2 := &Set{}
			if err := s2.Load(bytes.NewReader(out), "again.json"); err != nil {
				t.Fatalf("re-reading %s: %v", out, err)
			}
			if b2, _ := s2.Lookup(name); !reflect.DeepEqual(b, b2) {
				t.Fatalf("round trip changed %q:\n%+v\n%+v", name, b, b2)
			}
		}
	})
}

func FuzzParseCompatible(f *testing.F) {
	f.Add([]byte("raspberrypi,4-model-b\x00brcm,bcm2711\x00"))
	f.Add([]byte("linux,dummy-virt\x00"))
	f.Add([]byte("\x00\x00a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := ParseCompatible(data)
		for _, s := range got {
			if s == "" || strings.ContainsRune(s, 0) {
				t.Fatalf("bad string %q", s)
			}
		}
		if strings.Join(got, "") != strings.ReplaceAll(string(data), "\x00", "") {
			t.Fatalf("lost bytes: %q from %q", got, data)
		}
	})
}
