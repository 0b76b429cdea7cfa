package manifest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
)

// A hand-written CBOR writer for tests, independent of the package's
// encoder, so tests can build what the encoder never would: keys out of
// order, duplicate keys, non-shortest integers, indefinite lengths, tags.

// head is a CBOR initial byte plus argument, in shortest form.
func head(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= 0xff:
		return []byte{m | 24, byte(n)}
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16([]byte{m | 25}, uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32([]byte{m | 26}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{m | 27}, n)
}

func cUint(n uint64) []byte          { return head(0, n) }
func cNeg(n uint64) []byte           { return head(1, n) } // encodes -1-n
func cBytes(b []byte) []byte         { return append(head(2, uint64(len(b))), b...) }
func cText(s string) []byte          { return append(head(3, uint64(len(s))), s...) }
func cTag(n uint64, v []byte) []byte { return append(head(6, n), v...) }

var cNull = []byte{0xf6}

func cArray(items ...[]byte) []byte {
	return append(head(4, uint64(len(items))), bytes.Join(items, nil)...)
}

// pair is one map entry; k is an encoded key so tests can use any key.
type pair struct{ k, v []byte }

func kv(k uint64, v []byte) pair { return pair{cUint(k), v} }

func cMap(pairs ...pair) []byte {
	b := head(5, uint64(len(pairs)))
	for _, p := range pairs {
		b = append(b, p.k...)
		b = append(b, p.v...)
	}
	return b
}

// Wire keys, written out from docs/manifest.cddl (not taken from the
// package, so these tests pin the format).
const (
	kFormat, kName, kVersion, kDeviceClass, kSequence, kBoards, kArch, kMinAgent, kComponents = 0, 1, 2, 3, 4, 5, 6, 7, 8
	kKind, kCompName, kImage                                                                  = 0, 1, 2
	kSlotGroup, kTarget, kSize, kSHA256, kCompression                                         = 0, 1, 2, 3, 4
)

var rootfsSum = sha256.Sum256([]byte("rootfs image"))

// fixture is a valid manifest as editable lists of map entries.
// components, when set, replaces the components array built from comp and
// img.
type fixture struct {
	top, comp, img []pair
	components     []byte
}

func newFixture() *fixture {
	return &fixture{
		top: []pair{
			kv(kFormat, cUint(1)),
			kv(kName, cText("v2")),
			kv(kVersion, cText("2.0.0")),
			kv(kDeviceClass, cText("gateway")),
			kv(kSequence, cUint(7)),
			kv(kBoards, cArray(cText("rpi4"), cText("qemu-arm64"))),
			kv(kArch, cText("arm64")),
			kv(kMinAgent, cText("1.2.0")),
		},
		comp: []pair{
			kv(kKind, cUint(1)),
			kv(kCompName, cText("rootfs")),
		},
		img: []pair{
			kv(kSlotGroup, cText("rootfs")),
			kv(kTarget, cText("rootfs-2.0.0.img.zst")),
			kv(kSize, cUint(1<<20)),
			kv(kSHA256, cBytes(rootfsSum[:])),
			kv(kCompression, cUint(2)),
		},
	}
}

// bytes assembles the fixture: the image goes under the component's key 2
// and the component is the single element of key 8. Both go where a
// placeholder entry for their key stands, or last.
func (f *fixture) bytes() []byte {
	comps := f.components
	if comps == nil {
		comps = cArray(cMap(set(f.comp, kImage, cMap(f.img...))...))
	}
	return cMap(set(f.top, kComponents, comps)...)
}

// set replaces key k's value, or appends the entry.
func set(ps []pair, k uint64, v []byte) []pair {
	out := append([]pair(nil), ps...)
	for i := range out {
		if bytes.Equal(out[i].k, cUint(k)) {
			out[i].v = v
			return out
		}
	}
	return append(out, kv(k, v))
}

func del(ps []pair, k uint64) []pair {
	var out []pair
	for _, p := range ps {
		if !bytes.Equal(p.k, cUint(k)) {
			out = append(out, p)
		}
	}
	return out
}
