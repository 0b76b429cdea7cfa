package boards

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestDebianServer(t *testing.T) {
	b, err := Builtin().Lookup("debian-server")
	if err != nil {
		t.Fatal(err)
	}
	if !b.LiveOnly() || b.Arch != runtime.GOARCH || len(b.SlotNames()) != 0 || b.Bootloader.Kind != BootloaderNone {
		t.Errorf("debian-server = %+v, want a live-only board of the agent's arch without slots", b)
	}
	if _, err := b.Group("rootfs"); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Group(rootfs) = %v, want ErrUnknownGroup", err)
	}
	r := b.Resolve("/var/lib/graft")
	if r.Cmdline != "/proc/cmdline" {
		t.Errorf("Resolve changed cmdline to %s", r.Cmdline)
	}
}

func TestLiveOnlyValidation(t *testing.T) {
	tests := []struct {
		name, file, field string
	}{
		{"slots", `{"name":"s","arch":"amd64","bootloader":{"kind":"none"},"slots":{"rootfs":{"A":"/dev/sda2","B":"/dev/sda3"}}}`, "slots"},
		{"fw_env", `{"name":"s","arch":"amd64","bootloader":{"kind":"none","fw_env_config":"/etc/fw_env.config"}}`, "bootloader"},
		{"grubenv", `{"name":"s","arch":"amd64","bootloader":{"kind":"none","grubenv":"/boot/grub/grubenv"}}`, "bootloader"},
		{"bad os_release", `{"name":"s","arch":"amd64","os_release":["Debian"],"bootloader":{"kind":"none"}}`, "os_release[0]"},
		{"os_release twice", `{"name":"s","arch":"amd64","os_release":["debian","debian"],"bootloader":{"kind":"none"}}`, "os_release[1]"},
		{"uboot without slots", `{"name":"s","arch":"amd64","bootloader":{"kind":"uboot","fw_env_config":"/etc/fw_env.config"}}`, "slots"},
		{"unknown kind", `{"name":"s","arch":"amd64","bootloader":{"kind":"barebox"},"slots":{"rootfs":{"A":"/dev/sda2","B":"/dev/sda3"}}}`, "bootloader.kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Builtin()
			err := s.Load(strings.NewReader(tt.file), "s.json")
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load = %v, want a FieldError on %s", err, tt.field)
			}
			if _, err := s.Lookup("s"); !errors.Is(err, ErrUnknownBoard) {
				t.Errorf("a refused file added its board")
			}
		})
	}
	ok := `{"name":"rocky","arch":"host","os_release":["rocky","rhel"],"bootloader":{"kind":"none"}}`
	s := Builtin()
	if err := s.Load(strings.NewReader(ok), "rocky.json"); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Lookup("rocky"); !b.LiveOnly() || !slices.Equal(b.OSRelease, []string{"rocky", "rhel"}) {
		t.Errorf("rocky = %+v", b)
	}
}

func TestParseOSRelease(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"debian", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\nHOME_URL=\"https://www.debian.org/\"\n", []string{"debian"}},
		{"ubuntu", "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n", []string{"ubuntu", "debian"}},
		{"quoted like", "ID=\"rocky\"\nID_LIKE='rhel centos fedora'\n", []string{"rocky", "rhel", "centos", "fedora"}},
		{"crlf and junk", "# comment\r\nnot a line\r\nID=debian\r\n", []string{"debian"}},
		{"empty", "", nil},
		{"duplicate", "ID=debian\nID_LIKE=debian\n", []string{"debian"}},
	}
	for _, tt := range tests {
		if got := ParseOSRelease([]byte(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: ParseOSRelease = %q, want %q", tt.name, got, tt.want)
		}
	}
	// The host's own file parses (the rig runs on Debian).
	if _, err := os.Stat(DefaultOSReleasePath); err == nil {
		ids, err := ReadOSRelease(DefaultOSReleasePath)
		if err != nil || len(ids) == 0 {
			t.Errorf("ReadOSRelease(%s) = %q, %v", DefaultOSReleasePath, ids, err)
		}
	}
	if _, err := ReadOSRelease(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("ID=debian\nID_LIKE=\"a b\"\n"))
	f.Add([]byte("ID='\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids := ParseOSRelease(b)
		for i, id := range ids {
			if id == "" || slices.Index(ids, id) != i {
				t.Errorf("ParseOSRelease(%q) = %q", b, ids)
			}
		}
	})
}

func TestDetectOS(t *testing.T) {
	s := Builtin()
	b, err := s.DetectOS([]string{"ubuntu", "debian"})
	if err != nil || b.Name != "debian-server" {
		t.Errorf("DetectOS(ubuntu, debian) = %s, %v; want debian-server", b.Name, err)
	}
	if _, err := s.DetectOS([]string{"alpine"}); !errors.Is(err, ErrNoMatch) {
		t.Errorf("DetectOS(alpine) = %v, want ErrNoMatch", err)
	}
	if err := s.Load(strings.NewReader(`{"name":"other","arch":"host","os_release":["debian"],"bootloader":{"kind":"none"}}`), "o.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DetectOS([]string{"debian"}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("two debian boards: %v, want ErrAmbiguous", err)
	}
}
