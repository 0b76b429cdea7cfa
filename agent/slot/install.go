package slot

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// Compression names how an image stream is compressed.
type Compression string

// Supported compressions.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// Image describes the decompressed image that Install writes.
type Image struct {
	Size        int64  // bytes after decompression, > 0
	SHA256      []byte // of the decompressed bytes, 32 bytes
	Compression Compression
}

// Progress is told how many bytes have been written so far, out of total.
// It is called from Install's goroutine after each block.
type Progress func(written, total int64)

const (
	// blockSize is the unit of every read and write: writes land on
	// 1 MiB-aligned offsets with whole 1 MiB lengths (except the last), so a
	// block device never sees a partial-page write.
	blockSize = 1 << 20
	// zstdMaxWindow caps the zstd window, so a stream cannot make the
	// decoder allocate more. zstd levels 1..19 use at most 8 MiB; --long up
	// to 26 fits.
	zstdMaxWindow = 64 << 20
)

func (img Image) check() error {
	switch {
	case img.Size <= 0:
		return fmt.Errorf("%w: size %d", ErrBadImage, img.Size)
	case len(img.SHA256) != sha256.Size:
		return fmt.Errorf("%w: sha256 has %d bytes, want %d", ErrBadImage, len(img.SHA256), sha256.Size)
	}
	switch img.Compression {
	case None, Gzip, Zstd:
		return nil
	}
	return fmt.Errorf("%w: unknown compression %q", ErrBadImage, img.Compression)
}

// Install streams src into the slot dev (a block device or a regular file
// that must already exist) in one pass: decompress (img.Compression), hash
// (SHA-256 of the decompressed bytes) and write, in 1 MiB blocks, never
// writing past img.Size: a stream longer than img.Size is refused before
// the excess is written. Then it checks the stream's hash, fsyncs, drops
// the written range from the page cache (posix_fadvise DONTNEED, on Linux)
// and reads it back from the target to verify the hash again.
//
// A block device is opened exclusively (O_EXCL), so the kernel refuses it
// while it is mounted (ErrMounted), and an image larger than the device is
// refused before anything is written (ErrTooLarge). A regular file is
// never truncated: it grows to hold the image if it is smaller, and keeps
// its tail if it is larger.
//
// Errors: ErrBadImage, ErrTarget, ErrTooLarge, ErrMounted before writing;
// ErrSize (stream shorter or longer than img.Size), ErrDecompress (corrupt
// compressed stream), ErrWrite (full disk, short write, fsync failure; the
// cause is wrapped too, e.g. syscall.ENOSPC), ErrHashMismatch (*HashError,
// stage "stream" or "read-back"), a read error of src as is, or ctx's
// error. Whatever the error, the slot's content is then undefined: it must
// not be booted. Install does not check that dev is not the active slot:
// callers run CheckWritable first.
func Install(ctx context.Context, dev string, src io.Reader, img Image, progress Progress) error {
	if err := img.check(); err != nil {
		return err
	}
	f, err := openTarget(dev, img.Size)
	if err != nil {
		return err
	}
	defer f.Close()

	srcErr := &errRecorder{r: src}
	r, closeDecoder, err := decoder(srcErr, img.Compression)
	if err != nil {
		return readError(srcErr, err)
	}
	defer closeDecoder()

	buf := make([]byte, blockSize)
	h := sha256.New()
	var written int64
	for written < img.Size {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("slot: install to %s: %w", dev, err)
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), img.Size-written)])
		if n > 0 {
			h.Write(buf[:n])
			m, werr := f.Write(buf[:n])
			written += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return fmt.Errorf("%w: %s at offset %d of %d: %w", ErrWrite, dev, written, img.Size, werr)
			}
			if progress != nil {
				progress(written, img.Size)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: stream ended after %d of %d bytes: %w", ErrSize, written, img.Size, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return readError(srcErr, err)
		}
	}
	// One more byte must be end of stream. This also makes the decoder
	// check its trailer (gzip CRC and length, zstd checksum).
	var extra [1]byte
	switch n, err := io.ReadFull(r, extra[:]); {
	case n > 0:
		return fmt.Errorf("%w: stream longer than %d bytes", ErrSize, img.Size)
	case !errors.Is(err, io.EOF):
		return readError(srcErr, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, img.SHA256) {
		return &HashError{Stage: "stream", Want: img.SHA256, Got: got}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: fsync %s: %w", ErrWrite, dev, err)
	}
	dropCache(f, img.Size)
	defer dropCache(f, img.Size)
	return verify(ctx, f, dev, img, buf)
}

// openTarget opens dev for reading and writing, without creating or
// truncating it, and checks that the image fits a block device.
func openTarget(dev string, size int64) (*os.File, error) {
	fi, err := os.Stat(dev)
	if err != nil {
		return nil, fmt.Errorf("slot: target: %w", err)
	}
	flags := os.O_RDWR
	block := false
	switch m := fi.Mode(); {
	case m.IsRegular():
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		// Linux: O_EXCL without O_CREAT on a block device fails with
		// EBUSY while the device is mounted or otherwise claimed.
		flags |= os.O_EXCL
		block = true
	default:
		return nil, fmt.Errorf("%w: %s is %v", ErrTarget, dev, m.Type())
	}
	f, err := os.OpenFile(dev, flags, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("%w: %s is in use (open exclusive): %w", ErrMounted, dev, err)
	}
	if err != nil {
		return nil, fmt.Errorf("slot: open target: %w", err)
	}
	if block {
		end, err := f.Seek(0, io.SeekEnd)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("slot: size of %s: %w", dev, err)
		}
		if size > end {
			f.Close()
			return nil, fmt.Errorf("%w: image is %d bytes, %s holds %d", ErrTooLarge, size, dev, end)
		}
	}
	return f, nil
}

// verify reads back the first img.Size bytes of f and compares their hash.
func verify(ctx context.Context, f *os.File, dev string, img Image, buf []byte) error {
	h := sha256.New()
	var off int64
	for off < img.Size {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("slot: verify %s: %w", dev, err)
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), img.Size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: read back only %d of %d bytes from %s", ErrSize, off, img.Size, dev)
		}
		if err != nil {
			return fmt.Errorf("slot: read back %s: %w", dev, err)
		}
	}
	if got := h.Sum(nil); !bytes.Equal(got, img.SHA256) {
		return &HashError{Stage: "read-back", Want: img.SHA256, Got: got}
	}
	return nil
}

// decoder returns the decompressed view of r.
func decoder(r io.Reader, c Compression) (io.Reader, func(), error) {
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case Zstd:
		zr, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// errRecorder remembers the error of the source, to tell a failing source
// from a corrupt compressed stream.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func readError(src *errRecorder, err error) error {
	if src.err != nil {
		return fmt.Errorf("slot: read image: %w", src.err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		// The decoder ran out of input inside a frame: truncated.
		return fmt.Errorf("%w: compressed stream truncated: %w", ErrSize, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("%w: %w", ErrDecompress, err)
}
