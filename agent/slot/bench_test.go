package slot_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/slot"
)

// TestInstallVsDD compares Install with what a shell script would do:
// `dd if=img of=target bs=1M conv=fsync` then `sha256sum target`. Install
// does more (hashes while writing, drops the page cache, reads the target
// back from the device); the target is a ratio graft/dd of at least 0.95.
// It prints figures and asserts nothing about time. GRAFT_BENCH_DIR picks
// the file system (default: the test's temp dir).
func TestInstallVsDD(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("set GRAFT_BENCH=1 (make bench)")
	}
	for _, tool := range []string{"dd", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	const size = 256 << 20
	dir := os.Getenv("GRAFT_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else {
		var err error
		if dir, err = os.MkdirTemp(dir, "graft-bench"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	img := filepath.Join(dir, "image.raw")
	data := imageData(size)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	data = nil
	image := slot.Image{Size: size, SHA256: sum[:], Compression: slot.None}
	ddTarget := filepath.Join(dir, "target-dd")
	graftTarget := filepath.Join(dir, "target-graft")
	for _, p := range []string{ddTarget, graftTarget} {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(size)
		f.Close()
	}

	dropCaches := func() {
		exec.Command("sync").Run()
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o200) // root only; ignored otherwise
	}
	runDD := func() time.Duration {
		dropCaches()
		start := time.Now()
		if out, err := exec.Command("dd", "if="+img, "of="+ddTarget, "bs=1M", "conv=fsync", "status=none").CombinedOutput(); err != nil {
			t.Fatalf("dd: %v %s", err, out)
		}
		out, err := exec.Command("sha256sum", ddTarget).Output()
		if err != nil {
			t.Fatalf("sha256sum: %v", err)
		}
		d := time.Since(start)
		if got := strings.Fields(string(out))[0]; got != fmt.Sprintf("%x", sum) {
			t.Fatalf("dd wrote a different image: %s", got)
		}
		return d
	}
	runGraft := func() time.Duration {
		dropCaches()
		start := time.Now()
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := slot.Install(context.Background(), graftTarget, f, image, nil); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }

	var ddTotal, graftTotal time.Duration
	const runs = 3
	for i := range runs {
		d := runDD()
		g := runGraft()
		ddTotal += d
		graftTotal += g
		t.Logf("run %d: dd+sha256sum %7.1f MB/s (%v)   graft Install %7.1f MB/s (%v)", i+1, mbps(d), d.Round(time.Millisecond), mbps(g), g.Round(time.Millisecond))
	}
	ratio := ddTotal.Seconds() / graftTotal.Seconds()
	report := fmt.Sprintf("install-vs-dd: size=%d MiB runs=%d dd+sha256sum=%.1f MB/s graft=%.1f MB/s ratio graft/dd=%.2f (target >= 0.95)",
		size>>20, runs, mbps(ddTotal/runs), mbps(graftTotal/runs), ratio)
	t.Log(report)
	fmt.Println(report)
}
