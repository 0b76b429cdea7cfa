package ulp

import (
	"encoding/binary"
	"fmt"
)

// Trampoline instruction words.
const (
	x86JmpRel32   = 0xe9
	a64B          = 0x14000000
	a64LdrX16Lit8 = 0x58000050 // LDR X16, #8
	a64BrX16      = 0xd61f0200 // BR X16
	a32B          = 0xea000000 // B (always)
	a32LdrPCm4    = 0xe51ff004 // LDR PC, [PC, #-4]
	t32LdrPC      = 0xf8df     // LDR.W PC, [PC, #imm12]: first halfword
	t32LdrPC2     = 0xf000     // second halfword, imm12 in bits 11:0
	t32Nop        = 0xbf00     // NOP (16-bit)
	t32BW1        = 0xf000     // B.W (T4): first halfword
	t32BW2        = 0x9000     // B.W (T4): second halfword
)

// x86JmpRIP is jmp *0(%rip): the 8-byte absolute address follows it.
var x86JmpRIP = []byte{0xff, 0x25, 0, 0, 0, 0}

// Trampoline returns the bytes to write at address at (the target
// function's entry + Func.Keep) so that execution continues at to
// (patchBase + Func.New). It uses the near form (amd64 jmp rel32, arm64 B,
// ARM B, Thumb-2 B.W) when to is in its range and the far form otherwise
// (amd64 jmp [rip+0] + address, 14 bytes; arm64 LDR X16, #8; BR X16 +
// address, 16; ARM LDR PC, [PC, #-4] + address, 8; Thumb-2 LDR.W PC,
// [PC, #imm] + a word-aligned literal with bit 0 set, padded with a NOP
// after the load when at is not word-aligned, 8 or 10 bytes). thumb says
// both sides are Thumb-2 code; to's bit 0 is ignored then.
//
// The result is at least NearSize(arch, thumb) and at most
// FarSize(arch, thumb, at) bytes. Errors wrap ErrUnsupportedArch or
// ErrInvalid (a misaligned address, an address beyond 32 bits on ARM,
// Thumb on another arch).
func Trampoline(arch string, thumb bool, at, to uint64) ([]byte, error) {
	if _, err := archOf(arch); err != nil {
		return nil, err
	}
	if thumb && arch != ARM {
		return nil, fmt.Errorf("ulp: trampoline: Thumb code on %s: %w", arch, ErrInvalid)
	}
	le := binary.LittleEndian
	switch {
	case arch == AMD64:
		if d := int64(to - (at + 5)); fitsSigned(d, 32) {
			out := []byte{x86JmpRel32, 0, 0, 0, 0}
			le.PutUint32(out[1:], uint32(d))
			return out, nil
		}
		out := append(append([]byte{}, x86JmpRIP...), make([]byte, 8)...)
		le.PutUint64(out[6:], to)
		return out, nil

	case arch == ARM64:
		if at%4 != 0 || to%4 != 0 {
			return nil, fmt.Errorf("ulp: trampoline: arm64 %#x -> %#x not word-aligned: %w", at, to, ErrInvalid)
		}
		if d := int64(to - at); fitsSigned(d, 28) {
			return le.AppendUint32(nil, a64B|uint32(d>>2)&0x03ffffff), nil
		}
		out := le.AppendUint32(nil, a64LdrX16Lit8)
		out = le.AppendUint32(out, a64BrX16)
		return le.AppendUint64(out, to), nil

	case !thumb: // ARM state
		if at>>32 != 0 || to>>32 != 0 || at%4 != 0 || to%4 != 0 {
			return nil, fmt.Errorf("ulp: trampoline: ARM %#x -> %#x not word-aligned 32-bit addresses: %w", at, to, ErrInvalid)
		}
		if d := int64(int32(uint32(to) - uint32(at) - 8)); fitsSigned(d, 26) && uint64(int64(at)+8+d) == to {
			return le.AppendUint32(nil, a32B|uint32(d>>2)&0xffffff), nil
		}
		out := le.AppendUint32(nil, a32LdrPCm4)
		return le.AppendUint32(out, uint32(to)), nil

	default: // Thumb-2
		to &^= 1
		if at>>32 != 0 || to>>32 != 0 || at%2 != 0 {
			return nil, fmt.Errorf("ulp: trampoline: Thumb %#x -> %#x not halfword-aligned 32-bit addresses: %w", at, to, ErrInvalid)
		}
		if d := int64(int32(uint32(to) - uint32(at) - 4)); fitsSigned(d, 25) && uint64(int64(at)+4+d) == to {
			hw1, hw2 := thumbBLSet(t32BW1, t32BW2, d)
			out := le.AppendUint16(nil, uint16(hw1))
			return le.AppendUint16(out, uint16(hw2)), nil
		}
		// The load reads from Align(at+4, 4) + imm: the literal follows
		// the instruction directly when at is word-aligned, after a NOP
		// otherwise.
		out := le.AppendUint16(nil, t32LdrPC)
		if at%4 == 0 {
			out = le.AppendUint16(out, t32LdrPC2)
		} else {
			out = le.AppendUint16(out, t32LdrPC2|4)
			out = le.AppendUint16(out, t32Nop)
		}
		return le.AppendUint32(out, uint32(to)|1), nil
	}
}
