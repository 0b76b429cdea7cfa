package rig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/bootenv"
)

// buildTestSlot writes a small slot image holding a kernel file and an
// initrd.img, returning its path.
func buildTestSlot(t *testing.T, arch Arch, kernel []byte) string {
	t.Helper()
	dir := t.TempDir()
	k := filepath.Join(dir, "kernel")
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(k, kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, []byte("not a cpio archive\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "slot.img")
	if err := BuildSlot(context.Background(), img, 4<<20, map[string]string{KernelFile(arch): k, "initrd.img": initrd}); err != nil {
		t.Fatal(err)
	}
	return img
}

// fwPrintenv runs the real fw_printenv on an environment at offset of
// file and returns its variables.
func fwPrintenv(t *testing.T, file string, offset int64) map[string]string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	line := fmt.Sprintf("%s %#x 0x4000\n", file, offset)
	if err := os.WriteFile(cfg, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fw_printenv", "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv (%s): %v: %s", line, err, out)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("fw_printenv printed %q", l)
		}
		env[k] = v
	}
	return env
}

func TestBuildDisk(t *testing.T) {
	ctx := context.Background()
	slotA := buildTestSlot(t, ARM64, bytes.Repeat([]byte("kernel A "), 500))
	slotB := buildTestSlot(t, ARM64, bytes.Repeat([]byte("kernel B "), 500))
	env := map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "1", "graft_args": "loglevel=7"}
	spec := DiskSpec{
		Arch: ARM64, SlotSize: 8 << 20, DataSize: 8 << 20,
		SlotA: slotA, SlotB: slotB, Env: env,
		Data: map[string][]byte{"graft/state.json": []byte(`{"slot":"A"}`), "top": []byte("x")},
	}
	out := filepath.Join(t.TempDir(), "disk.img")
	d, err := BuildDisk(ctx, spec, out)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("env", func(t *testing.T) {
		got, err := d.Env()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, env) {
			t.Errorf("Env() = %v, want %v", got, env)
		}
		// The real fw_printenv, once on the extracted file, once on the
		// disk image at the file's offset (as a guest would use /dev/vda1).
		raw, err := exec.Command("mcopy", "-i", d.image(0), "::uboot.env", "-").Output()
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "uboot.env")
		if err := os.WriteFile(f, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if got := fwPrintenv(t, f, 0); !maps.Equal(got, env) {
			t.Errorf("fw_printenv on the file = %v, want %v", got, env)
		}
		off, err := d.EnvOffset()
		if err != nil {
			t.Fatal(err)
		}
		if got := fwPrintenv(t, d.Path, d.Parts[0].Offset+off); !maps.Equal(got, env) {
			t.Errorf("fw_printenv on the disk at p1+%#x = %v, want %v", off, got, env)
		}
	})

	t.Run("set env", func(t *testing.T) {
		before, err := d.EnvOffset()
		if err != nil {
			t.Fatal(err)
		}
		next := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"}
		if err := d.SetEnv(next); err != nil {
			t.Fatal(err)
		}
		got, err := d.Env()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, next) {
			t.Errorf("Env() after SetEnv = %v, want %v", got, next)
		}
		after, err := d.EnvOffset()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("uboot.env at p1+%#x before SetEnv, p1+%#x after", before, after)
		if got := fwPrintenv(t, d.Path, d.Parts[0].Offset+after); !maps.Equal(got, next) {
			t.Errorf("fw_printenv on the disk = %v, want %v", got, next)
		}
	})

	t.Run("data", func(t *testing.T) {
		for name, want := range spec.Data {
			got, err := d.ReadData(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ReadData(%q) = %q, want %q", name, got, want)
			}
		}
		if _, err := d.ReadData("graft/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadData(missing) = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("mbr matches sfdisk", func(t *testing.T) {
		out, err := exec.Command("sfdisk", "-J", d.Path).Output()
		if err != nil {
			t.Fatal(err)
		}
		var table struct {
			PartitionTable struct {
				Label      string
				Partitions []struct {
					Node     string
					Start    int64
					Size     int64
					Type     string
					Bootable bool
				}
			}
		}
		if err := json.Unmarshal(out, &table); err != nil {
			t.Fatal(err)
		}
		pt := table.PartitionTable
		if pt.Label != "dos" || len(pt.Partitions) != 4 {
			t.Fatalf("sfdisk -J: %s", out)
		}
		again, err := OpenDisk(d.Path)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pt.Partitions {
			want := Partition{Offset: p.Start * 512, Size: p.Size * 512}
			if again.Parts[i] != want {
				t.Errorf("partition %d: OpenDisk %+v, sfdisk %+v", i+1, again.Parts[i], want)
			}
		}
		if !pt.Partitions[0].Bootable || pt.Partitions[3].Type != "83" {
			t.Errorf("flags or types: %s", out)
		}
		if d.Parts[1].Size != 8<<20 || d.Parts[0].Size != DefaultBootSize || d.Parts[0].Offset != 1<<20 {
			t.Errorf("layout %+v", d.Parts)
		}
	})

	t.Run("slots", func(t *testing.T) {
		for name, img := range map[string]string{"A": slotA, "B": slotB} {
			want, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			r, err := d.Slot(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(got)) != d.Parts[1].Size {
				t.Errorf("slot %s: %d bytes, want the partition's %d", name, len(got), d.Parts[1].Size)
			}
			if sha256.Sum256(got[:len(want)]) != sha256.Sum256(want) || !allZero(got[len(want):]) {
				t.Errorf("slot %s does not hold its image followed by zeros", name)
			}
		}
		if _, err := d.Slot("C"); !errors.Is(err, ErrUnknownSlot) {
			t.Errorf("Slot(C) = %v, want ErrUnknownSlot", err)
		}
	})
}

func TestBuildDiskErrors(t *testing.T) {
	ctx := context.Background()
	big := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(big, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		spec DiskSpec
		want error
	}{
		{"no slot A", DiskSpec{Arch: ARM64}, ErrDiskSpec},
		{"amd64 has no U-Boot", DiskSpec{Arch: AMD64, SlotA: big}, ErrNoUBoot},
		{"slot larger than partition", DiskSpec{Arch: ARM64, SlotA: big, SlotSize: 1 << 20}, ErrDiskSpec},
		{"data path escapes", DiskSpec{Arch: ARM64, SlotA: big, Data: map[string][]byte{"../x": nil}}, ErrDiskSpec},
		{"bad env variable", DiskSpec{Arch: ARM64, SlotA: big, Env: map[string]string{"A=B": "1"}}, bootenv.ErrInvalidVar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildDisk(ctx, tt.spec, filepath.Join(t.TempDir(), "disk.img"))
			if !errors.Is(err, tt.want) {
				t.Errorf("BuildDisk = %v, want %v", err, tt.want)
			}
		})
	}
}

func mbrWith(entries ...[16]byte) []byte {
	b := make([]byte, 512)
	for i, e := range entries {
		copy(b[446+16*i:], e[:])
	}
	b[510], b[511] = 0x55, 0xAA
	return b
}

func entry(status, typ byte, start, count uint32) [16]byte {
	var e [16]byte
	e[0], e[4] = status, typ
	e[8], e[9], e[10], e[11] = byte(start), byte(start>>8), byte(start>>16), byte(start>>24)
	e[12], e[13], e[14], e[15] = byte(count), byte(count>>8), byte(count>>16), byte(count>>24)
	return e
}

func TestParseMBR(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want [4]Partition
		err  error
	}{
		{"two partitions", mbrWith(entry(0x80, 0x0c, 2048, 2048), entry(0, 0x83, 4096, 100)),
			[4]Partition{{1 << 20, 1 << 20}, {2 << 20, 51200}}, nil},
		{"empty table", mbrWith(), [4]Partition{}, nil},
		{"short", make([]byte, 100), [4]Partition{}, ErrBadMBR},
		{"no signature", make([]byte, 512), [4]Partition{}, ErrBadMBR},
		{"bad status", mbrWith(entry(0x12, 0x83, 2048, 1)), [4]Partition{}, ErrBadMBR},
		{"starts in the MBR", mbrWith(entry(0, 0x83, 0, 1)), [4]Partition{}, ErrBadMBR},
		{"overlap", mbrWith(entry(0, 0x83, 2048, 100), entry(0, 0x83, 2100, 100)), [4]Partition{}, ErrBadMBR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMBR(tt.b)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseMBR(f *testing.F) {
	f.Add(mbrWith(entry(0x80, 0x0c, 2048, 2048), entry(0, 0x83, 4096, 100)))
	f.Add(mbrWith())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := ParseMBR(b)
		if err != nil {
			return
		}
		for i, p := range parts {
			if p.Size < 0 || p.Offset < 0 || (p.Size > 0 && p.Offset < 512) {
				t.Errorf("partition %d: %+v", i+1, p)
			}
		}
	})
}

func TestParseFATBootSector(t *testing.T) {
	// A real boot sector from mkfs.vfat, and the cluster mtools reports for
	// a file in it.
	img := filepath.Join(t.TempDir(), "fat.img")
	src := filepath.Join(t.TempDir(), "f")
	content := bytes.Repeat([]byte("graft"), 3000)
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BuildSlot(context.Background(), img, 16<<20, map[string]string{"dir/f": src}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseFATBootSector(b[:512])
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mshowfat", "-i", img, "::dir/f").Output()
	if err != nil {
		t.Fatal(err)
	}
	first, _, err := parseClusterRun(string(out))
	if err != nil {
		t.Fatal(err)
	}
	off := g.ClusterOffset(first)
	if !bytes.Equal(b[off:off+int64(len(content))], content) {
		t.Errorf("cluster %d at %#x does not hold the file (geometry %+v)", first, off, g)
	}

	bad := bytes.Clone(b[:512])
	bad[13] = 3 // sectors per cluster must be a power of two
	if _, err := ParseFATBootSector(bad); !errors.Is(err, ErrBadFAT) {
		t.Errorf("3 sectors per cluster: %v, want ErrBadFAT", err)
	}
}

func FuzzParseFATBootSector(f *testing.F) {
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseFATBootSector(b)
		if err != nil {
			return
		}
		if g.ClusterSize <= 0 || g.DataStart <= 0 {
			t.Errorf("geometry %+v", g)
		}
	})
}

func TestParseClusterRun(t *testing.T) {
	tests := []struct {
		in          string
		first, last int64
		err         error
	}{
		{"::/uboot.env <2-9>\n", 2, 9, nil},
		{"::/x <7>\n", 7, 7, nil},
		{"::/uboot.env <2-3 7-9>\n", 0, 0, ErrBadFAT},
		{"garbage", 0, 0, ErrBadFAT},
		{"::/x <1-2>", 0, 0, ErrBadFAT},
	}
	for _, tt := range tests {
		first, last, err := parseClusterRun(tt.in)
		if !errors.Is(err, tt.err) || first != tt.first || last != tt.last {
			t.Errorf("parseClusterRun(%q) = %d, %d, %v", tt.in, first, last, err)
		}
	}
}

func FuzzParseClusterRun(f *testing.F) {
	f.Add("::/uboot.env <2-9>\n")
	f.Add("::/x <2-3 7-9>")
	f.Fuzz(func(t *testing.T, s string) {
		first, last, err := parseClusterRun(s)
		if err == nil && (first < 2 || last < first) {
			t.Errorf("parseClusterRun(%q) = %d, %d", s, first, last)
		}
	})
}
