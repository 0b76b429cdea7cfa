package bootenv

// Interoperability with the real tools, both ways: mkenvimage (u-boot-tools),
// fw_printenv/fw_setenv (libubootenv-tool) and grub-editenv (grub-common).

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tool returns the path of a Debian tool, failing (never skipping) with the
// package to install when it is missing.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed for this interop test and was not found (%v): apt-get install -y %s", name, err, pkg)
	}
	return p
}

// run runs a tool and returns its stdout; it fails the test if the tool
// fails.
func run(t *testing.T, name, pkg string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool(t, name, pkg), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\nstdout: %s\nstderr: %s", name, args, err, out, stderr.Bytes())
	}
	return string(out)
}

// runFails runs a tool that is expected to fail.
func runFails(t *testing.T, name, pkg string, args ...string) {
	t.Helper()
	out, err := exec.Command(tool(t, name, pkg), args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s %q: want a non-zero exit, got err=%v, output:\n%s", name, args, err, out)
	}
}

func fwPrintenv(t *testing.T, cfg string) Env {
	t.Helper()
	// -f: no default environment, so an unreadable env is an error.
	out := run(t, "fw_printenv", "libubootenv-tool", "-c", cfg, "-f", "/nonexistent/u-boot-initial-env")
	env := Env{}
	last := ""
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok && last != "" {
			// A value with a newline is printed over several lines; the
			// tests keep '=' out of continuation lines.
			env[last] += "\n" + line
			continue
		}
		if !ok {
			t.Fatalf("fw_printenv printed %q, not name=value", line)
		}
		env[k], last = v, k
	}
	return env
}

func fwSetenv(t *testing.T, cfg string, args ...string) {
	t.Helper()
	run(t, "fw_setenv", "libubootenv-tool", append([]string{"-c", cfg, "-f", "/nonexistent/u-boot-initial-env"}, args...)...)
}

// disk is a file standing in for a block device: 1 MiB of a known pattern,
// so that any byte written outside the environment areas shows.
type disk struct {
	path    string
	initial []byte
}

func newDisk(t *testing.T, dir, name string) *disk {
	t.Helper()
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + i>>11 + 3)
	}
	d := &disk{path: filepath.Join(dir, name), initial: b}
	if err := os.WriteFile(d.path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// checkOutside fails if any byte outside the given [off, off+size) areas
// differs from the initial pattern.
func (d *disk) checkOutside(t *testing.T, areas ...FWLocation) {
	t.Helper()
	now, err := os.ReadFile(d.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(now) != len(d.initial) {
		t.Fatalf("%s changed size: %d bytes, was %d", d.path, len(now), len(d.initial))
	}
	inside := func(i int) bool {
		for _, a := range areas {
			if filepath.Clean(a.Device) == filepath.Clean(d.path) && int64(i) >= a.Offset && int64(i) < a.Offset+a.Size {
				return true
			}
		}
		return false
	}
	for i := range now {
		if now[i] != d.initial[i] && !inside(i) {
			t.Fatalf("%s: byte at %#x outside the environment areas changed: %#x, was %#x", d.path, i, now[i], d.initial[i])
		}
	}
}

func (d *disk) read(t *testing.T, l FWLocation) []byte {
	t.Helper()
	b, err := os.ReadFile(d.path)
	if err != nil {
		t.Fatal(err)
	}
	return b[l.Offset : l.Offset+l.Size]
}

func (d *disk) write(t *testing.T, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(d.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, dir string, locs ...FWLocation) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# written by bootenv tests\n")
	for _, l := range locs {
		fmt.Fprintf(&b, "%s\t%#x\t%#x\n", l.Device, l.Offset, l.Size)
	}
	p := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, s Store) Env {
	t.Helper()
	env, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return env
}

func wantEnv(t *testing.T, what string, got, want Env) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

var bootVars = Env{
	"BOOT_ORDER":  "A B",
	"BOOT_A_LEFT": "3",
	"BOOT_B_LEFT": "3",
	"bootargs":    "console=ttyS0,115200 root=/dev/mmcblk0p2 rw",
	"bootcmd":     `run distro_bootcmd; echo "${BOOT_ORDER}" 'q' $x`,
	"eq":          "a=b=c",
}

func varsFile(t *testing.T, dir string, env Env) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# a comment line mkenvimage skips\n\n")
	for _, k := range env.Keys() {
		fmt.Fprintf(&b, "%s=%s\n", k, env[k])
	}
	p := filepath.Join(dir, "vars.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// mkenvimage → graft, and graft's encoding is byte for byte mkenvimage's
// when padding is the same.
func TestMkenvimageToGraft(t *testing.T) {
	const size = 0x4000
	tests := []struct {
		name      string
		args      []string
		redundant bool
		// flags graft must write to produce identical bytes; -1: padding
		// differs (mkenvimage pads with 0xff by default).
		sameAsFlags int
	}{
		{name: "single, 0xff padding", args: nil, sameAsFlags: -1},
		{name: "single, -p 0", args: []string{"-p", "0"}, sameAsFlags: 0},
		{name: "redundant -r", args: []string{"-r"}, redundant: true, sameAsFlags: -1},
		{name: "redundant -r -p 0", args: []string{"-r", "-p", "0"}, redundant: true, sameAsFlags: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "env.bin")
			args := append([]string{"-s", strconv.Itoa(size), "-o", img}, tt.args...)
			run(t, "mkenvimage", "u-boot-tools", append(args, varsFile(t, dir, bootVars))...)
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}

			got, flags, err := DecodeUBoot(b, tt.redundant)
			if err != nil {
				t.Fatalf("DecodeUBoot(mkenvimage output): %v", err)
			}
			wantEnv(t, "decoded mkenvimage image", got, bootVars)

			if tt.sameAsFlags >= 0 {
				enc, err := EncodeUBoot(bootVars, size, tt.redundant, byte(tt.sameAsFlags))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(enc, b) {
					t.Errorf("EncodeUBoot differs from mkenvimage %q (flags %d)", tt.args, flags)
				}
			}

			// Through a store: the image placed inside a bigger disk.
			d := newDisk(t, dir, "disk.img")
			loc0 := FWLocation{Device: d.path, Offset: 0x10000, Size: size}
			loc1 := FWLocation{Device: d.path, Offset: 0x20000, Size: size}
			d.write(t, loc0.Offset, b)
			locs := []FWLocation{loc0}
			if tt.redundant {
				locs = append(locs, loc1) // copy 1 holds the pattern: bad CRC
			}
			u, err := OpenUBoot(writeConfig(t, dir, locs...))
			if err != nil {
				t.Fatal(err)
			}
			u.LockFile = filepath.Join(dir, "lock")
			wantEnv(t, "UBoot.Load of mkenvimage image", load(t, u), bootVars)
		})
	}
}

// graft writes, fw_printenv reads; fw_setenv writes, graft reads; at an
// offset inside a larger file, single and redundant.
func TestGraftAndFwSetenv(t *testing.T) {
	const size = 0x4000
	tests := []struct {
		name string
		// locations relative to the disks: device index and offset
		locs func(d0, d1 *disk) []FWLocation
	}{
		{name: "single", locs: func(d0, _ *disk) []FWLocation {
			return []FWLocation{{Device: d0.path, Offset: 0x20000, Size: size}}
		}},
		{name: "redundant, one device", locs: func(d0, _ *disk) []FWLocation {
			return []FWLocation{{Device: d0.path, Offset: 0x40000, Size: size}, {Device: d0.path, Offset: 0x60000, Size: size}}
		}},
		{name: "redundant, two devices", locs: func(d0, d1 *disk) []FWLocation {
			return []FWLocation{{Device: d0.path, Offset: 0x8000, Size: size}, {Device: d1.path, Offset: 0xfc000, Size: size}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			d0, d1 := newDisk(t, dir, "disk0.img"), newDisk(t, dir, "disk1.img")
			locs := tt.locs(d0, d1)
			cfg := writeConfig(t, dir, locs...)
			u, err := OpenUBoot(cfg)
			if err != nil {
				t.Fatal(err)
			}

			// The areas hold no environment yet (both copies bad).
			if _, err := u.Load(); err == nil {
				t.Fatal("Load of an area without environment succeeded")
			}
			if err := u.Save(bootVars); err != nil {
				t.Fatalf("Save: %v", err)
			}
			wantEnv(t, "fw_printenv after graft's first Save", fwPrintenv(t, cfg), bootVars)

			want := bootVars.Clone()
			want["multi"] = "line1\nline2"
			want["special"] = `\ # $ { } = ; "`
			fwSetenv(t, cfg, "multi", want["multi"])
			fwSetenv(t, cfg, "special", want["special"])
			wantEnv(t, "graft after fw_setenv", load(t, u), want)

			fwSetenv(t, cfg, "eq") // fw_setenv NAME unsets NAME
			delete(want, "eq")
			wantEnv(t, "graft after fw_setenv unset", load(t, u), want)

			err = Update(u, func(e Env) error {
				e["BOOT_ORDER"] = "B A"
				e["BOOT_B_LEFT"] = "2"
				delete(e, "special")
				return nil
			})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			want["BOOT_ORDER"], want["BOOT_B_LEFT"] = "B A", "2"
			delete(want, "special")
			wantEnv(t, "fw_printenv after graft's Update", fwPrintenv(t, cfg), want)

			d0.checkOutside(t, locs...)
			d1.checkOutside(t, locs...)
		})
	}
}

// Alternating writes by graft and fw_setenv on a redundant environment, with
// the flags serial starting near 255 so both sides cross the 255→0 wrap.
// After every write the copy just written must be the current one, hold
// the other copy's flags + 1, and both tools must read the same variables.
func TestRedundantAlternatingWrites(t *testing.T) {
	const size = 0x2000
	dir := t.TempDir()
	d := newDisk(t, dir, "disk.img")
	locs := [2]FWLocation{{Device: d.path, Offset: 0x30000, Size: size}, {Device: d.path, Offset: 0x32000, Size: size}}
	cfg := writeConfig(t, dir, locs[:]...)
	u, err := NewUBoot(locs[:]...)
	if err != nil {
		t.Fatal(err)
	}

	// Start: copy 0 valid with flags 253, copy 1 garbage.
	b, err := EncodeUBoot(bootVars, size, true, 253)
	if err != nil {
		t.Fatal(err)
	}
	d.write(t, locs[0].Offset, b)
	lastCopy, lastFlags := 0, byte(253)

	// checkWritten verifies which copy was written and with which flags.
	checkWritten := func(who string) {
		t.Helper()
		var c [2]ubootCopy
		for i := range c {
			c[i].env, c[i].flags, c[i].err = DecodeUBoot(d.read(t, locs[i]), true)
		}
		cur, err := selectCopy(c)
		if err != nil {
			t.Fatalf("after %s: %v", who, err)
		}
		if cur == lastCopy {
			t.Fatalf("after %s: copy %d is still current; the inactive copy was not the one written", who, cur)
		}
		if c[cur].flags != lastFlags+1 {
			t.Fatalf("after %s: copy %d has flags %d, want %d", who, cur, c[cur].flags, lastFlags+1)
		}
		if c[1-cur].err != nil {
			t.Fatalf("after %s: the previously current copy %d was damaged: %v", who, 1-cur, c[1-cur].err)
		}
		lastCopy, lastFlags = cur, c[cur].flags
	}

	want := bootVars.Clone()
	for i := range 6 {
		n := strconv.Itoa(i)
		err := Update(u, func(e Env) error {
			e["BOOT_A_LEFT"] = n
			e["graft_step"] = n
			return nil
		})
		if err != nil {
			t.Fatalf("step %d: Update: %v", i, err)
		}
		want["BOOT_A_LEFT"], want["graft_step"] = n, n
		checkWritten("graft step " + n)
		wantEnv(t, "fw_printenv after graft step "+n, fwPrintenv(t, cfg), want)

		fwSetenv(t, cfg, "BOOT_B_LEFT", n, "fw_step", n)
		want["BOOT_B_LEFT"], want["fw_step"] = n, n
		checkWritten("fw_setenv step " + n)
		wantEnv(t, "graft after fw_setenv step "+n, load(t, u), want)
	}
	if lastFlags >= 253 {
		t.Fatalf("flags ended at %d: the 255→0 wrap was not crossed", lastFlags)
	}
	d.checkOutside(t, locs[:]...)
}

// A corrupted redundant copy falls back to the other; both corrupted is
// ErrNoValidCopy; a corrupted single copy is ErrBadCRC. fw_printenv agrees
// on each outcome.
func TestCorruption(t *testing.T) {
	const size = 0x1000
	dir := t.TempDir()
	d := newDisk(t, dir, "disk.img")
	locs := []FWLocation{{Device: d.path, Offset: 0x1000, Size: size}, {Device: d.path, Offset: 0x3000, Size: size}}
	cfg := writeConfig(t, dir, locs...)
	u, err := NewUBoot(locs...)
	if err != nil {
		t.Fatal(err)
	}
	older := Env{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3"}
	newer := Env{"BOOT_ORDER": "B A", "BOOT_B_LEFT": "3"}
	for _, e := range []Env{older, newer} {
		if err := u.Save(e); err != nil {
			t.Fatal(err)
		}
	}
	wantEnv(t, "before corruption", load(t, u), newer)

	// Which copy holds newer? Corrupt it.
	active := 0
	if e, _, err := DecodeUBoot(d.read(t, locs[1]), true); err == nil && maps.Equal(e, newer) {
		active = 1
	}
	flip := func(l FWLocation) {
		b := d.read(t, l)
		d.write(t, l.Offset+10, []byte{b[10] ^ 0x40})
	}
	flip(locs[active])
	got, err := u.Load()
	if err != nil {
		t.Fatalf("Load with one corrupted copy: %v", err)
	}
	wantEnv(t, "graft falls back to the good copy", got, older)
	wantEnv(t, "fw_printenv falls back to the same copy", fwPrintenv(t, cfg), older)

	// Saving now rewrites the corrupted copy, and it becomes current.
	recovered := Env{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "2"}
	if err := u.Save(recovered); err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeUBoot(d.read(t, locs[active]), true); err != nil {
		t.Fatalf("Save after fallback did not rewrite the corrupted copy %d: %v", active, err)
	}
	wantEnv(t, "fw_printenv after recovery", fwPrintenv(t, cfg), recovered)

	flip(locs[0])
	flip(locs[1])
	if _, err := u.Load(); !errors.Is(err, ErrNoValidCopy) {
		t.Fatalf("Load with both copies corrupted: error = %v, want ErrNoValidCopy", err)
	}
	runFails(t, "fw_printenv", "libubootenv-tool", "-c", cfg, "-f", "/nonexistent/u-boot-initial-env")
	if err := Update(u, func(Env) error { t.Error("Update ran fn without a valid env"); return nil }); !errors.Is(err, ErrNoValidCopy) {
		t.Fatalf("Update with both copies corrupted: error = %v, want ErrNoValidCopy", err)
	}

	// Single copy.
	single := []FWLocation{{Device: d.path, Offset: 0x8000, Size: size}}
	scfg := filepath.Join(dir, "single")
	if err := os.MkdirAll(scfg, 0o755); err != nil {
		t.Fatal(err)
	}
	scfg = writeConfig(t, scfg, single...)
	s, err := OpenUBoot(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(older); err != nil {
		t.Fatal(err)
	}
	wantEnv(t, "fw_printenv of graft's single copy", fwPrintenv(t, scfg), older)
	flip(single[0])
	if _, err := s.Load(); !errors.Is(err, ErrBadCRC) {
		t.Fatalf("Load of a corrupted single copy: error = %v, want ErrBadCRC", err)
	}
	runFails(t, "fw_printenv", "libubootenv-tool", "-c", scfg, "-f", "/nonexistent/u-boot-initial-env")
	d.checkOutside(t, append(locs, single...)...)
}

// Things that must not be written at all.
func TestUBootRefusesBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	d := newDisk(t, dir, "disk.img")
	loc := FWLocation{Device: d.path, Offset: 0x1000, Size: 0x100}
	u, err := NewUBoot(loc)
	if err != nil {
		t.Fatal(err)
	}
	u.LockFile = filepath.Join(dir, "lock")
	if err := u.Save(Env{"big": strings.Repeat("x", 0x100)}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized Save: error = %v, want ErrTooLarge", err)
	}
	if err := u.Save(Env{"a=b": "c"}); !errors.Is(err, ErrInvalidVar) {
		t.Errorf("Save of a name with '=': error = %v, want ErrInvalidVar", err)
	}
	past, err := NewUBoot(FWLocation{Device: d.path, Offset: 1<<20 - 0x80, Size: 0x100})
	if err != nil {
		t.Fatal(err)
	}
	past.LockFile = ""
	if err := past.Save(Env{"a": "1"}); !errors.Is(err, ErrConfig) {
		t.Errorf("Save of an area past the end of the file: error = %v, want ErrConfig", err)
	}
	d.checkOutside(t) // nothing written anywhere

	// A negative offset counts from the end of the device.
	tail, err := NewUBoot(FWLocation{Device: d.path, Offset: -0x100, Size: 0x100}, FWLocation{Device: d.path, Offset: -0x200, Size: 0x100})
	if err != nil {
		t.Fatal(err)
	}
	tail.LockFile = ""
	if err := tail.Save(Env{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	wantEnv(t, "negative offsets", load(t, tail), Env{"a": "1"})
	d.checkOutside(t, FWLocation{Device: d.path, Offset: 1<<20 - 0x200, Size: 0x200})
}

// grub-editenv writes, graft reads; graft writes, grub-editenv reads; the
// bytes are identical to grub-editenv create + set in sorted order.
func TestGrubEditenvInterop(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	want := Env{
		"BOOT_ORDER":  "A B",
		"BOOT_A_LEFT": "3",
		"backslash":   `C:\path\\x\`,
		"newline":     "one\ntwo\n",
		"hash":        "#not a comment # either",
		"eq":          "a=b",
		"empty":       "",
		"utf8":        "grüße ✓",
		"gone":        "soon",
	}
	run(t, "grub-editenv", "grub-common", path, "create")
	var sets []string
	for _, k := range want.Keys() {
		sets = append(sets, k+"="+want[k])
	}
	run(t, "grub-editenv", "grub-common", append([]string{path, "set"}, sets...)...)
	g := OpenGrub(path)
	wantEnv(t, "graft reads grub-editenv's block", load(t, g), want)

	// Byte for byte: grub-editenv set in sorted order = EncodeGrub.
	fromGrub, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeGrub(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, fromGrub) {
		t.Errorf("EncodeGrub differs from grub-editenv:\n got  %q\n want %q", enc, fromGrub)
	}

	run(t, "grub-editenv", "grub-common", path, "unset", "gone")
	delete(want, "gone")
	wantEnv(t, "graft after grub-editenv unset", load(t, g), want)

	// graft writes; grub-editenv lists the same, in graft's sorted order.
	want["BOOT_ORDER"] = "B A"
	want["added"] = "by graft\\"
	if err := g.Save(want); err != nil {
		t.Fatal(err)
	}
	var list strings.Builder
	for _, k := range want.Keys() {
		list.WriteString(k + "=" + want[k] + "\n")
	}
	if got := run(t, "grub-editenv", "grub-common", path, "list"); got != list.String() {
		t.Errorf("grub-editenv list after graft's Save:\n got  %q\n want %q", got, list.String())
	}
	// And grub-editenv can still edit graft's file.
	run(t, "grub-editenv", "grub-common", path, "set", "BOOT_B_LEFT=1")
	want["BOOT_B_LEFT"] = "1"
	wantEnv(t, "graft after grub-editenv edits graft's file", load(t, g), want)
}

// The capacity boundary agrees with grub-editenv: with its warning line the
// block holds 1024-25-68 bytes of variables.
func TestGrubCapacity(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	max := GrubEnvSize - len(grubSignature) - len(grubMessage) - len("v=\n")

	run(t, "grub-editenv", "grub-common", path, "create")
	run(t, "grub-editenv", "grub-common", path, "set", "v="+strings.Repeat("x", max))
	fromGrub, _ := os.ReadFile(path)
	enc, err := EncodeGrub(Env{"v": strings.Repeat("x", max)})
	if err != nil || !bytes.Equal(enc, fromGrub) {
		t.Fatalf("full block: EncodeGrub err=%v, equal to grub-editenv's=%v", err, bytes.Equal(enc, fromGrub))
	}

	run(t, "grub-editenv", "grub-common", path, "create")
	runFails(t, "grub-editenv", "grub-common", path, "set", "v="+strings.Repeat("x", max+1))
	// graft drops the warning comment to make room; grub-editenv still
	// reads the result.
	g := OpenGrub(path)
	big := Env{"v": strings.Repeat("x", max+1)}
	if err := g.Save(big); err != nil {
		t.Fatal(err)
	}
	if got := run(t, "grub-editenv", "grub-common", path, "list"); got != "v="+big["v"]+"\n" {
		t.Errorf("grub-editenv list of a block without the warning line: %q", got)
	}
	before, _ := os.ReadFile(path)
	if err := g.Save(Env{"v": strings.Repeat("x", max+len(grubMessage)+1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Save of a value that cannot fit: error = %v, want ErrTooLarge", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused Save changed the file")
	}
}

// Update holds the very lock fw_printenv and fw_setenv take, for the whole
// load-modify-save.
func TestUpdateHoldsFwLock(t *testing.T) {
	dir := t.TempDir()
	d := newDisk(t, dir, "disk.img")
	u, err := NewUBoot(FWLocation{Device: d.path, Offset: 0, Size: 0x1000})
	if err != nil {
		t.Fatal(err)
	}
	if u.LockFile != DefaultLockFile {
		t.Fatalf("LockFile = %q, want libubootenv's %q", u.LockFile, DefaultLockFile)
	}
	if err := u.Save(Env{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	flock := tool(t, "flock", "util-linux")
	err = Update(u, func(e Env) error {
		// flock -n fails with status 1 when someone else holds the lock.
		err := exec.Command(flock, "-n", u.LockFile, "true").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("flock -n %s inside Update: %v; want exit status 1 (lock held)", u.LockFile, err)
		}
		e["a"] = "2"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(flock, "-n", u.LockFile, "true").Run(); err != nil {
		t.Errorf("lock still held after Update: %v", err)
	}
}
