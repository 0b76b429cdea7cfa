package rig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// fwPrintenv runs the real fw_printenv on the disk image's redundant
// environment and returns its variables.
func fwPrintenv(t *testing.T, d *Disk) map[string]string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	line := d.FWEnvConfig()
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
		// The real fw_printenv on the disk image with the two copies'
		// lines, as a guest reads /dev/vda.
		if got := fwPrintenv(t, d); !maps.Equal(got, env) {
			t.Errorf("fw_printenv on the disk = %v, want %v", got, env)
		}
	})

	t.Run("set env", func(t *testing.T) {
		// Each save goes to the copy not in use; the other keeps the
		// previous environment.
		next := map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2", "BOOT_B_LEFT": "0"}
		for n := range 3 {
			before := [2][]byte{}
			for i := range before {
				if before[i], err = d.EnvCopy(i); err != nil {
					t.Fatal(err)
				}
			}
			next["BOOT_A_LEFT"] = strconv.Itoa(n)
			if err := d.SetEnv(next); err != nil {
				t.Fatal(err)
			}
			changed := 0
			for i := range before {
				after, err := d.EnvCopy(i)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(after, before[i]) {
					changed++
				}
			}
			if changed != 1 {
				t.Errorf("save %d changed %d copies, want 1", n, changed)
			}
			if got, err := d.Env(); err != nil || !maps.Equal(got, next) {
				t.Errorf("Env() after SetEnv = %v, %v, want %v", got, err, next)
			}
			if got := fwPrintenv(t, d); !maps.Equal(got, next) {
				t.Errorf("fw_printenv on the disk = %v, want %v", got, next)
			}
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
