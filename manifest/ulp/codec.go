package ulp

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// The wire shape: CBOR maps with small integer keys (docs/ulp.md).
// Unknown keys are refused: the agent must not guess what a field of
// code it injects into processes means.
type wireBundle struct {
	Format  uint        `cbor:"0,keyasint"`
	Name    string      `cbor:"1,keyasint"`
	Arch    string      `cbor:"2,keyasint"`
	BuildID []byte      `cbor:"3,keyasint"`
	Soname  string      `cbor:"4,keyasint,omitempty"`
	Code    []byte      `cbor:"5,keyasint"`
	Data    []byte      `cbor:"6,keyasint,omitempty"`
	BSS     uint64      `cbor:"7,keyasint,omitempty"`
	Funcs   []wireFunc  `cbor:"8,keyasint"`
	Relocs  []wireReloc `cbor:"9,keyasint,omitempty"`
	// NoEscape: see Bundle.NoEscape.
	NoEscape bool `cbor:"10,keyasint,omitempty"`
	// Sum is the SHA-256 of every byte of the encoding before its own
	// 32 bytes. Key 23 is the largest one-byte key, so in core
	// deterministic order it is always the map's last pair and the
	// bundle always ends with sumHead and the 32 bytes.
	Sum []byte `cbor:"23,keyasint"`
}

// sumHead is how every encoded bundle's last 35 bytes begin: key 23,
// then a 32-byte byte string.
var sumHead = []byte{0x17, 0x58, 0x20}

type wireFunc struct {
	Symbol string `cbor:"0,keyasint"`
	Target uint64 `cbor:"1,keyasint"`
	Size   uint64 `cbor:"2,keyasint"`
	Keep   uint64 `cbor:"3,keyasint,omitempty"`
	// Key 4 (format 1's check-len) is retired: Check covers Size bytes.
	Check []byte `cbor:"5,keyasint"`
	New   uint64 `cbor:"6,keyasint"`
	Thumb bool   `cbor:"7,keyasint,omitempty"`
	Guard uint64 `cbor:"8,keyasint"`
}

// A relocation is a 5-element array, not a map: bundles carry thousands.
type wireReloc struct {
	_      struct{} `cbor:",toarray"`
	Offset uint64
	Type   uint32
	Base   Base
	Sym    uint64
	Addend int64
}

var decMode, encMode = modes()

func modes() (cbor.DecMode, cbor.EncMode) {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   4,
		MaxArrayElements:  MaxRelocs,
		MaxMapPairs:       16,
	}.DecMode()
	if err != nil {
		panic("ulp: decoder options: " + err.Error())
	}
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("ulp: encoder options: " + err.Error())
	}
	return dm, em
}

// verifySum checks the checksum in b's last 32 bytes against the bytes
// before them. A bundle without one (format 1, or not a bundle) that
// still names another format is ErrUnsupportedFormat.
func verifySum(b []byte) error {
	n := len(b) - SumSize
	if n < len(sumHead) || !bytes.Equal(b[n-len(sumHead):n], sumHead) {
		var peek struct {
			Format uint `cbor:"0,keyasint"`
		}
		if err := cbor.Unmarshal(b, &peek); err == nil && peek.Format != FormatVersion {
			return fmt.Errorf("ulp: format %d, this agent reads %d: %w", peek.Format, FormatVersion, ErrUnsupportedFormat)
		}
		return fmt.Errorf("ulp: no checksum at the end of the %d bytes: %w", len(b), ErrChecksum)
	}
	if sum := sha256.Sum256(b[:n]); !bytes.Equal(sum[:], b[n:]) {
		return fmt.Errorf("ulp: the %d bytes hash to %x, the bundle says %x: %w", n, sum[:8], b[n:n+8], ErrChecksum)
	}
	return nil
}

// Decode reads one bundle from b: it verifies the checksum over the
// bytes first, then decodes strictly (one CBOR item, no unknown keys, no
// duplicates, no tags, no trailing bytes) and validates the result.
func Decode(b []byte) (*Bundle, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("ulp: %d bytes, limit %d: %w", len(b), MaxSize, ErrTooLarge)
	}
	if err := verifySum(b); err != nil {
		return nil, err
	}
	var w wireBundle
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("ulp: %w: %w", err, ErrMalformed)
	}
	if !bytes.Equal(w.Sum, b[len(b)-SumSize:]) {
		return nil, fmt.Errorf("ulp: the checksum is not the bundle's last field: %w", ErrMalformed)
	}
	if w.Format != FormatVersion {
		return nil, fmt.Errorf("ulp: format %d, this agent reads %d: %w", w.Format, FormatVersion, ErrUnsupportedFormat)
	}
	out := &Bundle{Format: w.Format, Name: w.Name, Arch: w.Arch, BuildID: w.BuildID, Soname: w.Soname,
		Code: w.Code, Data: w.Data, BSS: w.BSS, NoEscape: w.NoEscape,
		Funcs: make([]Func, len(w.Funcs)), Relocs: make([]Reloc, len(w.Relocs))}
	for i, f := range w.Funcs {
		out.Funcs[i] = Func{Symbol: f.Symbol, Target: f.Target, Size: f.Size, Keep: f.Keep,
			Check: f.Check, Guard: f.Guard, New: f.New, Thumb: f.Thumb}
	}
	for i, r := range w.Relocs {
		out.Relocs[i] = Reloc{Offset: r.Offset, Type: r.Type, Base: r.Base, Sym: r.Sym, Addend: r.Addend}
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// Encode validates b and returns its core deterministic CBOR encoding,
// checksum last.
func (b *Bundle) Encode() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	out, err := b.wire().seal()
	if err != nil {
		return nil, err
	}
	if len(out) > MaxSize {
		return nil, fmt.Errorf("ulp: encoded bundle is %d bytes, limit %d: %w", len(out), MaxSize, ErrTooLarge)
	}
	return out, nil
}

// wire is b's wire shape, without its checksum.
func (b *Bundle) wire() *wireBundle {
	w := &wireBundle{Format: b.Format, Name: b.Name, Arch: b.Arch, BuildID: b.BuildID, Soname: b.Soname,
		Code: b.Code, Data: b.Data, BSS: b.BSS, NoEscape: b.NoEscape,
		Funcs: make([]wireFunc, len(b.Funcs)), Relocs: make([]wireReloc, len(b.Relocs))}
	for i, f := range b.Funcs {
		w.Funcs[i] = wireFunc{Symbol: f.Symbol, Target: f.Target, Size: f.Size, Keep: f.Keep,
			Check: f.Check, Guard: f.Guard, New: f.New, Thumb: f.Thumb}
	}
	for i, r := range b.Relocs {
		w.Relocs[i] = wireReloc{Offset: r.Offset, Type: r.Type, Base: r.Base, Sym: r.Sym, Addend: r.Addend}
	}
	return w
}

// seal encodes w with its checksum: a zero placeholder of the same
// length is encoded, then replaced by the hash of what precedes it.
func (w *wireBundle) seal() ([]byte, error) {
	w.Sum = make([]byte, SumSize)
	out, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("ulp: encode: %w", err)
	}
	n := len(out) - SumSize
	if n < len(sumHead) || !bytes.Equal(out[n-len(sumHead):n], sumHead) {
		return nil, fmt.Errorf("ulp: encode: the checksum is not the last field: %w", ErrMalformed)
	}
	sum := sha256.Sum256(out[:n])
	copy(out[n:], sum[:])
	return out, nil
}
