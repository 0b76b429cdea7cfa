package rig

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/agent/bootenv"
)

// GrubEnvFile is where the amd64 disk's boot partition keeps GRUB's
// environment block (the board qemu-virt-amd64 mounts the partition on
// /boot).
const GrubEnvFile = "grub/grubenv"

// AMD64DiskSpec describes the disk BuildAMD64Disk writes.
type AMD64DiskSpec struct {
	SlotA    string            // slot A's image (any file); required
	SlotSize int64             // bytes per slot, rounded up to MiB; 0 = 16 MiB
	Env      map[string]string // grubenv variables; nil = DefaultEnv()
	Data     map[string][]byte // files of the data partition
}

// BuildAMD64Disk writes the disk of the board qemu-virt-amd64 to out: the
// rig's layout (p1 FAT boot, p2 and p3 slots A and B, p4 ext4 data), with
// a GRUB environment block (bootenv.EncodeGrub, what grub-editenv
// writes) at /grub/grubenv on the boot partition instead of U-Boot's
// script and environment. QEMU boots the kernel directly (-kernel): the
// test plays the bootloader's part.
func BuildAMD64Disk(ctx context.Context, spec AMD64DiskSpec, out string) (*Disk, error) {
	if spec.SlotA == "" {
		return nil, fmt.Errorf("%w: no slot A image", ErrDiskSpec)
	}
	slot := spec.SlotSize
	if slot <= 0 {
		slot = 16 << 20
	}
	sizes := [4]int64{4 << 20, slot, slot, DefaultDataSize}
	var parts [4]Partition
	next := int64(alignment)
	for i, s := range sizes {
		parts[i] = Partition{Offset: next, Size: alignUp(s, alignment)}
		next += parts[i].Size
	}
	env := spec.Env
	if env == nil {
		env = DefaultEnv()
	}
	block, err := bootenv.EncodeGrub(env)
	if err != nil {
		return nil, fmt.Errorf("%w: grubenv: %w", ErrDiskSpec, err)
	}
	tmp, err := os.MkdirTemp("", "graft-disk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	envPath := filepath.Join(tmp, "grubenv")
	if err := os.WriteFile(envPath, block, 0o644); err != nil {
		return nil, err
	}
	bootImg := filepath.Join(tmp, "boot.img")
	if err := BuildSlot(ctx, bootImg, parts[0].Size, map[string]string{GrubEnvFile: envPath}); err != nil {
		return nil, err
	}
	dataImg := filepath.Join(tmp, "data.img")
	if err := buildExt4(ctx, dataImg, filepath.Join(tmp, "data"), parts[3].Size, spec.Data); err != nil {
		return nil, err
	}
	return assembleDisk(ctx, out, next, parts, [4]string{bootImg, spec.SlotA, "", dataImg})
}

// GrubEnv reads the GRUB environment block from the boot partition.
func (d *Disk) GrubEnv() (map[string]string, error) {
	b, err := mtools(context.Background(), "mcopy", "-i", d.image(0), "::"+GrubEnvFile, "-")
	if err != nil {
		return nil, err
	}
	env, err := bootenv.DecodeGrub(b)
	if err != nil {
		return nil, fmt.Errorf("%s partition 1 %s: %w", d.Path, GrubEnvFile, err)
	}
	return env, nil
}

// SetGrubEnv replaces the boot partition's grubenv with env, as
// grub-editenv would write it (the rig plays GRUB's part).
func (d *Disk) SetGrubEnv(env map[string]string) error {
	b, err := bootenv.EncodeGrub(env)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "graft-grubenv-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "grubenv")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	_, err = mtools(context.Background(), "mcopy", "-o", "-i", d.image(0), p, "::"+GrubEnvFile)
	return err
}
