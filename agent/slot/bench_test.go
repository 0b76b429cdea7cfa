package slot_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/slot"
)

// TestInstallVsDD compares Install with what a shell script would do:
// `dd if=img of=target bs=1M conv=fsync,notrunc` then `sha256sum target`,
// onto the same kind of target in the same run. Install does more: it
// hashes while writing, fsyncs, drops the page cache and reads the target
// back from the device to hash it again, where sha256sum reads the pages dd
// just left in the cache. So a third variant drops the target's cache
// between dd and sha256sum (`dd iflag=nocache count=0`), which is the same
// work as Install. The target is a throughput ratio graft/(dd+sha256sum) of
// at least 0.95; the test prints figures and asserts nothing about time.
//
// Targets are loop block devices with direct I/O (as root, with losetup),
// so reads and writes reach the disk the way a slot partition's do;
// otherwise preallocated regular files. GRAFT_BENCH_DIR picks the file
// system (default: the test's temp dir); GRAFT_BENCH_TARGET=file forces
// regular files.
func TestInstallVsDD(t *testing.T) {
	if os.Getenv("GRAFT_BENCH") == "" {
		t.Skip("set GRAFT_BENCH=1 (make bench)")
	}
	for _, tool := range []string{"dd", "sha256sum", "sync"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	const (
		size = 256 << 20
		runs = 3
	)
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
	want := fmt.Sprintf("%x", sum)
	image := slot.Image{Size: size, SHA256: sum[:], Compression: slot.None}
	kind, ddTarget, graftTarget := benchTargets(t, dir, size)

	// Page cache: each run starts with the image and both targets out of
	// the cache, when the kernel lets us (root).
	dropCaches := func() error {
		if err := exec.Command("sync").Run(); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o200)
	}
	cacheNote := "dropped before each run"
	if err := dropCaches(); err != nil {
		cacheNote = fmt.Sprintf("NOT dropped (%v): the image is read from the cache", err)
	}

	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	sha256sum := func(path string) {
		t.Helper()
		out, err := exec.Command("sha256sum", path).Output()
		if err != nil {
			t.Fatalf("sha256sum %s: %v", path, err)
		}
		if got := strings.Fields(string(out))[0]; got != want {
			t.Fatalf("dd wrote a different image: sha256 %s, want %s", got, want)
		}
	}
	dd := func() { run("dd", "if="+img, "of="+ddTarget, "bs=1M", "conv=fsync,notrunc", "status=none") }
	variants := []struct {
		name   string
		target string
		do     func()
	}{
		{"dd+sha256sum", ddTarget, func() { dd(); sha256sum(ddTarget) }},
		{"dd+drop+sha256sum", ddTarget, func() {
			dd()
			// GNU dd: advise the kernel to drop the whole file's cache.
			run("dd", "if="+ddTarget, "iflag=nocache", "count=0", "status=none")
			sha256sum(ddTarget)
		}},
		{"graft Install", graftTarget, func() {
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := slot.Install(context.Background(), graftTarget, f, image, nil); err != nil {
				t.Fatal(err)
			}
		}},
	}

	// One untimed pass allocates the targets' blocks and warms the tools.
	for _, v := range variants {
		v.do()
	}
	total := make([]time.Duration, len(variants))
	readBack := make([]int64, len(variants)) // bytes read from the target device
	perRun := make([][]string, runs)
	for i := range runs {
		// Rotate the order so that no variant always runs first.
		for k := range variants {
			j := (i + k) % len(variants)
			_ = dropCaches()
			before, _ := deviceReads(variants[j].target)
			start := time.Now()
			variants[j].do()
			d := time.Since(start)
			after, _ := deviceReads(variants[j].target)
			total[j] += d
			readBack[j] += after - before
			perRun[i] = append(perRun[i], fmt.Sprintf("%s %.0f", variants[j].name, mbps(size, d)))
		}
	}
	_, haveStats := deviceReads(graftTarget)
	readNote := func(j int) string {
		if !haveStats {
			return ""
		}
		return fmt.Sprintf("; read %d MiB back from the device", readBack[j]/runs>>20)
	}
	goHash, toolHash := hashSpeeds(t, img, size)

	mean := func(j int) time.Duration { return total[j] / runs }
	fmt.Printf("install-vs-dd: %d MiB image, %d runs (+1 warm-up), target: %s; page cache %s\n", size>>20, runs, kind, cacheNote)
	for i, r := range perRun {
		fmt.Printf("install-vs-dd:   run %d MB/s: %s\n", i+1, strings.Join(r, ", "))
	}
	fmt.Printf("install-vs-dd:   dd bs=1M conv=fsync,notrunc + sha256sum      %7.1f MB/s  (sha256sum hashes whatever the page cache kept of dd's writes%s)\n", mbps(size, mean(0)), readNote(0))
	fmt.Printf("install-vs-dd:   same + drop target cache before sha256sum   %7.1f MB/s  (hashes what is on the device%s)\n", mbps(size, mean(1)), readNote(1))
	fmt.Printf("install-vs-dd:   graft slot.Install                          %7.1f MB/s  (hashes while writing, fsync, drops cache, reads back and hashes again%s)\n", mbps(size, mean(2)), readNote(2))
	fmt.Printf("install-vs-dd:   hash speed on this CPU: Go crypto/sha256 %.0f MB/s, coreutils sha256sum %.0f MB/s (both from the page cache)\n", goHash, toolHash)
	fmt.Printf("install-vs-dd: RATIO graft/(dd+sha256sum) = %.2f (target >= 0.95); graft/(dd+drop+sha256sum) = %.2f [shared, noisy machine: see the spread of the runs]\n",
		mean(0).Seconds()/mean(2).Seconds(), mean(1).Seconds()/mean(2).Seconds())
}

func mbps(size int64, d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }

// benchTargets returns two targets of size bytes of the same kind, and
// what kind they are.
func benchTargets(t *testing.T, dir string, size int64) (kind, a, b string) {
	t.Helper()
	files := make([]string, 2)
	for i := range files {
		files[i] = filepath.Join(dir, fmt.Sprintf("target-%d", i))
		f, err := os.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	why := "GRAFT_BENCH_TARGET=file"
	if os.Getenv("GRAFT_BENCH_TARGET") != "file" {
		devs, err := directLoops(t, files)
		if err == nil {
			return "loop block devices (direct I/O) on files in " + dir, devs[0], devs[1]
		}
		why = err.Error()
	}
	return fmt.Sprintf("regular files in %s (%s)", dir, why), files[0], files[1]
}

// directLoops attaches each backing file to a loop device with direct I/O,
// so the backing file's page cache does not hide the disk.
func directLoops(t *testing.T, backing []string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("loop devices need root")
	}
	var devs []string
	for _, f := range backing {
		out, err := exec.Command("losetup", "--find", "--show", "--direct-io=on", f).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("losetup: %v %s", err, strings.TrimSpace(string(out)))
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		devs = append(devs, dev)
	}
	return devs, nil
}

// deviceReads returns how many bytes have been read from block device dev
// (/sys/block/NAME/stat), and false for anything else.
func deviceReads(dev string) (int64, bool) {
	if !strings.HasPrefix(dev, "/dev/") {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "stat"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, false
	}
	sectors, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, false
	}
	return sectors * 512, true
}

// hashSpeeds measures SHA-256 throughput of Go and of sha256sum over the
// image, warm in the page cache, in MB/s.
func hashSpeeds(t *testing.T, img string, size int64) (goMBps, toolMBps float64) {
	t.Helper()
	run := func(do func() error) float64 {
		if err := do(); err != nil { // warm the cache
			t.Fatal(err)
		}
		start := time.Now()
		if err := do(); err != nil {
			t.Fatal(err)
		}
		return mbps(size, time.Since(start))
	}
	goMBps = run(func() error {
		f, err := os.Open(img)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyBuffer(sha256.New(), f, make([]byte, 1<<20))
		return err
	})
	toolMBps = run(func() error { return exec.Command("sha256sum", img).Run() })
	return goMBps, toolMBps
}
