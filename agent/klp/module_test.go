package klp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// elfModule builds a minimal ELF relocatable with the given sections (and
// a section name table), in either class and byte order.
func elfModule(is64, bigEndian bool, secs map[string][]byte, order ...string) []byte {
	var bo binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		bo = binary.BigEndian
	}
	ehsize, shsize := 52, 40
	if is64 {
		ehsize, shsize = 64, 64
	}
	names := []byte{0}
	type sh struct{ name, off, size int }
	var hdrs []sh
	body := []byte{}
	for _, n := range order {
		hdrs = append(hdrs, sh{len(names), ehsize + len(body), len(secs[n])})
		names = append(append(names, n...), 0)
		body = append(body, secs[n]...)
	}
	hdrs = append(hdrs, sh{len(names), ehsize + len(body), 0})
	names = append(append(names, ".shstrtab"...), 0)
	hdrs[len(hdrs)-1].size = len(names)
	body = append(body, names...)
	shoff := ehsize + len(body)

	h := make([]byte, ehsize)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 1, 1, 1
	if is64 {
		h[4] = 2
	}
	if bigEndian {
		h[5] = 2
	}
	bo.PutUint16(h[16:], 1) // ET_REL
	bo.PutUint16(h[18:], 62)
	l := elf32
	if is64 {
		l = elf64
		bo.PutUint64(h[l.shoff:], uint64(shoff))
	} else {
		bo.PutUint32(h[l.shoff:], uint32(shoff))
	}
	bo.PutUint16(h[l.shentsize:], uint16(shsize))
	bo.PutUint16(h[l.shnum:], uint16(len(hdrs)+1))
	bo.PutUint16(h[l.shstrndx:], uint16(len(hdrs)))

	out := append(h, body...)
	out = append(out, make([]byte, shsize)...) // SHN_UNDEF
	for _, s := range hdrs {
		e := make([]byte, shsize)
		bo.PutUint32(e, uint32(s.name))
		bo.PutUint32(e[4:], 1) // SHT_PROGBITS
		if is64 {
			bo.PutUint64(e[24:], uint64(s.off))
			bo.PutUint64(e[32:], uint64(s.size))
		} else {
			bo.PutUint32(e[16:], uint32(s.off))
			bo.PutUint32(e[20:], uint32(s.size))
		}
		out = append(out, e...)
	}
	return out
}

// thisModule is a struct module prefix with name at the given offset.
func thisModule(off int, name string) []byte {
	b := make([]byte, off+64)
	copy(b[off:], name)
	return b
}

const testVermagic = "6.1.0-50-amd64 SMP preempt mod_unload modversions "

func modinfo(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return b
}

func synthModule(info []byte) []byte {
	return elfModule(true, false, map[string][]byte{
		".text":                     {0xc3},
		".modinfo":                  info,
		".gnu.linkonce.this_module": thisModule(24, "graft_klp_x"),
	}, ".text", ".modinfo", ".gnu.linkonce.this_module")
}

func TestParseModuleSynthetic(t *testing.T) {
	live := modinfo("license=GPL", "depends=", "livepatch=Y", "name=graft_klp_x", "vermagic="+testVermagic)
	tests := []struct {
		name    string
		in      []byte
		want    *Info
		wantErr error
	}{
		{"livepatch", synthModule(live),
			&Info{Name: "graft_klp_x", Vermagic: testVermagic, Release: "6.1.0-50-amd64", Livepatch: true, License: "GPL"}, nil},
		{"plain, depends", synthModule(modinfo("license=GPL", "depends=a,b", "name=plain", "vermagic="+testVermagic)),
			&Info{Name: "plain", Vermagic: testVermagic, Release: "6.1.0-50-amd64", License: "GPL", Depends: []string{"a", "b"}}, nil},
		{"name from this_module, 64-bit", synthModule(modinfo("vermagic=" + testVermagic)),
			&Info{Name: "graft_klp_x", Vermagic: testVermagic, Release: "6.1.0-50-amd64"}, nil},
		{"name from this_module, 32-bit big-endian", elfModule(false, true, map[string][]byte{
			".modinfo": modinfo("livepatch=Y", "vermagic=6.1.0-50-armmp SMP mod_unload ARMv7 "), ".gnu.linkonce.this_module": thisModule(12, "old32"),
		}, ".modinfo", ".gnu.linkonce.this_module"),
			&Info{Name: "old32", Vermagic: "6.1.0-50-armmp SMP mod_unload ARMv7 ", Release: "6.1.0-50-armmp", Livepatch: true}, nil},
		{"livepatch=N", synthModule(modinfo("livepatch=N", "name=n", "vermagic="+testVermagic)),
			&Info{Name: "n", Vermagic: testVermagic, Release: "6.1.0-50-amd64"}, nil},
		{"no .modinfo", elfModule(true, false, map[string][]byte{".gnu.linkonce.this_module": thisModule(24, "x")}, ".gnu.linkonce.this_module"), nil, ErrNotModule},
		{"no this_module", elfModule(true, false, map[string][]byte{".modinfo": live}, ".modinfo"), nil, ErrNotModule},
		{"path in name", synthModule(modinfo("name=../../x", "vermagic="+testVermagic)), nil, ErrNotModule},
		{"empty", nil, nil, ErrNotModule},
		{"text", []byte("#!/bin/sh\necho graft_klp_a livepatch=Y\n"), nil, ErrNotModule},
		{"truncated", synthModule(live)[:100], nil, ErrNotModule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModule(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseModule: %v, want %v", err, tt.wantErr)
			}
			if tt.want == nil {
				return
			}
			if got.Name != tt.want.Name || got.Vermagic != tt.want.Vermagic || got.Release != tt.want.Release ||
				got.Livepatch != tt.want.Livepatch || got.License != tt.want.License || len(got.Depends) != len(tt.want.Depends) {
				t.Errorf("ParseModule = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestParseModuleExecutable: a real ELF executable (this test binary) is
// not a module.
func TestParseModuleExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseModule(b); !errors.Is(err, ErrNotModule) {
		t.Errorf("ParseModule(test binary) = %v, want ErrNotModule", err)
	}
}

// fakeSys returns a System over a sysfs tree in a temporary directory
// (with or without kernel/livepatch) running release.
func fakeSys(t *testing.T, livepatch bool, release, vermagic string) *System {
	t.Helper()
	dir := t.TempDir()
	if livepatch {
		if err := os.MkdirAll(filepath.Join(dir, "kernel", "livepatch"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &System{SysDir: dir, Release: func() (string, error) { return release, nil }}
	if vermagic != "" {
		s.Vermagic = func() (string, error) { return vermagic, nil }
	}
	return s
}

func TestCheck(t *testing.T) {
	const running = "6.1.0-50-amd64"
	live := &Info{Name: "p", Vermagic: testVermagic, Release: running, Livepatch: true}
	other := &Info{Name: "p", Vermagic: "6.1.0-49-amd64 SMP preempt mod_unload modversions ", Release: "6.1.0-49-amd64", Livepatch: true}
	plain := &Info{Name: "p", Vermagic: testVermagic, Release: running}
	noMagic := &Info{Name: "p", Livepatch: true}
	tests := []struct {
		name      string
		livepatch bool
		vermagic  string // kernel's reference
		inf       *Info
		want      string // release the patch is for
		wantErr   error
	}{
		{"ok", true, "", live, running, nil},
		{"ok, release from vermagic", true, "", live, "", nil},
		{"ok, same vermagic modulo spaces", true, "6.1.0-50-amd64  SMP preempt mod_unload modversions", live, running, nil},
		{"no livepatch dir", false, "", live, running, ErrUnsupported},
		{"component for another release", true, "", live, "6.1.0-49-amd64", ErrWrongKernel},
		{"module built for another release", true, "", other, "", ErrWrongKernel},
		{"module built for another release, component says ours", true, "", other, running, ErrWrongKernel},
		{"plain module", true, "", plain, running, ErrNotLivepatch},
		{"no vermagic", true, "", noMagic, running, ErrVermagic},
		{"vermagic flags differ", true, running + " SMP mod_unload modversions ", live, running, ErrVermagic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeSys(t, tt.livepatch, running, tt.vermagic)
			if err := s.Check(tt.inf, tt.want); !errors.Is(err, tt.wantErr) {
				t.Errorf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestLoadRefusesBeforeLoading: every refusal happens before the kernel
// is asked; a fake sysfs is enough to prove it, since finit_module on the
// host would need root and a matching kernel and is never reached.
func TestLoadRefusesBeforeLoading(t *testing.T) {
	const running = "6.1.0-50-amd64"
	live := synthModule(modinfo("livepatch=Y", "name=graft_klp_x", "vermagic="+testVermagic))
	tests := []struct {
		name      string
		module    []byte
		opts      LoadOptions
		livepatch bool
		wantErr   error
	}{
		{"not a module", []byte("hello"), LoadOptions{}, true, ErrNotModule},
		{"wrong name", live, LoadOptions{Name: "other"}, true, ErrName},
		{"wrong release", live, LoadOptions{Release: "6.1.0-49-amd64"}, true, ErrWrongKernel},
		{"no livepatch", live, LoadOptions{}, false, ErrUnsupported},
		{"plain", synthModule(modinfo("name=plain", "vermagic="+testVermagic)), LoadOptions{}, true, ErrNotLivepatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeSys(t, tt.livepatch, running, "")
			res, err := s.Load(t.Context(), tt.module, tt.opts)
			if !errors.Is(err, tt.wantErr) || res != nil {
				t.Errorf("Load = %v, %v; want nil, %v", res, err, tt.wantErr)
			}
		})
	}
	// Already loaded: /sys/module/<name> exists.
	s := fakeSys(t, true, running, "")
	if err := os.MkdirAll(filepath.Join(s.SysDir, "module", "graft_klp_x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context(), live, LoadOptions{}); !errors.Is(err, ErrLoaded) {
		t.Errorf("Load of a loaded module = %v, want ErrLoaded", err)
	}
}

func TestList(t *testing.T) {
	s := fakeSys(t, true, "r", "")
	for name, st := range map[string][2]string{"a": {"1\n", "0\n"}, "b": {"0\n", "1\n"}} {
		d := filepath.Join(s.SysDir, "kernel", "livepatch", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "enabled"), []byte(st[0]), 0o644)
		os.WriteFile(filepath.Join(d, "transition"), []byte(st[1]), 0o644)
	}
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Patch{{"a", true, false}, {"b", false, true}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("List = %+v, want %+v", got, want)
	}
	if _, err := fakeSys(t, false, "r", "").List(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("List without livepatch = %v, want ErrUnsupported", err)
	}
}

func TestKmsgMessage(t *testing.T) {
	tests := []struct {
		rec, want string
		ok        bool
	}{
		{"6,1234,5678901,-;livepatch: enabling patch 'graft_klp_a'\n", "livepatch: enabling patch 'graft_klp_a'", true},
		{"4,99,1,c,more;graft_klp_a: disagrees about version of symbol module_layout\n SUBSYSTEM=x\n", "graft_klp_a: disagrees about version of symbol module_layout", true},
		{"no header", "", false},
	}
	for _, tt := range tests {
		got, ok := kmsgMessage([]byte(tt.rec))
		if got != tt.want || ok != tt.ok {
			t.Errorf("kmsgMessage(%q) = %q, %v; want %q, %v", tt.rec, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseModule(f *testing.F) {
	f.Add(synthModule(modinfo("livepatch=Y", "name=graft_klp_x", "vermagic="+testVermagic)))
	f.Add(elfModule(false, true, map[string][]byte{".modinfo": modinfo("vermagic=x"), ".gnu.linkonce.this_module": thisModule(12, "y")},
		".modinfo", ".gnu.linkonce.this_module"))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte("graft"))
	f.Fuzz(func(t *testing.T, b []byte) {
		inf, err := ParseModule(b)
		if err != nil {
			if !errors.Is(err, ErrNotModule) {
				t.Fatalf("ParseModule error %v is not ErrNotModule", err)
			}
			return
		}
		if !validName(inf.Name) {
			t.Fatalf("ParseModule accepted name %q", inf.Name)
		}
		if inf.Release != "" && !bytes.Contains([]byte(inf.Vermagic), []byte(inf.Release)) {
			t.Fatalf("release %q not from vermagic %q", inf.Release, inf.Vermagic)
		}
	})
}
