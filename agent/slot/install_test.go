package slot_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/graft-dev/graft/agent/slot"
)

// imageData returns size bytes that compress somewhat, like a file system.
func imageData(size int) []byte {
	r := rand.New(rand.NewPCG(uint64(size), 7))
	b := make([]byte, size)
	for i := 0; i < size; i += 4096 {
		end := min(i+4096, size)
		if r.IntN(3) == 0 {
			continue // a zero block
		}
		for j := i; j < end; j += 8 {
			v := r.Uint64() & 0x0f0f0f0f0f0f0f0f
			for k := 0; k < 8 && j+k < end; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
	}
	return b
}

func compress(t testing.TB, data []byte, c slot.Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case slot.None:
		return data
	case slot.Gzip:
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case slot.Zstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func imageOf(data []byte, c slot.Compression) slot.Image {
	sum := sha256.Sum256(data)
	return slot.Image{Size: int64(len(data)), SHA256: sum[:], Compression: c}
}

// slotFile creates a file slot holding size bytes of 0xAA.
func slotFile(t testing.TB, dir string, size int) string {
	t.Helper()
	p := filepath.Join(dir, "slot-b.img")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0xAA}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstallRoundTrip(t *testing.T) {
	data := imageData(3<<20 + 12345) // not a multiple of the block size
	for _, c := range []slot.Compression{slot.None, slot.Gzip, slot.Zstd} {
		for _, initial := range []int{0, 5 << 20} {
			name := string(c) + "/empty slot"
			if initial > 0 {
				name = string(c) + "/larger slot"
			}
			t.Run(name, func(t *testing.T) {
				dev := slotFile(t, t.TempDir(), initial)
				var calls int
				var last int64
				progress := func(written, total int64) {
					calls++
					if written < last || total != int64(len(data)) {
						t.Errorf("progress(%d, %d) after %d", written, total, last)
					}
					last = written
				}
				err := slot.Install(context.Background(), dev, bytes.NewReader(compress(t, data, c)), imageOf(data, c), progress)
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(dev)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:len(data)], data) {
					t.Fatal("slot content differs from the image")
				}
				// A larger file keeps its size and tail; an empty one grows.
				wantLen := max(initial, len(data))
				if len(got) != wantLen || (initial > len(data) && got[len(got)-1] != 0xAA) {
					t.Fatalf("slot is %d bytes, want %d with its tail kept", len(got), wantLen)
				}
				if last != int64(len(data)) || calls != 4 {
					t.Fatalf("progress ended at %d after %d calls, want %d after 4", last, calls, len(data))
				}
			})
		}
	}
}

func TestInstallBadStreams(t *testing.T) {
	data := imageData(2<<20 + 100)
	gz := compress(t, data, slot.Gzip)
	zs := compress(t, data, slot.Zstd)
	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0x40
		return b
	}
	wrongHash := imageOf(data, slot.None)
	wrongHash.SHA256 = bytes.Repeat([]byte{1}, 32)
	longer := imageOf(data, slot.None)
	longer.Size-- // the stream is one byte longer than announced
	gzLonger := imageOf(data, slot.Gzip)
	gzLonger.Size -= 4096

	tests := []struct {
		name    string
		src     []byte
		img     slot.Image
		wantErr error
	}{
		{"none truncated", data[:len(data)-1], imageOf(data, slot.None), slot.ErrSize},
		{"none empty", nil, imageOf(data, slot.None), slot.ErrSize},
		{"gzip truncated", gz[:len(gz)/2], imageOf(data, slot.Gzip), slot.ErrSize},
		{"gzip trailer cut", gz[:len(gz)-3], imageOf(data, slot.Gzip), slot.ErrSize},
		{"zstd truncated", zs[:len(zs)/2], imageOf(data, slot.Zstd), slot.ErrSize},
		{"none corrupted", flip(data, len(data)/2), imageOf(data, slot.None), slot.ErrHashMismatch},
		{"gzip corrupted", flip(gz, len(gz)/2), imageOf(data, slot.Gzip), slot.ErrDecompress},
		{"gzip CRC corrupted", flip(gz, len(gz)-6), imageOf(data, slot.Gzip), slot.ErrDecompress},
		{"zstd garbage", bytes.Repeat([]byte{0x55}, 1000), imageOf(data, slot.Zstd), slot.ErrDecompress},
		{"gzip garbage", bytes.Repeat([]byte{0x55}, 1000), imageOf(data, slot.Gzip), slot.ErrDecompress},
		{"right stream, wrong hash", data, wrongHash, slot.ErrHashMismatch},
		{"none longer than size", data, longer, slot.ErrSize},
		{"gzip longer than size", gz, gzLonger, slot.ErrSize},
		{"gzip with trailing garbage", append(bytes.Clone(gz), strings.Repeat("junk", 8)...), imageOf(data, slot.Gzip), slot.ErrDecompress},
		{"bad compression", data, slot.Image{Size: 1, SHA256: make([]byte, 32), Compression: "lz4"}, slot.ErrBadImage},
		{"empty compression", data, slot.Image{Size: 1, SHA256: make([]byte, 32)}, slot.ErrBadImage},
		{"short hash", data, slot.Image{Size: 1, SHA256: make([]byte, 20), Compression: slot.None}, slot.ErrBadImage},
		{"zero size", data, slot.Image{Size: 0, SHA256: make([]byte, 32), Compression: slot.None}, slot.ErrBadImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := slotFile(t, t.TempDir(), 0)
			err := slot.Install(context.Background(), dev, bytes.NewReader(tt.src), tt.img, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, slot.ErrSize) && strings.Contains(tt.name, "truncated") && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("truncation error %v does not wrap io.ErrUnexpectedEOF", err)
			}
			// Never a byte past the announced size.
			if fi, err := os.Stat(dev); err != nil || fi.Size() > max(tt.img.Size, 0) {
				t.Fatalf("slot grew to %d bytes, image size %d (%v)", fi.Size(), tt.img.Size, err)
			}
			var he *slot.HashError
			if errors.As(err, &he) && he.Stage != "stream" {
				t.Fatalf("hash mismatch found at %q, want stream", he.Stage)
			}
		})
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestInstallSourceAndTargetErrors(t *testing.T) {
	data := imageData(1 << 20)
	errNet := errors.New("connection reset")
	t.Run("source error is passed through", func(t *testing.T) {
		for _, c := range []slot.Compression{slot.None, slot.Gzip, slot.Zstd} {
			src := io.MultiReader(bytes.NewReader(compress(t, data, c)[:1000]), failingReader{errNet})
			err := slot.Install(context.Background(), slotFile(t, t.TempDir(), 0), src, imageOf(data, c), nil)
			if !errors.Is(err, errNet) || errors.Is(err, slot.ErrDecompress) {
				t.Fatalf("%s: err = %v, want the source's error", c, err)
			}
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := slot.Install(ctx, slotFile(t, t.TempDir(), 0), bytes.NewReader(data), imageOf(data, slot.None), nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing target is not created", func(t *testing.T) {
		dev := filepath.Join(t.TempDir(), "nope")
		err := slot.Install(context.Background(), dev, bytes.NewReader(data), imageOf(data, slot.None), nil)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(dev); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("Install created the target")
		}
	})
	for _, dev := range []string{"/dev/null", t.TempDir()} {
		t.Run("refuses "+dev, func(t *testing.T) {
			err := slot.Install(context.Background(), dev, bytes.NewReader(data), imageOf(data, slot.None), nil)
			if !errors.Is(err, slot.ErrTarget) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount, losetup)")
	}
}

// A real full file system: a 1 MiB tmpfs.
func TestInstallFullDisk(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "graft-test", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	dev := slotFile(t, dir, 0)
	data := imageData(3 << 20)
	err := slot.Install(context.Background(), dev, bytes.NewReader(data), imageOf(data, slot.None), nil)
	if !errors.Is(err, slot.ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ErrWrite wrapping ENOSPC", err)
	}
}

// loopDevice attaches a file of size bytes to a loop device.
func loopDevice(t *testing.T, size int) (dev, backing string) {
	t.Helper()
	requireRoot(t)
	backing = filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(backing, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, backing
}

func TestInstallBlockDevice(t *testing.T) {
	dev, _ := loopDevice(t, 4<<20)
	data := imageData(3<<20 + 512)
	err := slot.Install(context.Background(), dev, bytes.NewReader(compress(t, data, slot.Zstd)), imageOf(data, slot.Zstd), nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("device content differs (%v)", err)
	}

	big := imageData(5 << 20)
	err = slot.Install(context.Background(), dev, bytes.NewReader(big), imageOf(big, slot.None), nil)
	if !errors.Is(err, slot.ErrTooLarge) {
		t.Fatalf("5 MiB into 4 MiB: err = %v, want ErrTooLarge", err)
	}
	// Nothing was written.
	f.ReadAt(got[:16], 0)
	if !bytes.Equal(got[:16], data[:16]) {
		t.Fatal("a refused image was written")
	}
}

func TestInstallRefusesMountedBlockDevice(t *testing.T) {
	dev, _ := mountedLoop(t)
	data := imageData(1 << 20)
	err := slot.Install(context.Background(), dev, bytes.NewReader(data), imageOf(data, slot.None), nil)
	if !errors.Is(err, slot.ErrMounted) {
		t.Fatalf("err = %v, want ErrMounted", err)
	}
}

// mountedLoop makes an ext4 loop device and mounts it.
func mountedLoop(t *testing.T) (dev, mnt string) {
	t.Helper()
	dev, _ = loopDevice(t, 8<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", dev).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	mnt = t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return dev, mnt
}

func BenchmarkInstall(b *testing.B) {
	data := imageData(64 << 20)
	for _, c := range []slot.Compression{slot.None, slot.Zstd} {
		b.Run(string(c), func(b *testing.B) {
			src := compress(b, data, c)
			img := imageOf(data, c)
			dev := slotFile(b, b.TempDir(), len(data))
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := slot.Install(context.Background(), dev, bytes.NewReader(src), img, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
