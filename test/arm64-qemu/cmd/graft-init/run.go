package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	runConfigPath = "/etc/graft-run"
	// exitStartFailed is reported when the program cannot be started, as
	// a shell reports a command it cannot run.
	exitStartFailed = 127
)

// defaultRunEnv is the environment of the program; /etc/graft-run's
// entries come after it and win.
var defaultRunEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/",
}

// runMode reports whether the kernel command line asks for run mode.
func runMode() bool {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		logf("error: %v", err)
		return false
	}
	return parseRunArg(string(cmdline))
}

// runProgram runs the program /etc/graft-run names as the machine's only
// job, prints "graft-run: exit N" and powers off. It never returns.
func runProgram() {
	if err := os.MkdirAll("/dev/shm", 0o1777); err == nil {
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			logf("error: mount tmpfs on /dev/shm: %v", err)
		}
	}
	code, err := runConfigured()
	if err != nil {
		fmt.Printf("graft-run: error: %v\n", err)
		code = exitStartFailed
	}
	fmt.Printf("graft-run: exit %d\n", code)
	powerOff()
}

func runConfigured() (int, error) {
	data, err := os.ReadFile(runConfigPath)
	if err != nil {
		return 0, err
	}
	c, err := parseRunConfig(data)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", runConfigPath, err)
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(append([]string(nil), defaultRunEnv...), c.Env...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Dir = "/"
	logf("running %s", strings.Join(c.Argv, " "))
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", c.Argv[0], err)
	}
	ws, err := waitReaping(cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	if ws.Signaled() {
		fmt.Printf("graft-run: killed by signal %d (%v)\n", int(ws.Signal()), ws.Signal())
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// powerOff syncs and powers the machine off. It never returns.
func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		logf("error: power off: %v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// waitReaping waits for the child pid, reaping every other child (orphans
// re-parented to PID 1) on the way.
func waitReaping(pid int) (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait for pid %d: %w", pid, err)
		}
		if got == pid && (ws.Exited() || ws.Signaled()) {
			return ws, nil
		}
	}
}
