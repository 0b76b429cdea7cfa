package cli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/graft-dev/graft/manifest"
	"github.com/graft-dev/graft/tools/fleet/release"
	"github.com/graft-dev/graft/tuf/repo"
)

// releaseJSON is the one JSON schema of a published release (`release
// list --json`, `release show --json`, docs/fleet.md).
type releaseJSON struct {
	Name        string          `json:"name"`
	Version     string          `json:"version,omitempty"`
	Sequence    uint64          `json:"sequence,omitempty"`
	DeviceClass string          `json:"device_class,omitempty"`
	Boards      []string        `json:"boards"`
	Arch        string          `json:"arch,omitempty"`
	Manifest    string          `json:"manifest"` // its TUF target
	Readable    bool            `json:"readable"` // false: the manifest is missing or does not decode
	Components  []componentJSON `json:"components"`
	Targets     []string        `json:"targets"` // every TUF target under releases/NAME/
}

type componentJSON struct {
	Kind    string   `json:"kind"` // as manifest.ComponentKind names it
	Name    string   `json:"name"`
	Targets []string `json:"targets"` // the image, the kernel module, or one bundle per build
}

func releaseViews(r *repo.Repo) ([]releaseJSON, error) {
	pub, err := publishedReleases(r)
	if err != nil {
		return nil, err
	}
	targets := map[string][]string{}
	for _, t := range r.Targets() {
		if name, ok := release.NameFromTarget(t.Name); ok {
			targets[name] = append(targets[name], t.Name)
		}
	}
	out := []releaseJSON{}
	for _, p := range pub {
		v := releaseJSON{Name: p.Name, Manifest: release.ManifestTarget(p.Name), Boards: []string{},
			Components: []componentJSON{}, Targets: slices.Sorted(slices.Values(targets[p.Name]))}
		if m := p.Manifest; m != nil {
			v.Readable, v.Version, v.Sequence, v.DeviceClass, v.Arch = true, m.Version, m.Sequence, m.DeviceClass, m.Arch
			v.Boards = append(v.Boards, m.Boards...)
			for _, c := range m.Components {
				v.Components = append(v.Components, componentJSON{Kind: c.Kind.String(), Name: c.Name, Targets: componentTargets(c)})
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b releaseJSON) int {
		if a.Sequence != b.Sequence {
			return int(a.Sequence) - int(b.Sequence)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

func componentTargets(c manifest.Component) []string {
	out := []string{}
	switch {
	case c.Image != nil:
		out = append(out, c.Image.Target)
	case c.UserPatch != nil:
		for _, b := range c.UserPatch.Bundles {
			out = append(out, b.Target)
		}
	case c.KernelPatch != nil:
		out = append(out, c.KernelPatch.Target)
	}
	return out
}

// loadReleases reads the releases of the repository in dir (--repo),
// without its keys.
func loadReleases(dir string) ([]releaseJSON, error) {
	if err := requireFlag("repo", dir); err != nil {
		return nil, err
	}
	r, err := repo.OpenReadOnly(dir)
	if err != nil {
		return nil, err
	}
	return releaseViews(r)
}

func releaseListCmd() command {
	return command{
		name:    "release list",
		summary: "list the published releases: sequence, version, boards, components",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			asJSON := fs.Bool("json", false, "print a JSON array of releases (docs/fleet.md)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				vs, err := loadReleases(*dir)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, vs)
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RELEASE\tSEQUENCE\tVERSION\tBOARDS\tCOMPONENTS")
				for _, v := range vs {
					var comps []string
					for _, c := range v.Components {
						comps = append(comps, c.Kind+":"+c.Name)
					}
					if !v.Readable {
						comps = []string{"(manifest unreadable)"}
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", v.Name, v.Sequence, dash(v.Version), dash(strings.Join(v.Boards, ",")), strings.Join(comps, " "))
				}
				return tw.Flush()
			}
		},
	}
}

func releaseShowCmd() command {
	return command{
		name:    "release show",
		args:    "NAME",
		summary: "show one published release: its manifest's fields, components and targets",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("repo", "", "TUF repository `DIR` (required)")
			asJSON := fs.Bool("json", false, "print the release as JSON (docs/fleet.md)")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "NAME"); err != nil {
					return err
				}
				vs, err := loadReleases(*dir)
				if err != nil {
					return err
				}
				i := slices.IndexFunc(vs, func(v releaseJSON) bool { return v.Name == args[0] })
				if i < 0 {
					return fmt.Errorf("no published release %q", args[0])
				}
				v := vs[i]
				if *asJSON {
					return writeJSON(e.stdout, v)
				}
				fmt.Fprintf(e.stdout, "release  %s\nversion  %s\nsequence %d\nboards   %s\n", v.Name, dash(v.Version), v.Sequence, dash(strings.Join(v.Boards, ",")))
				if v.DeviceClass != "" {
					fmt.Fprintf(e.stdout, "class    %s\n", v.DeviceClass)
				}
				if v.Arch != "" {
					fmt.Fprintf(e.stdout, "arch     %s\n", v.Arch)
				}
				fmt.Fprintf(e.stdout, "manifest %s\n", v.Manifest)
				for _, c := range v.Components {
					fmt.Fprintf(e.stdout, "component %s %s: %s\n", c.Kind, c.Name, strings.Join(c.Targets, " "))
				}
				for _, t := range v.Targets {
					fmt.Fprintf(e.stdout, "target   %s\n", t)
				}
				return nil
			}
		},
	}
}
