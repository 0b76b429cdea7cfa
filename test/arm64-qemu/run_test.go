package rig

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/cross"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestParseRunExit(t *testing.T) {
	tests := []struct {
		name string
		out  string
		code int
		ok   bool
	}{
		{"none", "graft-init: starting\n", 0, false},
		{"zero", "hello\ngraft-run: exit 0\n", 0, true},
		{"after kernel noise", "[ 1.2] reboot: Power down\ngraft-run: exit 3\n[ 1.3] x\n", 3, true},
		{"last wins", "graft-run: exit 9\ngraft-run: exit 137\n", 137, true},
		{"not at line end", "graft-run: exit 3x\n", 0, false},
		{"negative", "graft-run: exit -1\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ok := ParseRunExit(tt.out)
			if code != tt.code || ok != tt.ok {
				t.Errorf("ParseRunExit = %d, %v; want %d, %v", code, ok, tt.code, tt.ok)
			}
		})
	}
}

// TestEncodeRunConfig checks the host side of /etc/graft-run against the
// file graft-init's own tests parse.
func TestEncodeRunConfig(t *testing.T) {
	golden, err := os.ReadFile("cmd/graft-init/testdata/run-config.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodeRunConfig([]string{"/bin/prog", "-v", "two words", "ü"}, []string{"GRAFT_X=1", "EMPTY="})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, golden) {
		t.Errorf("encodeRunConfig = %s, want %s", got, golden)
	}
	for _, bad := range []struct {
		name      string
		argv, env []string
	}{
		{"no argv", nil, nil},
		{"relative", []string{"prog"}, nil},
		{"NUL", []string{"/p", "a\x00"}, nil},
		{"invalid UTF-8", []string{"/p", "\xff"}, nil},
		{"env without =", []string{"/p"}, []string{"FOO"}},
		{"env without key", []string{"/p"}, []string{"=1"}},
	} {
		if _, err := encodeRunConfig(bad.argv, bad.env); !errors.Is(err, ErrRunSpec) {
			t.Errorf("%s: error = %v, want ErrRunSpec", bad.name, err)
		}
	}
}

func TestBuildFilesArchive(t *testing.T) {
	src := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(src, []byte("#!prog"), 0o750); err != nil {
		t.Fatal(err)
	}
	b, err := buildFilesArchive([]File{
		{Path: "/usr/bin/prog", Src: src},
		{Path: "etc/conf", Data: []byte("x=1\n")},
		{Path: "usr/lib/tool", Data: []byte("t"), Mode: 0o700},
		{Path: "lib64/ld.so", Data: []byte("/lib/x/ld.so"), Mode: fs.ModeSymlink | 0o777},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%4 != 0 {
		t.Errorf("archive of %d bytes is not padded to 4", len(b))
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		mode uint64
		data string
	}
	got := map[string]entry{}
	var order []string
	for _, r := range recs {
		var data string
		if r.ReaderAt != nil {
			d, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
			data = string(d)
		}
		got[r.Name] = entry{r.Mode, data}
		order = append(order, r.Name)
	}
	want := map[string]entry{
		"usr":          {cpio.S_IFDIR | 0o755, ""},
		"usr/bin":      {cpio.S_IFDIR | 0o755, ""},
		"usr/bin/prog": {cpio.S_IFREG | 0o750, "#!prog"},
		"etc":          {cpio.S_IFDIR | 0o755, ""},
		"etc/conf":     {cpio.S_IFREG | 0o644, "x=1\n"},
		"usr/lib":      {cpio.S_IFDIR | 0o755, ""},
		"usr/lib/tool": {cpio.S_IFREG | 0o700, "t"},
		"lib64":        {cpio.S_IFDIR | 0o755, ""},
		"lib64/ld.so":  {cpio.S_IFLNK | 0o777, "/lib/x/ld.so"},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %o %q (present %v), want %o %q", name, g.mode, g.data, ok, w.mode, w.data)
		}
	}
	if len(got) != len(want) {
		t.Errorf("archive holds %q, want %d entries", order, len(want))
	}
	// The kernel creates nothing implicitly: each directory comes before
	// what is in it.
	pos := map[string]int{}
	for i, n := range order {
		pos[n] = i
	}
	for _, n := range order {
		if d := filepath.Dir(n); d != "." && pos[d] > pos[n] {
			t.Errorf("%s comes before its directory %s", n, d)
		}
	}
}

func TestBuildFilesArchiveRejects(t *testing.T) {
	tests := []struct {
		name  string
		files []File
	}{
		{"unclean", []File{{Path: "bin/../x", Data: []byte("x")}}},
		{"escapes", []File{{Path: "../x", Data: []byte("x")}}},
		{"empty", []File{{Path: "/", Data: []byte("x")}}},
		{"twice", []File{{Path: "bin/x", Data: []byte("1")}, {Path: "/bin/x", Data: []byte("2")}}},
		{"file over a directory", []File{{Path: "bin/x/y", Data: []byte("1")}, {Path: "bin/x", Data: []byte("2")}}},
		{"init", []File{{Path: "/init", Data: []byte("x")}}},
		{"run config", []File{{Path: "etc/graft-run", Data: []byte("{}")}}},
		{"missing source", []File{{Path: "bin/x", Src: "/nonexistent/graft-rig"}}},
		{"link without target", []File{{Path: "bin/x", Mode: fs.ModeSymlink}}},
		{"device", []File{{Path: "dev/x", Mode: fs.ModeDevice | 0o600}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := buildFilesArchive(tt.files); !errors.Is(err, ErrRunSpec) {
				t.Errorf("error = %v, want ErrRunSpec", err)
			}
		})
	}
}

func TestRunGuestRejects(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := RunGuest(ctx, dir, RunSpec{Arch: "riscv64", Argv: []string{"/x"}}); !errors.Is(err, ErrUnknownArch) {
		t.Errorf("unknown arch: error = %v, want ErrUnknownArch", err)
	}
	if _, err := RunGuest(ctx, dir, RunSpec{Arch: ARM64, Argv: []string{"x"}}); !errors.Is(err, ErrRunSpec) {
		t.Errorf("relative program: error = %v, want ErrRunSpec", err)
	}
	k := &Kernel{Arch: ARMHF}
	if _, err := RunGuest(ctx, dir, RunSpec{Arch: ARM64, Kernel: k, Argv: []string{"/x"}}); !errors.Is(err, ErrRunSpec) {
		t.Errorf("kernel of another arch: error = %v, want ErrRunSpec", err)
	}
}

// helloC is the guest program of TestRunGuest.
const helloC = `/* The guest program of run_test.go: Debian's libc and libcrypto resolve
 * through the guest's dynamic loader, ptrace works on a child, and the
 * exit status is argv[1]. No headers of OpenSSL are needed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

const char *OpenSSL_version(int);

/* fork copies it; the parent reads the child's copy through ptrace. */
static volatile long magic = 0x67726166; /* "graf" */

static int check_ptrace(void)
{
	int st;
	pid_t pid = fork();
	if (pid < 0)
		return perror("fork"), 1;
	if (pid == 0) {
		magic += 1; /* the child's copy differs from the parent's */
		for (;;)
			pause();
	}
	usleep(100000); /* let the child write its copy */
	if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0)
		return perror("PTRACE_ATTACH"), 1;
	if (waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st))
		return fprintf(stderr, "waitpid: child not stopped (status %#x)\n", st), 1;
	errno = 0;
	long v = ptrace(PTRACE_PEEKDATA, pid, (void *)&magic, 0);
	if (errno != 0)
		return perror("PTRACE_PEEKDATA"), 1;
	if (ptrace(PTRACE_DETACH, pid, 0, 0) != 0)
		return perror("PTRACE_DETACH"), 1;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	if (v != 0x67726166 + 1)
		return fprintf(stderr, "PTRACE_PEEKDATA read %#lx, want %#lx\n", v, 0x67726166L + 1), 1;
	printf("ptrace ok: peeked %#lx from pid %d\n", v, (int)pid);
	return 0;
}

int main(int argc, char **argv)
{
	printf("atoi=%d\n", atoi("42"));
	printf("openssl=%s\n", OpenSSL_version(0));
	fflush(stdout);
	if (check_ptrace() != 0)
		return 1;
	return argc > 1 ? atoi(argv[1]) : 0;
}
`

// buildHello compiles helloC for arch with cross.CC against the
// userland's libcrypto.
func buildHello(t *testing.T, arch Arch, u *Userland, out string) {
	t.Helper()
	src := out + ".c"
	if err := os.WriteFile(src, []byte(helloC), 0o644); err != nil {
		t.Fatal(err)
	}
	goarch, _ := arch.GOARCH()
	cc, err := cross.CC(goarch)
	if err != nil {
		t.Fatal(err)
	}
	crypto, err := u.Lib("libcrypto.so.3")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc, "-Wall", "-O2", "-o", out, src, crypto)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cc, err, b)
	}
}

// TestRunGuest boots each architecture's Debian kernel with a C program
// linked against Debian's libc and libcrypto as the guest's only job: the
// guest's loader resolves both from the userland in the initramfs (the
// OpenSSL version is the libssl3 package's, not the host's), ptrace works
// on a child, and the program's exit status comes back, 0 and then 3.
func TestRunGuest(t *testing.T) {
	for _, arch := range []Arch{ARM64, ARMHF, AMD64} {
		t.Run(string(arch), func(t *testing.T) {
			m, err := runMachineFor(arch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := exec.LookPath(m.qemu); err != nil {
				t.Skipf("%s not installed", m.qemu)
			}
			t.Parallel()
			k := fetchKernel(t, arch)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			u, err := FetchUserland(ctx, arch, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			prog := filepath.Join(dir, "hello")
			buildHello(t, arch, u, prog)
			files, err := u.Files()
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, File{Path: "/usr/bin/hello", Src: prog})
			upstream, _, _ := strings.Cut(u.Packages["libssl3"], "-")
			for _, run := range []struct {
				arg  string
				code int
			}{{"0", 0}, {"3", 3}} {
				var con io.Writer
				if os.Getenv("GRAFT_RIG_CONSOLE") != "" {
					con = os.Stderr
				}
				res, err := RunGuest(ctx, dir, RunSpec{
					Arch: arch, Kernel: k, Files: files,
					Argv: []string{"/usr/bin/hello", run.arg}, Env: []string{"GRAFT_TEST=1"},
					Timeout: 2 * time.Minute, Console: con,
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, want := range []string{
					"\natoi=42\n",
					"\nopenssl=OpenSSL " + upstream + " ",
					"\nptrace ok: peeked 0x67726167 ",
				} {
					if !strings.Contains(res.Output, want) {
						t.Errorf("output lacks %q; console:\n%s", want, res.Output)
					}
				}
				if res.ExitCode != run.code {
					t.Errorf("exit code %d, want %d; console:\n%s", res.ExitCode, run.code, res.Output)
				}
				t.Logf("%s (kernel %s, libssl3 %s): exit %d, boot to power-off %.2fs",
					arch, k.Release, u.Packages["libssl3"], res.ExitCode, res.Elapsed.Seconds())
			}
		})
	}
}

// bzImage returns a minimal bzImage: a setup header of protocol 2.15 whose
// payload is gzip-compressed.
func bzImage(t *testing.T, vmlinux []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(vmlinux)
	zw.Close()
	img := make([]byte, 5*512+64)
	img[0x1f1] = 4 // setup sectors
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x248:], 64)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(z.Len()))
	return append(img, z.Bytes()...)
}

func TestExtractVmlinux(t *testing.T) {
	elfFile := append([]byte(elf.ELFMAG), "rest of a kernel"...)
	got, err := extractVmlinux(context.Background(), bzImage(t, elfFile))
	if err != nil || !bytes.Equal(got, elfFile) {
		t.Errorf("extractVmlinux = %q, %v; want %q", got, err, elfFile)
	}
	short := bzImage(t, elfFile)
	binary.LittleEndian.PutUint32(short[0x24c:], 1<<20)
	bzip2 := append(bzImage(t, nil)[:5*512+64], "BZh91AY&SY"...)
	binary.LittleEndian.PutUint32(bzip2[0x24c:], 10)
	for name, img := range map[string][]byte{
		"not ELF":            bzImage(t, []byte("not an ELF file")),
		"no header":          make([]byte, 4096),
		"payload past end":   short,
		"too short":          []byte("HdrS"),
		"unknown compressor": bzip2,
	} {
		if _, err := extractVmlinux(context.Background(), img); !errors.Is(err, ErrBzImage) {
			t.Errorf("%s: error = %v, want ErrBzImage", name, err)
		}
	}
}

// TestRunGuestStartFails boots a guest whose program does not exist:
// graft-init reports why, the exit status is 127, and RunGuest says the
// program could not start.
func TestRunGuestStartFails(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Skip("qemu-system-aarch64 not installed")
	}
	k := fetchKernel(t, ARM64)
	res, err := RunGuest(context.Background(), t.TempDir(), RunSpec{
		Arch: ARM64, Kernel: k, Argv: []string{"/usr/bin/missing"}, Timeout: 2 * time.Minute,
	})
	if !errors.Is(err, ErrRunStart) {
		t.Fatalf("error = %v, want ErrRunStart", err)
	}
	if res == nil || res.ExitCode != 127 || !strings.Contains(res.Output, "graft-run: error: start /usr/bin/missing:") {
		t.Errorf("result = %+v, want exit 127 and graft-init's reason", res)
	}
}
