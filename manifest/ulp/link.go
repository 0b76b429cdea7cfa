package ulp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrInterwork: an ARM branch relocation needs a change between ARM and
// Thumb state that its instruction cannot make (B, B<cond>, a conditional
// BL, Thumb B.W or B<cond>.W to code of the other state). A real linker
// would insert a veneer; a bundle must carry its own.
var ErrInterwork = errors.New("ulp: branch cannot switch between ARM and Thumb state")

// RelocError is the error Link returns for a relocation it cannot apply.
// It wraps ErrRelocOverflow, ErrInterwork or ErrUnsupportedReloc.
type RelocError struct {
	Index  int    // index in Bundle.Relocs
	Arch   string // the bundle's Arch
	Type   uint32 // ELF relocation type
	Offset uint64 // Reloc.Offset
	// Value is the computed value that did not fit its field (for a
	// misaligned value, the value itself); 0 when none was computed.
	Value int64
	Err   error
}

func (e *RelocError) Error() string {
	name := fmt.Sprint(e.Type)
	if a, ok := arches[e.Arch]; ok {
		name = relocName(a.machine, e.Type)
	}
	return fmt.Sprintf("ulp: relocs[%d] %s at image offset %#x: value %d (%#x): %v",
		e.Index, name, e.Offset, e.Value, uint64(e.Value), e.Err)
}

func (e *RelocError) Unwrap() error { return e.Err }

// site is one relocation to apply: loc are the bytes it patches, s the
// symbol's address (on ARM with the Thumb bit as in Reloc.Sym), p the
// address of loc, a the RELA addend (0 on ARM, whose addend is in loc).
type site struct {
	loc  []byte
	s, p uint64
	a    int64
}

// applyFunc patches st.loc for relocation type t. It returns the value it
// computed so that an error can name it.
type applyFunc func(t uint32, st site) (int64, error)

var appliers = map[string]applyFunc{
	AMD64: applyX86,
	ARM64: applyA64,
	ARM:   applyA32,
}

// Link returns the patch image (Code, zero padding to pageSize, Data; BSS
// is not included — the agent's anonymous mapping is already zero) with
// every relocation applied for a patch mapped at patchBase in a process
// where the target ELF's load base is targetBase.
//
// Link checks only what it needs to stay in bounds (arch, page size,
// every relocation's type, base and place); Decode has validated the rest.
// Errors wrap ErrUnsupportedArch, ErrInvalid, or, as a *RelocError naming
// the relocation, ErrUnsupportedReloc, ErrRelocOverflow or ErrInterwork.
func Link(b *Bundle, patchBase, targetBase, pageSize uint64) ([]byte, error) {
	if b == nil {
		return nil, fmt.Errorf("ulp: link: nil bundle: %w", ErrInvalid)
	}
	a, err := archOf(b.Arch)
	if err != nil {
		return nil, err
	}
	if pageSize == 0 || pageSize&(pageSize-1) != 0 || pageSize > 1<<30 {
		return nil, fmt.Errorf("ulp: link: page size %#x is not a power of two up to 1 GiB: %w", pageSize, ErrInvalid)
	}
	if patchBase%pageSize != 0 {
		return nil, fmt.Errorf("ulp: link: patch base %#x is not page-aligned (%#x): %w", patchBase, pageSize, ErrInvalid)
	}
	if uint64(len(b.Code)) > MaxSize || uint64(len(b.Data)) > MaxSize {
		return nil, fmt.Errorf("ulp: link: code %d or data %d bytes, limit %d: %w", len(b.Code), len(b.Data), MaxSize, ErrTooLarge)
	}
	dataOff := b.DataOffset(pageSize)
	img := make([]byte, dataOff+uint64(len(b.Data)))
	copy(img, b.Code)
	copy(img[dataOff:], b.Data)
	apply := appliers[b.Arch]
	for i, r := range b.Relocs {
		w, ok := a.relocs[r.Type]
		if !ok {
			return nil, &RelocError{Index: i, Arch: b.Arch, Type: r.Type, Offset: r.Offset, Err: ErrUnsupportedReloc}
		}
		if !b.inImage(r.Offset, uint64(w), pageSize) {
			return nil, fmt.Errorf("ulp: link: relocs[%d] at %#x+%d is outside code and data: %w", i, r.Offset, w, ErrInvalid)
		}
		var base uint64
		switch r.Base {
		case BasePatch:
			base = patchBase
		case BaseTarget:
			base = targetBase
		default:
			return nil, fmt.Errorf("ulp: link: relocs[%d]: unknown base %d: %w", i, r.Base, ErrInvalid)
		}
		st := site{loc: img[r.Offset : r.Offset+uint64(w)], s: base + r.Sym, p: patchBase + r.Offset, a: r.Addend}
		if v, err := apply(r.Type, st); err != nil {
			return nil, &RelocError{Index: i, Arch: b.Arch, Type: r.Type, Offset: r.Offset, Value: v, Err: err}
		}
	}
	return img, nil
}

// Helpers shared by the per-arch files.

func le16(b []byte) uint32     { return uint32(binary.LittleEndian.Uint16(b)) }
func le32(b []byte) uint32     { return binary.LittleEndian.Uint32(b) }
func put16(b []byte, v uint32) { binary.LittleEndian.PutUint16(b, uint16(v)) }
func put32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func put64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

// fitsSigned reports whether v is representable in a two's-complement
// field of n bits.
func fitsSigned(v int64, n uint) bool {
	return v >= -(1<<(n-1)) && v < 1<<(n-1)
}

// errRange and errAlign describe why a value does not fit; both wrap
// ErrRelocOverflow.
func errRange(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrRelocOverflow)
}

func errAlign(n int) error {
	return fmt.Errorf("not a multiple of %d: %w", n, ErrRelocOverflow)
}

// sext sign-extends the low n bits of v.
func sext(v uint64, n uint) int64 {
	return int64(v<<(64-n)) >> (64 - n)
}
