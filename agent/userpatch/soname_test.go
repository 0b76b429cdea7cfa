package userpatch

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

// TestCheckMatchesDTSoname: a process maps libsn-X.so.1.2.3, whose
// DT_SONAME is libsn-X.so.1 (the usual symlink layout). Check must see
// it as the library a component for libsn-X.so.1 patches: a bundle for
// another build is refused, one for this build passes.
func TestCheckMatchesDTSoname(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	var r [4]byte
	rand.Read(r[:])
	base := "libsn-" + hex.EncodeToString(r[:])
	soname, file := base+".so.1", base+".so.1.2.3"
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lib := write("sn.c", "int sn_value(int x) { return x * 3 + 1; }\n")
	prog := write("prog.c", `#include <stdio.h>
#include <unistd.h>
int sn_value(int);
int main(void) { printf("v=%d\n", sn_value(7)); fflush(stdout); for (;;) pause(); }
`)
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-Wl,--build-id", "-Wl,-soname," + soname, "-o", filepath.Join(dir, file), lib},
		{"-o", filepath.Join(dir, "prog"), prog, filepath.Join(dir, file), "-Wl,-rpath," + dir},
	} {
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	if err := os.Symlink(file, filepath.Join(dir, soname)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dir, "prog"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "v=") {
		t.Fatalf("program did not start: %q %v", line, err)
	}
	maps, err := readMaps(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	var id []byte
	for _, m := range maps {
		if filepath.Base(m.Path) == file && m.Offset == 0 {
			f, err := os.Open(m.Path)
			if err != nil {
				t.Fatal(err)
			}
			inf, err := ReadElfInfo(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if inf.Soname != soname {
				t.Fatalf("ReadElfInfo soname = %q, want %q", inf.Soname, soname)
			}
			id = inf.BuildID
		}
	}
	if id == nil {
		t.Fatalf("the process does not map %s", file)
	}
	comp := func(buildID []byte) *manifest.Component {
		return &manifest.Component{Kind: manifest.KindUserPatch, Name: "sn", UserPatch: &manifest.UserPatch{
			Soname: soname, Bundles: []manifest.PatchBundle{{BuildID: buildID, Target: "sn.ulp", SHA256: make([]byte, 32)}}}}
	}
	a := &Applier{}
	other := make([]byte, len(id))
	copy(other, id)
	other[0] ^= 0xff
	if err := a.Check(t.Context(), comp(other)); err == nil {
		t.Errorf("Check with a bundle for another build = %v; want the process mapping %s refused", err, file)
	}
	if err := a.Check(t.Context(), comp(id)); err != nil {
		t.Errorf("Check with a bundle for the mapped build = %v, want nil", err)
	}
}
