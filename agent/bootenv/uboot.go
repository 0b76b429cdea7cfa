package bootenv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// U-Boot environment block layout (little-endian, as on ARM):
//
//	single:    crc32(data) [4] | data
//	redundant: crc32(data) [4] | flags [1] | data
//
// data is "name=value\0" entries followed by one more "\0"; the rest of the
// block is padding (U-Boot pads with 0x00, mkenvimage with 0xff). The CRC
// covers all of data, padding included.
const (
	headerSingle    = 4
	headerRedundant = 5

	// MaxUBootSize bounds the size of one environment copy. Real
	// environments are a few KiB to a few hundred KiB; the bound keeps a
	// typo in fw_env.config from allocating gigabytes.
	MaxUBootSize = 16 << 20
)

func headerSize(redundant bool) int {
	if redundant {
		return headerRedundant
	}
	return headerSingle
}

// checkUBootSize checks that one copy of size bytes can hold at least an
// empty environment.
func checkUBootSize(size int64, redundant bool) error {
	min := int64(headerSize(redundant) + 1) // room for the final NUL
	if size < min || size > MaxUBootSize {
		return fmt.Errorf("%w: environment size %#x outside [%#x, %#x]", ErrConfig, size, min, MaxUBootSize)
	}
	return nil
}

// EncodeUBoot encodes env as one U-Boot environment copy of exactly size
// bytes: variables in sorted order, padded with 0x00 as U-Boot's saveenv
// does. For a redundant copy flags is stored after the CRC. A variable with
// an empty value is left out: in U-Boot "name=" unsets name.
func EncodeUBoot(env Env, size int, redundant bool, flags byte) ([]byte, error) {
	if err := checkUBootSize(int64(size), redundant); err != nil {
		return nil, err
	}
	keys := env.Keys()
	need := 1 // the final NUL
	for _, k := range keys {
		v := env[k]
		if err := checkVar(k, v); err != nil {
			return nil, err
		}
		if v != "" {
			need += len(k) + 1 + len(v) + 1
		}
	}
	hdr := headerSize(redundant)
	if need > size-hdr {
		return nil, fmt.Errorf("%w: variables need %d bytes, the U-Boot environment holds %d", ErrTooLarge, need, size-hdr)
	}
	b := make([]byte, size)
	data := b[hdr:]
	n := 0
	for _, k := range keys {
		v := env[k]
		if v == "" {
			continue
		}
		n += copy(data[n:], k)
		data[n] = '='
		n++
		n += copy(data[n:], v)
		n++ // NUL: b is zeroed
	}
	if redundant {
		b[headerSingle] = flags
	}
	binary.LittleEndian.PutUint32(b, crc32.ChecksumIEEE(data))
	return b, nil
}

// DecodeUBoot decodes one U-Boot environment copy (the whole copy, padding
// included) and returns its variables and, for a redundant copy, its flags
// byte. A CRC mismatch is ErrBadCRC (the flags byte is still returned).
// Entries without '=', with an empty name or an empty value are skipped, as
// U-Boot does; a name that appears twice keeps its last value. Bytes after
// the terminating empty entry are ignored.
func DecodeUBoot(b []byte, redundant bool) (Env, byte, error) {
	hdr := headerSize(redundant)
	if len(b) < hdr+1 {
		return nil, 0, fmt.Errorf("%w: %d-byte block is shorter than a U-Boot header and one data byte", ErrMalformed, len(b))
	}
	var flags byte
	if redundant {
		flags = b[headerSingle]
	}
	data := b[hdr:]
	stored := binary.LittleEndian.Uint32(b)
	if sum := crc32.ChecksumIEEE(data); sum != stored {
		return nil, flags, fmt.Errorf("%w: stored %08x, computed %08x", ErrBadCRC, stored, sum)
	}
	env, err := parseUBootData(data)
	return env, flags, err
}

func parseUBootData(data []byte) (Env, error) {
	env := Env{}
	i := 0
	for {
		if i >= len(data) {
			return nil, fmt.Errorf("%w: no empty entry ends the U-Boot variables", ErrMalformed)
		}
		if data[i] == 0 {
			return env, nil
		}
		j := bytes.IndexByte(data[i:], 0)
		if j < 0 {
			return nil, fmt.Errorf("%w: U-Boot entry at data offset %d has no terminating NUL", ErrMalformed, i)
		}
		name, value, ok := bytes.Cut(data[i:i+j], []byte("="))
		i += j + 1
		if !ok || len(name) == 0 || len(value) == 0 {
			continue
		}
		env[string(name)] = string(value)
	}
}

// newerCopy returns which copy (0 or 1) of a redundant environment is
// current when both have a valid CRC, by the rule U-Boot (env/common.c,
// env_check_redund) and libubootenv share: the flags byte is a serial
// number incremented on every save, 0 follows 255, and on a tie copy 0
// wins.
func newerCopy(flags0, flags1 byte) int {
	switch {
	case flags0 == 0xff && flags1 == 0:
		return 1
	case flags1 == 0xff && flags0 == 0:
		return 0
	case flags1 > flags0:
		return 1
	default:
		return 0
	}
}

// ubootCopy is one decoded copy of a redundant environment.
type ubootCopy struct {
	env   Env
	flags byte
	err   error // nil when the copy is valid
}

// selectCopy returns the index of the copy U-Boot would boot with, or
// ErrNoValidCopy. A copy whose CRC matches but whose data is malformed
// counts as invalid.
func selectCopy(c [2]ubootCopy) (int, error) {
	switch {
	case c[0].err == nil && c[1].err == nil:
		return newerCopy(c[0].flags, c[1].flags), nil
	case c[0].err == nil:
		return 0, nil
	case c[1].err == nil:
		return 1, nil
	}
	return 0, fmt.Errorf("%w: copy 0: %w; copy 1: %w", ErrNoValidCopy, c[0].err, c[1].err)
}
