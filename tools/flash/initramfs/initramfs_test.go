package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// buildAgent builds graft-agent for arm64 once for the package's tests.
func buildAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flash-initramfs-")
		if err != nil {
			agentErr = err
			return
		}
		agentPath, agentErr = build(filepath.Join(dir, "graft-agent"), "arm64", "")
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if agentPath != "" {
		os.RemoveAll(filepath.Dir(agentPath))
	}
	os.Exit(code)
}

func build(out, goarch, goarm string) (string, error) {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/graft-dev/graft/agent/cmd/graft-agent")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, nil
}

func TestBuild(t *testing.T) {
	agent := buildAgent(t)
	b, err := Build(Spec{Arch: "arm64", Agent: agent, Args: []string{"--board", "qemu-virt-arm64"}, Boards: []byte("[]")})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Build(Spec{Arch: "arm64", Agent: agent, Args: []string{"--board", "qemu-virt-arm64"}, Boards: []byte("[]")})
	if !bytes.Equal(b, again) {
		t.Error("same inputs gave different archives")
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	for _, r := range recs {
		got[r.Name] = r
	}
	for _, name := range []string{InitPath, AgentPath, ArgsPath, BoardPath, "dev/console", "proc", "sys", "var/lib/graft"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	if m := got[InitPath].Mode; m&0o111 == 0 {
		t.Errorf("/init mode %o", m)
	}
	// The cpio tool agrees with the archive.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-t")
		cmd.Stdin = bytes.NewReader(raw)
		if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("init\n")) {
			t.Errorf("cpio -t: %v\n%s", err, out)
		}
	}
}

func TestBuildRefusesWrongArch(t *testing.T) {
	agent := buildAgent(t)
	if _, err := Build(Spec{Arch: "armv7", Agent: agent}); !errors.Is(err, ErrSpec) {
		t.Fatalf("arm64 agent for armv7: err = %v, want ErrSpec", err)
	}
	if _, err := Build(Spec{Arch: "mips", Agent: agent}); !errors.Is(err, ErrSpec) {
		t.Fatalf("unknown arch: err = %v", err)
	}
}
