package rig

import (
	"time"

	"context"
	"fmt"
	"github.com/graft-dev/graft/agent/config"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// GuestSpec describes one emulated device running graft-agent.
type GuestSpec struct {
	Arch     Arch
	DeviceID string
	Broker   string // the fleet's MQTT URL as the host sees it (tcp://127.0.0.1:PORT)
	RepoURL  string // the TUF repository base URL as the host sees it (http://127.0.0.1:PORT)
	Root     []byte // the trusted TUF root the device is provisioned with
	Logf     func(format string, args ...any)
}

// Guest is a provisioned emulated device: a Debian kernel, the agent and
// graft-init built for its architecture, and a disk whose slot A holds a
// bootable image.
type Guest struct {
	Arch   Arch
	Board  string // graft's board name for this machine
	Kernel *Kernel
	Disk   *Disk
	Dir    string
	init   string
	agent  string
	logf   func(string, ...any)
}

// Board returns graft's board for an emulated architecture.
func Board(a Arch) (name, goarch string) {
	switch a {
	case ARM64:
		return "qemu-virt-arm64", "arm64"
	case ARMHF:
		return "qemu-virt-armv7", "arm"
	}
	return "", ""
}

// GuestURL rewrites a host loopback URL to the address the guest reaches
// the host's loopback at (QEMU user networking: 10.0.2.2).
func GuestURL(hostURL string) (string, error) {
	u, err := url.Parse(hostURL)
	if err != nil {
		return "", err
	}
	u.Host = "10.0.2.2:" + u.Port()
	return u.String(), nil
}

// NewGuest fetches the kernel, builds the guest's programs and its disk
// under dir.
func NewGuest(ctx context.Context, dir string, spec GuestSpec) (*Guest, error) {
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	board, _ := Board(spec.Arch)
	if board == "" {
		return nil, fmt.Errorf("%w: no emulated board for %q", ErrUnknownArch, spec.Arch)
	}
	k, err := FetchKernel(ctx, spec.Arch, logf)
	if err != nil {
		return nil, err
	}
	g := &Guest{Arch: spec.Arch, Board: board, Kernel: k, Dir: dir, logf: logf,
		init: filepath.Join(dir, "graft-init"), agent: filepath.Join(dir, "graft-agent")}
	logf("building graft-init and graft-agent for %s", spec.Arch)
	if err := BuildGo(ctx, spec.Arch, "github.com/graft-dev/graft/test/arm64-qemu/cmd/graft-init", g.init); err != nil {
		return nil, err
	}
	if err := BuildGo(ctx, spec.Arch, "github.com/graft-dev/graft/agent/cmd/graft-agent", g.agent); err != nil {
		return nil, err
	}
	slotA, err := g.SlotImage(ctx, "v1", false)
	if err != nil {
		return nil, err
	}
	conf, err := g.agentConfig(spec)
	if err != nil {
		return nil, err
	}
	g.Disk, err = BuildDisk(ctx, DiskSpec{
		Arch:     spec.Arch,
		SlotA:    slotA,
		DataSize: 128 << 20,
		Data: map[string][]byte{
			"agent.conf":    conf,
			"tuf/root.json": spec.Root,
		},
	}, filepath.Join(dir, "disk.img"))
	if err != nil {
		return nil, err
	}
	logf("disk %s: slot A holds v1 (kernel %s)", g.Disk.Path, k.Release)
	return g, nil
}

func (g *Guest) agentConfig(spec GuestSpec) ([]byte, error) {
	broker, err := GuestURL(spec.Broker)
	if err != nil {
		return nil, err
	}
	repo, err := GuestURL(spec.RepoURL)
	if err != nil {
		return nil, err
	}
	repo = strings.TrimSuffix(repo, "/")
	c := config.Default()
	c.DeviceID, c.Board, c.Broker = spec.DeviceID, g.Board, broker
	c.KeepAlive = 10 * time.Second
	c.MetadataURL, c.TargetsURL = repo+"/metadata", repo+"/targets"
	return c.Encode()
}

// SlotImage builds a slot image (a FAT file system with the kernel and an
// initramfs holding graft-init and graft-agent) named after release. A
// failing image's init exits at once: the kernel panics and, with panic=1,
// the machine resets.
func (g *Guest) SlotImage(ctx context.Context, release string, failing bool) (string, error) {
	files := map[string][]byte{"etc/graft-release": []byte(release + "\n")}
	if failing {
		files["etc/graft-init-fail"] = []byte("this image is built to fail\n")
	}
	initrd := filepath.Join(g.Dir, release+".initrd.img")
	if err := BuildInitramfs(InitramfsSpec{
		Arch: g.Arch, Init: g.init, Agent: g.agent, Kernel: g.Kernel,
		Modules: DefaultModules(g.Arch), Files: files,
	}, initrd); err != nil {
		return "", err
	}
	size := int64(4 << 20)
	for _, p := range []string{g.Kernel.Image, initrd} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		size += fi.Size() + 64<<10
	}
	out := filepath.Join(g.Dir, release+".slot.img")
	if err := BuildSlot(ctx, out, size, map[string]string{KernelFile(g.Arch): g.Kernel.Image, "initrd.img": initrd}); err != nil {
		return "", err
	}
	return out, nil
}

// Boot powers the guest on.
func (g *Guest) Boot(ctx context.Context, console io.Writer) (*VM, error) {
	return StartVM(ctx, VMOptions{Arch: g.Arch, Disk: g.Disk.Path, Console: console})
}
