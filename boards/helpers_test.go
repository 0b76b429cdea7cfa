package boards

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var execLookPath = exec.LookPath

// mkenvimage builds a U-Boot environment image of size bytes from text
// ("name=value" lines) with the real mkenvimage.
func mkenvimage(t *testing.T, dir string, size int64, redundant bool, text string) []byte {
	t.Helper()
	src := filepath.Join(dir, "env.txt")
	out := filepath.Join(dir, "env.bin")
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-s", fmt.Sprint(size), "-o", out}
	if redundant {
		args = append(args, "-r")
	}
	runTool(t, "mkenvimage", append(args, src)...)
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
