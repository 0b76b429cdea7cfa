package manifest_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/graft-dev/graft/manifest"
)

// liveManifest is a release with one component of each kind: a glibc live
// patch for two builds and a kernel livepatch, both falling back to the
// rootfs image.
func liveManifest() *manifest.Manifest {
	m := fixtureManifest()
	m.Components = append(m.Components,
		manifest.Component{Kind: manifest.KindUserPatch, Name: "glibc-atoi", UserPatch: &manifest.UserPatch{
			Soname: "libc.so.6",
			Bundles: []manifest.PatchBundle{
				{BuildID: bytes.Repeat([]byte{0xab}, 20), Target: "glibc-atoi-ab.ulp", SHA256: bytes.Repeat([]byte{1}, 32)},
				{BuildID: bytes.Repeat([]byte{0xcd}, 20), Target: "glibc-atoi-cd.ulp", SHA256: bytes.Repeat([]byte{2}, 32)},
			},
			Fallback: "rootfs",
		}},
		manifest.Component{Kind: manifest.KindKernelPatch, Name: "cmdline", KernelPatch: &manifest.KernelPatch{
			Target: "livepatch-cmdline.ko", SHA256: bytes.Repeat([]byte{3}, 32),
			Release: "6.1.0-41-amd64", Name: "livepatch_cmdline", Replace: true, Fallback: "rootfs",
		}},
	)
	return m
}

func liveManifestBytes(t *testing.T) []byte {
	b, err := liveManifest().Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func TestLiveComponentsRoundTrip(t *testing.T) {
	want := liveManifest()
	b := liveManifestBytes(t)
	got, err := manifest.Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode(Encode(m)) =\n%+v\nwant\n%+v", got, want)
	}
	again, _ := got.Encode()
	if !bytes.Equal(again, b) {
		t.Error("re-encoding gives other bytes")
	}
	if c := got.Component("glibc-atoi"); c == nil || !c.Kind.Live() || c.Fallback() != "rootfs" {
		t.Errorf("Component(glibc-atoi) = %+v", c)
	}
	// Replace false is left out: one encoding.
	noReplace := liveManifest()
	noReplace.Components[2].KernelPatch.Replace = false
	nb, _ := noReplace.Encode()
	if len(nb) >= len(b) {
		t.Errorf("replace=false encoded in %d bytes, replace=true in %d: false should be left out", len(nb), len(b))
	}
}

func TestLiveComponentsRefused(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *manifest.Manifest)
	}{
		{"fallback names no component", func(m *manifest.Manifest) { m.Components[1].UserPatch.Fallback = "nope" }},
		{"fallback names a live component", func(m *manifest.Manifest) { m.Components[2].KernelPatch.Fallback = "glibc-atoi" }},
		{"duplicate build id", func(m *manifest.Manifest) {
			m.Components[1].UserPatch.Bundles[1].BuildID = m.Components[1].UserPatch.Bundles[0].BuildID
		}},
		{"short build id", func(m *manifest.Manifest) { m.Components[1].UserPatch.Bundles[0].BuildID = []byte{1, 2} }},
		{"no bundles", func(m *manifest.Manifest) { m.Components[1].UserPatch.Bundles = nil }},
		{"bundle without sha256", func(m *manifest.Manifest) { m.Components[1].UserPatch.Bundles[0].SHA256 = nil }},
		{"no soname", func(m *manifest.Manifest) { m.Components[1].UserPatch.Soname = "" }},
		{"kernel patch without release", func(m *manifest.Manifest) { m.Components[2].KernelPatch.Release = "" }},
		{"kernel patch without name", func(m *manifest.Manifest) { m.Components[2].KernelPatch.Name = "" }},
		{"kind without its body", func(m *manifest.Manifest) { m.Components[1].Kind = manifest.KindKernelPatch }},
		{"two bodies", func(m *manifest.Manifest) { m.Components[1].Image = m.Components[0].Image }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := liveManifest()
			tt.edit(m)
			if _, err := m.Encode(); !errors.Is(err, manifest.ErrInvalid) {
				t.Errorf("Encode error = %v, want ErrInvalid", err)
			}
		})
	}
}

// TestKernelPatchParams: module parameters round-trip, and every bad
// one is refused with ErrInvalid, on encode and on decode.
func TestKernelPatchParams(t *testing.T) {
	m := liveManifest()
	m.Components[2].KernelPatch.Params = []string{"replace=1", "debug", "path=/a,b:c"}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Components[2].KernelPatch.Params, m.Components[2].KernelPatch.Params) {
		t.Errorf("params = %q, want %q", got.Components[2].KernelPatch.Params, m.Components[2].KernelPatch.Params)
	}
	many := make([]string, manifest.MaxModuleParams+1)
	for i := range many {
		many[i] = "p" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "=1"
	}
	for _, tt := range []struct {
		name   string
		params []string
	}{
		{"space in value", []string{"a=b c"}},
		{"newline in value", []string{"a=b\nc"}},
		{"quote in value", []string{`a="b"`}},
		{"control character", []string{"a=\x01"}},
		{"non-ASCII value", []string{"a=é"}},
		{"upper-case name", []string{"Replace=1"}},
		{"dash in name", []string{"re-place=1"}},
		{"empty name", []string{"=1"}},
		{"name twice", []string{"a=1", "a=2"}},
		{"too long", []string{"a=" + strings.Repeat("x", manifest.MaxModuleParamBytes)}},
		{"too many", many},
		{"empty list", []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := liveManifest()
			m.Components[2].KernelPatch.Params = tt.params
			if _, err := m.Encode(); !errors.Is(err, manifest.ErrInvalid) {
				t.Errorf("Encode = %v, want ErrInvalid", err)
			}
		})
	}
}
