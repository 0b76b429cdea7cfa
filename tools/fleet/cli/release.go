package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/tuf/repo"
)

func releaseAddCmd() command {
	return command{
		name:    "release add",
		summary: "publish a release: the image (compressed if asked) and its CBOR manifest as TUF targets",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			var spec release.Spec
			fs.StringVar(&spec.Name, "name", "", "release `NAME`, e.g. v2 (required)")
			fs.StringVar(&spec.Version, "version", "", "release `VERSION`, e.g. 2.0.0 (required)")
			fs.Uint64Var(&spec.Sequence, "sequence", 0, "anti-rollback sequence `N`, above every earlier release of the class (required)")
			var boards stringList
			fs.Var(&boards, "board", "compatible board `NAME` (required, repeatable)")
			fs.StringVar(&spec.DeviceClass, "class", "", "device `CLASS` the sequence counts in")
			fs.StringVar(&spec.Arch, "arch", "", "CPU `ARCH`: arm64, arm or amd64 (default any)")
			fs.StringVar(&spec.MinAgentVersion, "min-agent", "", "oldest agent `VERSION` (X.Y.Z) that may install it")
			image := fs.String("image", "", "uncompressed image `FILE` for the slot (required without live components; with them, their fallback)")
			var live liveFlags
			fs.StringVar(&live.kernelPatch, "kernel-patch", "", "kernel livepatch module `FILE` (.ko) to apply live")
			fs.StringVar(&live.kernelRelease, "kernel-release", "", "kernel `RELEASE` (uname -r) the --kernel-patch is built for")
			fs.StringVar(&live.patchName, "patch-name", "", "livepatch `NAME` of the --kernel-patch (/sys/kernel/livepatch/NAME)")
			fs.BoolVar(&live.replace, "replace", false, "the --kernel-patch is cumulative (atomic replace of earlier patches)")
			fs.Var(&live.moduleParams, "module-param", "module parameter `NAME=VALUE` the --kernel-patch is loaded with (finit_module); repeat for more")
			fs.Var(&live.userPatches, "user-patch", "userspace live-patch `BUNDLE` (repeatable: one per build of the library)")
			fs.StringVar(&live.soname, "soname", "", "`SONAME` the --user-patch bundles patch, e.g. libc.so.6")
			fs.StringVar(&spec.SlotGroup, "slot-group", release.DefaultSlotGroup, "slot `GROUP` the image is for")
			compress := fs.String("compress", "none", "compress the image target: none, gzip or zstd")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				for _, f := range []struct{ name, v string }{
					{"repo", *dir}, {"name", spec.Name}, {"version", spec.Version},
				} {
					if err := requireFlag(f.name, f.v); err != nil {
						return err
					}
				}
				if err := live.check(); err != nil {
					return err
				}
				if *image == "" && !live.any() {
					return usagef("--image is required (or a live component: --kernel-patch, --user-patch)")
				}
				if spec.Sequence == 0 {
					return usagef("--sequence is required and must be above 0")
				}
				if len(boards) == 0 {
					return usagef("--board is required")
				}
				spec.Boards = boards
				c, err := manifest.ParseCompression(*compress)
				if err != nil {
					return usagef("--compress: %v", err)
				}
				spec.Compression = c
				if err := spec.Validate(); err != nil {
					return usagef("%v", err)
				}
				built, err := addRelease(ctx, *dir, spec, *image, live)
				if err != nil {
					return err
				}
				if *image == "" || live.any() {
					return printLive(e, built, *asJSON)
				}
				img := built.Manifest.Images()[0]
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{
						"name": spec.Name, "version": spec.Version, "class": spec.DeviceClass, "sequence": spec.Sequence,
						"manifest_target": built.ManifestTarget, "image_target": built.ImageTarget,
						"image_size": img.Size, "image_sha256": fmt.Sprintf("%x", img.SHA256),
						"compression": img.Compression.String(), "payload_size": built.PayloadSize,
					})
				}
				_, err = fmt.Fprintf(e.stdout, "published release %s (version %s, sequence %d)\n  manifest %s\n  image    %s (%d bytes, sha256 %x, %s, %d bytes on the wire)\n",
					spec.Name, spec.Version, spec.Sequence, built.ManifestTarget, built.ImageTarget,
					img.Size, img.SHA256, img.Compression, built.PayloadSize)
				return err
			}
		},
	}
}

// addRelease checks spec against the repository's releases, adds the
// image and manifest targets and publishes.
func addRelease(ctx context.Context, dir string, spec release.Spec, imagePath string, live liveFlags) (*release.Built, error) {
	r, err := repo.Open(dir)
	if err != nil {
		return nil, err
	}
	published, err := publishedReleases(r)
	if err != nil {
		return nil, err
	}
	// Refuse early, before reading the image, what can be refused on
	// the description alone.
	probe := &manifest.Manifest{Name: spec.Name, DeviceClass: spec.DeviceClass, Sequence: spec.Sequence}
	if err := release.Check(probe, published); err != nil {
		return nil, err
	}

	// The live components first: reading and checking them costs nothing
	// to undo.
	fallback := ""
	if imagePath != "" {
		fallback = groupOrDefault(spec.SlotGroup)
	}
	comps, targets, err := live.components(spec.Name, fallback)
	if err != nil {
		return nil, err
	}
	if imagePath == "" {
		return addLiveOnly(r, spec, comps, targets)
	}

	f, err := os.Open(imagePath)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	// Stream image → Build (hash, compress) → AddTarget (store, hash)
	// without a temporary copy.
	pr, pw := io.Pipe()
	type result struct {
		b   *release.Built
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := release.Build(spec, &ctxReader{ctx: ctx, r: f}, pw)
		pw.CloseWithError(err)
		done <- result{b, err}
	}()
	target := release.ImageTarget(spec.Name, groupOrDefault(spec.SlotGroup), spec.Compression)
	_, addErr := r.AddTarget(target, pr, nil)
	pr.CloseWithError(errors.New("target not stored"))
	res := <-done
	staged := addErr == nil
	// Whatever fails from here leaves nothing of this release staged.
	fail := func(err error) (*release.Built, error) {
		if staged {
			if rerr := r.RemoveTarget(target); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	if res.err != nil {
		return fail(res.err)
	}
	if addErr != nil {
		return fail(addErr)
	}
	built := res.b
	built.Manifest.Components = append(built.Manifest.Components, comps...)
	var added []string
	fail = func(err error) (*release.Built, error) {
		for _, t := range append(added, target) {
			if rerr := r.RemoveTarget(t); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	for _, t := range targets {
		if _, err := r.AddTarget(t.Name, bytesReader(t.Data), nil); err != nil {
			return fail(err)
		}
		added = append(added, t.Name)
	}

	enc, err := built.Manifest.Encode()
	if err != nil {
		return fail(err)
	}
	// Re-check with the decoder the agent uses, so a manifest it would
	// refuse never gets published.
	if _, err := manifest.Decode(enc); err != nil {
		return fail(fmt.Errorf("encoded manifest does not decode: %w", err))
	}
	if _, err := r.AddTarget(built.ManifestTarget, bytesReader(enc), nil); err != nil {
		return fail(err)
	}
	if err := r.Publish(); err != nil {
		return nil, err
	}
	return built, nil
}

func groupOrDefault(g string) string {
	if g == "" {
		return release.DefaultSlotGroup
	}
	return g
}

// ctxReader stops a long read when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
