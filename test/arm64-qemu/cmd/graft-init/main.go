package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

const (
	failMarker   = "/etc/graft-init-fail"
	moduleList   = "/etc/modules"
	disk         = "/dev/vda"
	bootPart     = "/dev/vda1"
	dataPart     = "/dev/vda4"
	bootDir      = "/boot"
	dataDir      = "/var/lib/graft"
	agentPath    = "/bin/graft-agent"
	agentConf    = "/var/lib/graft/agent.conf"
	diskTimeout  = 10 * time.Second
	ifaceTimeout = 5 * time.Second
	// exitReboot is the agent's exit status for "reboot me" on boards whose
	// reboot method is to exit.
	exitReboot   = 75
	restartDelay = 2 * time.Second
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "graft-init: "+format+"\n", args...)
}

func main() {
	if os.Getpid() != 1 {
		// It mounts over /proc, /sys and /dev and reboots: never on a host.
		fmt.Fprintln(os.Stderr, "graft-init: not PID 1, refusing to run")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			logf("error: panic: %v", r)
			restart(restartDelay)
		}
	}()
	logf("starting")
	if err := mountKernelFS(); err != nil {
		logf("error: %v", err)
		restart(restartDelay)
	}
	if _, err := os.Stat(failMarker); err == nil {
		logf("this image is built to fail")
		unix.Sync()
		os.Exit(1)
	}
	run := runMode()
	loadModules()
	configureNetwork()
	if run {
		runProgram() // never returns
	}
	if err := mountDisk(); err != nil {
		logf("error: %v", err)
		restart(restartDelay)
	}
	ws, err := runAgent()
	if err != nil {
		logf("error: %v", err)
		restart(restartDelay)
	}
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
		logf("agent killed by signal %v", ws.Signal())
	}
	logf("agent exited with status %d", code)
	if code == exitReboot {
		restart(0)
	}
	restart(restartDelay)
}

// mountKernelFS mounts proc, sysfs, devtmpfs and the tmpfs directories, and
// makes the console the standard streams.
func mountKernelFS() error {
	mounts := []struct {
		fstype, target, data string
		flags                uintptr
		perm                 os.FileMode
	}{
		{"proc", "/proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0o555},
		{"sysfs", "/sys", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0o555},
		{"devtmpfs", "/dev", "mode=0755", unix.MS_NOSUID, 0o755},
		{"tmpfs", "/run", "mode=0755", unix.MS_NOSUID | unix.MS_NODEV, 0o755},
		{"tmpfs", "/tmp", "mode=1777", unix.MS_NOSUID | unix.MS_NODEV, 0o1777},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, m.perm); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
		logf("mounted %s on %s", m.fstype, m.target)
	}
	// The kernel opened the initramfs's /dev/console as fds 0-2 if it could;
	// reopen it from devtmpfs so the streams work even if it could not.
	if fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err == nil {
		for _, std := range []int{0, 1, 2} {
			_ = unix.Dup3(fd, std, 0)
		}
		unix.Close(fd)
	}
	return nil
}

// loadModules loads every module in /etc/modules in order. A module that
// fails is logged and skipped: what is missing shows up as a missing
// device later.
func loadModules() {
	data, err := os.ReadFile(moduleList)
	if errors.Is(err, os.ErrNotExist) {
		logf("no %s, no modules to load", moduleList)
		return
	}
	if err != nil {
		logf("error: %v", err)
		return
	}
	mods, err := parseModuleList(data)
	if err != nil {
		logf("error: %s: %v", moduleList, err)
		return
	}
	loaded := 0
	for _, m := range mods {
		if err := loadModule(m); err != nil {
			logf("error: load module %s: %v", m, err)
			continue
		}
		loaded++
	}
	logf("loaded %d of %d modules", loaded, len(mods))
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		logf("module %s already loaded", p)
		return nil
	}
	if err == nil {
		logf("loaded module %s", p)
	}
	return err
}

// configureNetwork applies graft.ip= from the kernel command line.
func configureNetwork() {
	if err := ifUp("lo"); err != nil {
		logf("error: lo: %v", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		logf("error: %v", err)
		return
	}
	cfg, ok, err := parseIPArg(string(cmdline))
	if err != nil {
		logf("error: %v", err)
		return
	}
	if !ok {
		logf("no graft.ip= on the command line, network not configured")
		return
	}
	if !waitFor("/sys/class/net/"+cfg.Iface, ifaceTimeout) {
		logf("error: interface %s did not appear within %v", cfg.Iface, ifaceTimeout)
		return
	}
	if err := configureIface(cfg); err != nil {
		logf("error: network %s: %v", cfg.Iface, err)
		return
	}
	if cfg.Gateway.IsValid() {
		logf("network %s %s up, default route via %s", cfg.Iface, cfg.Prefix, cfg.Gateway)
	} else {
		logf("network %s %s up", cfg.Iface, cfg.Prefix)
	}
}

// mountDisk waits for the disk and mounts the boot and data partitions.
func mountDisk() error {
	deadline := time.Now().Add(diskTimeout)
	for _, dev := range []string{disk, bootPart, dataPart} {
		if !waitFor(dev, time.Until(deadline)) {
			return fmt.Errorf("%s did not appear within %v", dev, diskTimeout)
		}
	}
	logf("found %s", disk)
	for _, m := range []struct{ dev, dir, fstype string }{
		{bootPart, bootDir, "vfat"},
		{dataPart, dataDir, "ext4"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := unix.Mount(m.dev, m.dir, m.fstype, unix.MS_NOATIME, ""); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.dev, m.fstype, m.dir, err)
		}
		logf("mounted %s (%s) on %s", m.dev, m.fstype, m.dir)
	}
	return nil
}

// waitFor polls for path to exist for up to d.
func waitFor(path string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runAgent starts graft-agent and waits for it, reaping every other child
// (orphans re-parented to PID 1) on the way.
func runAgent() (unix.WaitStatus, error) {
	args := []string{"run", "--config", agentConf}
	cmd := exec.Command(agentPath, args...)
	cmd.Env = []string{"PATH=/bin"}
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Dir = "/"
	logf("starting %s %s %s %s", agentPath, args[0], args[1], args[2])
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", agentPath, err)
	}
	ws, err := waitReaping(cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", agentPath, err)
	}
	return ws, nil
}

// restart syncs, unmounts the disk and restarts the machine after delay.
// It never returns.
func restart(delay time.Duration) {
	unix.Sync()
	for _, dir := range []string{dataDir, bootDir} {
		if err := unix.Unmount(dir, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			logf("error: unmount %s: %v", dir, err)
		}
	}
	unix.Sync()
	if delay > 0 {
		logf("restarting in %v", delay)
		time.Sleep(delay)
	}
	logf("rebooting")
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		logf("error: reboot: %v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}
