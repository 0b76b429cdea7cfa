package serialframe

import (
	"encoding/binary"
	"hash/crc32"
)

// reframeChecks recomputes the header check and the CRC of a frame in place.
func reframeChecks(f []byte) []byte {
	binary.BigEndian.PutUint16(f[6:], uint16(crc32.Checksum(f[:6], castagnoli)))
	n := len(f) - TrailSize
	binary.BigEndian.PutUint32(f[n:], crc32.Checksum(f[:n], castagnoli))
	return f
}
