package rig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Errors of the VM functions; they are wrapped with details (the last
// console lines).
var (
	// ErrVMExited: QEMU exited before the console printed what WaitFor
	// waited for.
	ErrVMExited = errors.New("rig: QEMU exited")
	// ErrWaitCanceled: the context of WaitFor ended first.
	ErrWaitCanceled = errors.New("rig: console wait canceled")
)

// consoleTail is how many console lines errors quote.
const consoleTail = 30

// VMOptions describes a VM to start.
type VMOptions struct {
	Arch    Arch
	Disk    string    // raw disk image, attached as virtio-blk (U-Boot's virtio 0, Linux /dev/vda)
	Memory  int       // MiB, default 1024
	Console io.Writer // gets a copy of the serial console (optional)
	Extra   []string  // extra qemu arguments
}

// VM is a QEMU process booting Debian's U-Boot for the virt machine, with
// the serial console on its standard output. Its methods are safe for
// concurrent use.
type VM struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when QEMU has exited and the console is read
	err  error         // QEMU's exit status, set before done is closed

	mu     sync.Mutex
	lines  []string
	next   int           // index of the first line the next WaitFor looks at
	change chan struct{} // closed and replaced when a line arrives or QEMU exits
	stderr bytes.Buffer
}

// QEMUArgs returns the qemu binary and arguments StartVM uses for o.
func QEMUArgs(o VMOptions) (string, []string, error) {
	u, err := ubootFor(o.Arch)
	if err != nil {
		return "", nil, err
	}
	mem := o.Memory
	if mem <= 0 {
		mem = 1024
	}
	args := []string{
		"-M", u.machine, "-cpu", u.cpu, "-accel", "tcg", "-m", strconv.Itoa(mem),
		"-display", "none", "-serial", "stdio", "-monitor", "none",
		"-bios", u.bios,
		"-drive", "if=none,file=" + o.Disk + ",format=raw,id=hd0",
		"-device", "virtio-blk-pci,drive=hd0",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
	}
	return u.qemu, append(args, o.Extra...), nil
}

// StartVM starts QEMU for o.Arch with Debian's U-Boot as firmware and
// o.Disk as its virtio disk. There is no -no-reboot: a reset (U-Boot's
// reset, a kernel panic with panic=1) restarts U-Boot in the same process.
// QEMU is killed when ctx ends; callers also Kill it when done.
func StartVM(ctx context.Context, o VMOptions) (*VM, error) {
	name, args, err := QEMUArgs(o)
	if err != nil {
		return nil, err
	}
	if o.Disk == "" || strings.Contains(o.Disk, ",") {
		return nil, fmt.Errorf("%w: disk path %q (empty or with a comma)", ErrDiskSpec, o.Disk)
	}
	v := &VM{done: make(chan struct{}), change: make(chan struct{})}
	v.cmd = exec.Command(name, args...)
	// QEMU dies with the test process, even one killed by a test timeout.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v.cmd.Stderr = &lockedWriter{mu: &v.mu, w: &v.stderr}
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTool, name, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		v.readConsole(stdout, o.Console)
	}()
	go func() {
		<-readDone
		err := v.cmd.Wait()
		v.mu.Lock()
		v.err = err
		close(v.change)
		v.change = nil
		v.mu.Unlock()
		close(v.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = v.Kill()
		case <-v.done:
		}
	}()
	return v, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// readConsole splits the console into lines (without "\r\n") until QEMU
// closes it.
func (v *VM) readConsole(r io.Reader, copyTo io.Writer) {
	if copyTo != nil {
		r = io.TeeReader(r, copyTo)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			v.addLine(strings.TrimRight(line, "\r\n"))
		}
		if err != nil {
			return
		}
	}
}

func (v *VM) addLine(s string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lines = append(v.lines, s)
	close(v.change)
	v.change = make(chan struct{})
}

// WaitFor returns the first console line matching pattern, looking at the
// lines after the one the previous successful WaitFor returned. It fails
// with ErrVMExited when QEMU exits first and with ErrWaitCanceled when ctx
// ends first; both errors quote the last console lines.
func (v *VM) WaitFor(ctx context.Context, pattern *regexp.Regexp) (string, error) {
	for {
		v.mu.Lock()
		for i := v.next; i < len(v.lines); i++ {
			if pattern.MatchString(v.lines[i]) {
				v.next = i + 1
				line := v.lines[i]
				v.mu.Unlock()
				return line, nil
			}
		}
		change := v.change
		v.mu.Unlock()
		if change == nil { // exited, every line read
			return "", fmt.Errorf("%w (%v) before a line matched %q; %s", ErrVMExited, v.exitErr(), pattern, v.tail())
		}
		select {
		case <-change:
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %w: no line matched %q; %s", ErrWaitCanceled, ctx.Err(), pattern, v.tail())
		}
	}
}

func (v *VM) exitErr() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// tail renders the last console lines and QEMU's standard error for an
// error message.
func (v *VM) tail() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	lines := v.lines[max(0, len(v.lines)-consoleTail):]
	s := "last console lines:\n\t" + strings.Join(lines, "\n\t")
	if e := strings.TrimSpace(v.stderr.String()); e != "" {
		s += "\nqemu stderr: " + e
	}
	return s
}

// Lines returns every console line so far.
func (v *VM) Lines() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}

// PID returns QEMU's process ID.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Kill sends SIGKILL to QEMU, by PID: a power cut. It does nothing once
// QEMU has exited and can be called any number of times.
func (v *VM) Kill() error {
	select {
	case <-v.done:
		return nil
	default:
	}
	err := v.cmd.Process.Signal(syscall.SIGKILL)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Wait waits until QEMU has exited and its console is read to the end, and
// returns its exit status (an *exec.ExitError after Kill).
func (v *VM) Wait() error {
	<-v.done
	return v.exitErr()
}
