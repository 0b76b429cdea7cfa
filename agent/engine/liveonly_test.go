package engine_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/graft-dev/graft/agent/engine"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/manifest"
)

// serverManifest is a release for debian-server with the given components:
// "image", "kernel", "user" (live ones fall back to the image when
// there is one).
func serverManifest(parts ...string) *manifest.Manifest {
	m := &manifest.Manifest{Format: manifest.FormatVersion, Name: "v2", Version: "2.0.0", Sequence: 2, Boards: []string{"debian-server"}}
	fallback := ""
	sum := make([]byte, 32)
	for _, p := range parts {
		if p == "image" {
			fallback = "rootfs"
			m.Components = append(m.Components, manifest.Component{Kind: manifest.KindImage, Name: "rootfs",
				Image: &manifest.Image{SlotGroup: "rootfs", Target: "v2/rootfs.img", Size: 1, SHA256: sum}})
		}
	}
	for _, p := range parts {
		switch p {
		case "kernel":
			m.Components = append(m.Components, manifest.Component{Kind: manifest.KindKernelPatch, Name: "kp",
				KernelPatch: &manifest.KernelPatch{Target: "v2/kp.ko", SHA256: sum, Release: "6.1.0-50-amd64", Name: "graft_kp", Fallback: fallback}})
		case "user":
			m.Components = append(m.Components, manifest.Component{Kind: manifest.KindUserPatch, Name: "up",
				UserPatch: &manifest.UserPatch{Soname: "libc.so.6", Fallback: fallback,
					Bundles: []manifest.PatchBundle{{BuildID: []byte("buildid-0123"), Target: "v2/up.ulp", SHA256: sum}}}})
		}
	}
	return m
}

func TestPlanLiveOnly(t *testing.T) {
	b, err := boards.Builtin().Lookup("debian-server")
	if err != nil {
		t.Fatal(err)
	}
	facts := func(policy string, check map[string]error) engine.Facts {
		return engine.Facts{Device: manifest.Device{Board: b.Name, Arch: b.Arch}, Board: b, Policy: policy, LiveCheck: check}
	}
	tests := []struct {
		name   string
		m      *manifest.Manifest
		f      engine.Facts
		refuse string // a part of the reason; "" = the live path
	}{
		{"kernel and user live", serverManifest("kernel", "user"), facts("", nil), ""},
		{"live with a fallback image: image ignored", serverManifest("image", "user"), facts(engine.PolicyLiveFirst, nil), ""},
		{"live now image later: no image later", serverManifest("image", "kernel"), facts(engine.PolicyLiveNowImageLater, nil), ""},
		{"image only release", serverManifest("image"), facts("", nil), "carries only the image rootfs"},
		{"image-only policy", serverManifest("image", "user"), facts(engine.PolicyImageOnly, nil), "policy image-only"},
		{"live check fails, fallback image not installed", serverManifest("image", "user"),
			facts("", map[string]error{"up": fmt.Errorf("no process maps libc.so.6")}), "no process maps libc.so.6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := engine.MakePlan(tt.m, tt.f)
			if tt.refuse == "" {
				if err != nil {
					t.Fatal(err)
				}
				if p.Path != engine.PathLive || p.Fallback != "" || p.FallbackSlot != "" || p.Deferred != "" || p.Image != nil {
					t.Errorf("plan %+v: want the live path with no image at all", p)
				}
				return
			}
			if !errors.Is(err, engine.ErrRefused) || !errors.Is(err, engine.ErrLiveOnly) || !strings.Contains(err.Error(), tt.refuse) {
				t.Fatalf("MakePlan = %+v, %v; want a live-only refusal saying %q", p, err, tt.refuse)
			}
			t.Logf("reason: %v", err)
		})
	}
}
