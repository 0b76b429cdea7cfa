package release_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
)

func spec() release.Spec {
	return release.Spec{
		Name: "v2", Version: "2.0.0", DeviceClass: "sim", Sequence: 2,
		Boards: []string{"sim", "rpi4"}, Arch: "arm64", MinAgentVersion: "1.0.0",
	}
}

func TestBuild(t *testing.T) {
	image := bytes.Repeat([]byte("graft image block "), 4096)
	sum := sha256.Sum256(image)

	tests := []struct {
		name       string
		c          manifest.Compression
		group      string
		wantTarget string
		decompress func(io.Reader) (io.Reader, error)
	}{
		{name: "none", c: manifest.CompressionNone, wantTarget: "releases/v2/rootfs.img",
			decompress: func(r io.Reader) (io.Reader, error) { return r, nil }},
		{name: "gzip", c: manifest.CompressionGzip, group: "boot", wantTarget: "releases/v2/boot.img.gz",
			decompress: func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{name: "zstd", c: manifest.CompressionZstd, wantTarget: "releases/v2/rootfs.img.zst",
			decompress: func(r io.Reader) (io.Reader, error) {
				d, err := zstd.NewReader(r)
				if err != nil {
					return nil, err
				}
				return d.IOReadCloser(), nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec()
			s.Compression, s.SlotGroup = tt.c, tt.group
			var payload bytes.Buffer
			b, err := release.Build(s, bytes.NewReader(image), &payload)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if b.ImageTarget != tt.wantTarget || b.ManifestTarget != "releases/v2/manifest.cbor" {
				t.Fatalf("targets %q, %q", b.ImageTarget, b.ManifestTarget)
			}
			if b.PayloadSize != int64(payload.Len()) {
				t.Fatalf("PayloadSize %d, wrote %d", b.PayloadSize, payload.Len())
			}
			if tt.c != manifest.CompressionNone && payload.Len() >= len(image) {
				t.Fatalf("payload %d bytes is not compressed (image %d)", payload.Len(), len(image))
			}
			// The payload decompresses to the image the manifest describes.
			r, err := tt.decompress(&payload)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, image) {
				t.Fatal("payload does not decompress to the image")
			}

			m := b.Manifest
			img := m.Images()
			if len(img) != 1 {
				t.Fatalf("%d images, want 1", len(img))
			}
			wantGroup := tt.group
			if wantGroup == "" {
				wantGroup = release.DefaultSlotGroup
			}
			if img[0].Size != uint64(len(image)) || !bytes.Equal(img[0].SHA256, sum[:]) ||
				img[0].Compression != tt.c || img[0].Target != tt.wantTarget || img[0].SlotGroup != wantGroup {
				t.Fatalf("image component %+v", img[0])
			}
			// The manifest is valid and survives the wire.
			enc, err := m.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			dec, err := manifest.Decode(enc)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if dec.Name != "v2" || dec.Sequence != 2 || dec.DeviceClass != "sim" || len(dec.Boards) != 2 ||
				dec.Arch != "arm64" || dec.MinAgentVersion != "1.0.0" || dec.Format != manifest.FormatVersion {
				t.Fatalf("decoded %+v", dec)
			}
		})
	}
}

func TestBuildRefuses(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*release.Spec)
		image []byte
		want  error
	}{
		{name: "no name", edit: func(s *release.Spec) { s.Name = "" }, want: release.ErrInvalidSpec},
		{name: "slash in name", edit: func(s *release.Spec) { s.Name = "a/b" }, want: release.ErrInvalidSpec},
		{name: "dotdot name", edit: func(s *release.Spec) { s.Name = ".." }, want: release.ErrInvalidSpec},
		{name: "no version", edit: func(s *release.Spec) { s.Version = "" }, want: release.ErrInvalidSpec},
		{name: "zero sequence", edit: func(s *release.Spec) { s.Sequence = 0 }, want: release.ErrInvalidSpec},
		{name: "sequence at the top", edit: func(s *release.Spec) { s.Sequence = math.MaxUint64 }, want: release.ErrInvalidSpec},
		{name: "sequence within 1000 of the top", edit: func(s *release.Spec) { s.Sequence = math.MaxUint64 - 999 }, want: release.ErrInvalidSpec},
		{name: "no board", edit: func(s *release.Spec) { s.Boards = nil }, want: release.ErrInvalidSpec},
		{name: "bad slot group", edit: func(s *release.Spec) { s.SlotGroup = "a b" }, want: release.ErrInvalidSpec},
		{name: "bad compression", edit: func(s *release.Spec) { s.Compression = 9 }, want: release.ErrInvalidSpec},
		{name: "empty image", edit: func(*release.Spec) {}, image: []byte{}, want: release.ErrEmptyImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec()
			tt.edit(&s)
			image := tt.image
			if image == nil {
				image = []byte("x")
			}
			_, err := release.Build(s, bytes.NewReader(image), io.Discard)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	pub := func(name, class string, seq uint64) release.Published {
		return release.Published{Name: name, Manifest: &manifest.Manifest{Name: name, DeviceClass: class, Sequence: seq}}
	}
	published := []release.Published{
		pub("v1", "sim", 1), pub("v3", "sim", 3), pub("other-9", "rpi", 9),
		{Name: "broken"}, // a release directory without a readable manifest
	}
	tests := []struct {
		name    string
		m       manifest.Manifest
		want    error
		highest uint64
	}{
		{name: "above highest", m: manifest.Manifest{Name: "v4", DeviceClass: "sim", Sequence: 4}},
		{name: "other class counts apart", m: manifest.Manifest{Name: "r2", DeviceClass: "rpi", Sequence: 10}},
		{name: "new class", m: manifest.Manifest{Name: "n1", DeviceClass: "new", Sequence: 1}},
		{name: "equal to highest", m: manifest.Manifest{Name: "v4", DeviceClass: "sim", Sequence: 3},
			want: release.ErrSequenceNotAbove, highest: 3},
		{name: "below highest", m: manifest.Manifest{Name: "v2", DeviceClass: "sim", Sequence: 2},
			want: release.ErrSequenceNotAbove, highest: 3},
		{name: "below other class", m: manifest.Manifest{Name: "r1", DeviceClass: "rpi", Sequence: 5},
			want: release.ErrSequenceNotAbove, highest: 9},
		{name: "duplicate name", m: manifest.Manifest{Name: "v3", DeviceClass: "sim", Sequence: 5},
			want: release.ErrDuplicateName},
		{name: "duplicate of manifest-less release", m: manifest.Manifest{Name: "broken", DeviceClass: "sim", Sequence: 5},
			want: release.ErrDuplicateName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := release.Check(&tt.m, published)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			var se *release.SequenceError
			if errors.As(err, &se) && (se.Highest != tt.highest || se.Sequence != tt.m.Sequence) {
				t.Fatalf("SequenceError %+v, want highest %d", se, tt.highest)
			}
		})
	}
}

func TestTargetNames(t *testing.T) {
	tests := []struct {
		target     string
		name       string
		ok         bool
		isManifest bool
	}{
		{target: "releases/v2/manifest.cbor", name: "v2", ok: true, isManifest: true},
		{target: "releases/v2/rootfs.img.zst", name: "v2", ok: true},
		{target: "releases/v2", ok: false},
		{target: "releases//manifest.cbor", ok: false},
		{target: "other/v2/manifest.cbor", ok: false},
		{target: "releases/v2/sub/manifest.cbor", name: "v2", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			name, ok := release.NameFromTarget(tt.target)
			if name != tt.name || ok != tt.ok {
				t.Fatalf("NameFromTarget = %q, %v", name, ok)
			}
			if got := release.IsManifestTarget(tt.target); got != tt.isManifest {
				t.Fatalf("IsManifestTarget = %v", got)
			}
		})
	}
}
