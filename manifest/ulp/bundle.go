package ulp

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"
)

// FormatVersion is the bundle format this package reads and writes.
// Format 2 added the checksum, the whole-function hash, the guard range
// and the no-escape flag.
const FormatVersion = 2

// MaxSize is the largest encoded bundle Decode accepts, in bytes.
const MaxSize = 16 << 20

// Limits Validate enforces.
const (
	MaxFuncs  = 1024
	MaxRelocs = 1 << 16
	// MaxFuncSize is the largest replaced function (its st_size): the
	// agent reads and hashes all of it in every process.
	MaxFuncSize = 1 << 22
	// SumSize is the size of the bundle's checksum (SHA-256).
	SumSize = sha256.Size
)

// Errors. Every error returned by Decode and Validate wraps one of these.
var (
	// ErrChecksum: the bundle's checksum is missing or does not match
	// its bytes (the file was damaged after it was built).
	ErrChecksum = errors.New("ulp: bundle checksum mismatch")
	// ErrMalformed: not one strict CBOR item of the bundle's shape.
	ErrMalformed = errors.New("ulp: malformed bundle")
	// ErrTooLarge: larger than MaxSize.
	ErrTooLarge = errors.New("ulp: bundle too large")
	// ErrUnsupportedFormat: another format version.
	ErrUnsupportedFormat = errors.New("ulp: unsupported bundle format")
	// ErrInvalid: well-formed, but a field is missing or out of range.
	ErrInvalid = errors.New("ulp: invalid bundle")
	// ErrUnsupportedArch: an architecture this package cannot link for.
	ErrUnsupportedArch = errors.New("ulp: unsupported architecture")
	// ErrUnsupportedReloc: a relocation type this package cannot apply.
	ErrUnsupportedReloc = errors.New("ulp: unsupported relocation")
	// ErrRelocOverflow: a relocation's value does not fit its field (the
	// patch was mapped too far from what it refers to).
	ErrRelocOverflow = errors.New("ulp: relocation out of range")
)

// Architectures, as GOARCH names them.
const (
	AMD64 = "amd64"
	ARM64 = "arm64"
	ARM   = "arm" // ARMv7-A, ARM and Thumb-2 code
)

// Base says what a relocation's symbol value is relative to.
type Base uint8

// Bases. The numbers are the wire values.
const (
	// BasePatch: Sym is an offset in the patch image (Code then Data then
	// BSS), i.e. relative to where the agent maps the patch.
	BasePatch Base = 0
	// BaseTarget: Sym is an offset in the target ELF, relative to its load
	// base (the lowest page of its first PT_LOAD segment).
	BaseTarget Base = 1
)

// Bundle is one decoded userspace live patch for one build of one ELF.
//
// The patch image is Code, then Data starting at the first page boundary
// after Code, then BSS zero bytes. The agent maps Code read+execute and
// Data+BSS read+write, applies Relocs, and redirects each Func's entry to
// its replacement.
type Bundle struct {
	Format  uint   // FormatVersion
	Name    string // patch name, e.g. "glibc-atoi-base0"
	Arch    string // AMD64, ARM64 or ARM
	BuildID []byte // the target's GNU build ID
	Soname  string // the target's soname or file name, for messages
	Code    []byte // replacement functions, read-only data, GOT slots, veneers
	Data    []byte // initialised writable data of the patch
	BSS     uint64 // zeroed writable bytes after Data
	Funcs   []Func
	Relocs  []Reloc
	// NoEscape: the builder proved that the patch hands out no pointer
	// into itself (no relocation takes the address of a function or
	// data of the patch other than a direct call or branch, and no
	// string literal of the patch is stored into an object), so once
	// it is reverted and no thread is inside, its mapping may be
	// removed. Without it a reverted patch's mapping must stay.
	NoEscape bool
}

// Func is one replaced function.
type Func struct {
	Symbol string // e.g. "atoi"
	// Target is the function's offset in the target (from its load
	// base), without the Thumb bit; Size its st_size.
	Target, Size uint64
	// Keep is how many entry bytes stay (a leading endbr64, BTI c or
	// PACIASP); the trampoline is written at Target+Keep.
	Keep uint64
	// Check is the SHA-256 of all Size bytes of the function the bundle
	// was built against; the agent verifies them in each process before
	// writing.
	Check []byte
	// Guard is the length, from the entry (Target), of the range no
	// thread may be inside when the trampoline is written: at least
	// Keep + the short trampoline, the whole function when one of its
	// own branches or jump tables lands in the bytes a trampoline may
	// overwrite. The agent uses max(Guard, Keep + the trampoline it
	// writes).
	Guard uint64
	// New is the offset in the patch image the trampoline jumps to: the
	// replacement's entry, after its own copy of a kept prefix.
	New uint64
	// Thumb: on ARM, the target and the replacement are Thumb-2 code.
	Thumb bool
}

// Reloc is one relocation to apply to the patch image once its address is
// known.
type Reloc struct {
	Offset uint64 // where in the patch image
	Type   uint32 // ELF relocation type of the bundle's Arch (R_X86_64_*, R_AARCH64_*, R_ARM_*)
	Base   Base   // what Sym is relative to
	// Sym is the symbol's value relative to Base; on ARM a Thumb function
	// has bit 0 set, as in ELF symbol tables.
	Sym uint64
	// Addend is the RELA addend (amd64, arm64). ARM relocations are REL:
	// the addend is in the bytes at Offset and Addend is 0.
	Addend int64
}

// ImageSize is the size of the patch image: Code, padding to pageSize,
// Data, BSS.
func (b *Bundle) ImageSize(pageSize uint64) uint64 {
	return b.DataOffset(pageSize) + uint64(len(b.Data)) + b.BSS
}

// DataOffset is where Data starts in the patch image: the first multiple
// of pageSize at or after the end of Code.
func (b *Bundle) DataOffset(pageSize uint64) uint64 {
	return (uint64(len(b.Code)) + pageSize - 1) / pageSize * pageSize
}

// CheckSum returns what Func.Check holds for a function's bytes.
func CheckSum(code []byte) []byte {
	s := sha256.Sum256(code)
	return s[:]
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("ulp: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalid)
}

// Validate checks what types alone do not: the format, the arch, field
// ranges, that every function fits the trampoline its arch needs, and
// that every relocation lies inside the image with a known type.
func (b *Bundle) Validate() error {
	if b == nil {
		return fmt.Errorf("ulp: nil bundle: %w", ErrInvalid)
	}
	if b.Format != FormatVersion {
		return fmt.Errorf("ulp: format %d, this agent reads %d: %w", b.Format, FormatVersion, ErrUnsupportedFormat)
	}
	if b.Name == "" || !utf8.ValidString(b.Name) {
		return invalid("name", "empty or not UTF-8")
	}
	if !utf8.ValidString(b.Soname) {
		return invalid("soname", "not UTF-8")
	}
	if _, err := archOf(b.Arch); err != nil {
		return err
	}
	if n := len(b.BuildID); n < 8 || n > 64 {
		return invalid("build id", "%d bytes, want 8..64", n)
	}
	if len(b.Code) == 0 {
		return invalid("code", "empty")
	}
	if len(b.Funcs) == 0 || len(b.Funcs) > MaxFuncs {
		return invalid("funcs", "%d functions, want 1..%d", len(b.Funcs), MaxFuncs)
	}
	if len(b.Relocs) > MaxRelocs {
		return invalid("relocs", "%d relocations, limit %d", len(b.Relocs), MaxRelocs)
	}
	// The image must stay small enough that sizes never overflow.
	if b.BSS > MaxSize*16 {
		return invalid("bss", "%d bytes, limit %d", b.BSS, MaxSize*16)
	}
	seen := map[uint64]bool{}
	for i, f := range b.Funcs {
		field := fmt.Sprintf("funcs[%d]", i)
		if f.Symbol == "" || !utf8.ValidString(f.Symbol) {
			return invalid(field+".symbol", "empty or not UTF-8")
		}
		if seen[f.Target] {
			return invalid(field+".target", "%#x replaced twice", f.Target)
		}
		seen[f.Target] = true
		if f.Thumb && b.Arch != ARM {
			return invalid(field+".thumb", "Thumb code on %s", b.Arch)
		}
		if len(f.Check) != 32 {
			return invalid(field+".check", "%d bytes, want 32", len(f.Check))
		}
		if f.Size == 0 || f.Size > MaxFuncSize {
			return invalid(field+".size", "%d, want 1..%d", f.Size, MaxFuncSize)
		}
		if need := f.Keep + uint64(NearSize(b.Arch, f.Thumb)); need > f.Size || need < f.Keep {
			return fmt.Errorf("ulp: %s (%s): %d bytes, a trampoline after %d kept bytes needs %d: %w",
				field, f.Symbol, f.Size, f.Keep, need, ErrInvalid)
		} else if f.Guard < need || f.Guard > f.Size {
			return invalid(field+".guard", "%d, want %d..%d (the trampoline .. the function's size)", f.Guard, need, f.Size)
		}
		if f.New >= uint64(len(b.Code)) {
			return invalid(field+".new", "%#x is outside the code (%d bytes)", f.New, len(b.Code))
		}
	}
	const page = 4096 // the smallest page any supported arch uses
	end := b.ImageSize(page)
	for i, r := range b.Relocs {
		field := fmt.Sprintf("relocs[%d]", i)
		w, err := RelocWidth(b.Arch, r.Type)
		if err != nil {
			return fmt.Errorf("ulp: %s: %w", field, err)
		}
		if !b.inImage(r.Offset, uint64(w), page) {
			return invalid(field+".offset", "%#x+%d is outside code and data", r.Offset, w)
		}
		if r.Base > BaseTarget {
			return invalid(field+".base", "unknown base %d", r.Base)
		}
		if r.Base == BasePatch && r.Sym&^1 > end {
			return invalid(field+".sym", "%#x is outside the patch image (%d bytes)", r.Sym, end)
		}
		if b.Arch == ARM && r.Addend != 0 {
			return invalid(field+".addend", "ARM relocations carry their addend in place")
		}
	}
	return nil
}

// inImage reports whether [off, off+n) lies inside Code or inside Data
// (relocations never apply to BSS).
func (b *Bundle) inImage(off, n, page uint64) bool {
	if off+n < off {
		return false
	}
	if off+n <= uint64(len(b.Code)) {
		return true
	}
	d := b.DataOffset(page)
	return off >= d && off+n <= d+uint64(len(b.Data))
}
