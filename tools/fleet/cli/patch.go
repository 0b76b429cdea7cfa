package cli

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/graft-dev/graft/manifest/ulp"
	"github.com/graft-dev/graft/tools/fleet/patchbuild"
)

func patchBuildCmd() command {
	return command{
		name:    "patch build",
		summary: "build a userspace live-patch bundle for one ELF build from the original and fixed objects (docs/ulp.md)",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			var in patchbuild.Input
			fs.StringVar(&in.Name, "name", "", "patch `NAME`, e.g. glibc-atoi-base0 (required)")
			fs.StringVar(&in.Target, "target", "", "the exact target ELF `FILE` being patched (required)")
			fs.StringVar(&in.Debug, "debug", "", "the target's debug symbols `FILE` (Debian -dbgsym .debug file)")
			var orig, fixed stringList
			fs.Var(&orig, "orig", "object `FILE.o` of the original build (required, repeatable)")
			fs.Var(&fixed, "fixed", "object `FILE.o` of the fixed build (required, repeatable)")
			out := fs.String("o", "", "write the bundle to `FILE` (required)")
			asJSON := fs.Bool("json", false, "print the report as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				for _, f := range []struct{ name, v string }{{"name", in.Name}, {"target", in.Target}, {"o", *out}} {
					if err := requireFlag(f.name, f.v); err != nil {
						return err
					}
				}
				if len(orig) == 0 || len(fixed) == 0 {
					return usagef("--orig and --fixed are required")
				}
				in.Orig, in.Fixed = orig, fixed
				b, rep, err := patchbuild.Build(in)
				if err != nil {
					return err
				}
				enc, err := b.Encode()
				if err != nil {
					return err
				}
				if err := writeFileAtomic(*out, enc); err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, struct {
						Out   string `json:"out"`
						Bytes int    `json:"bytes"`
						*patchbuild.Report
					}{*out, len(enc), rep})
				}
				printPatchReport(e.stdout, *out, len(enc), rep)
				return nil
			}
		},
	}
}

func printPatchReport(w io.Writer, out string, n int, r *patchbuild.Report) {
	fmt.Fprintf(w, "bundle %s: %s (%d bytes)\n", r.Name, out, n)
	fmt.Fprintf(w, "target %s %s build-id %s\n", r.Soname, r.Arch, r.BuildID)
	for _, f := range r.Replaced {
		thumb := ""
		if f.Thumb {
			thumb = ", thumb"
		}
		fmt.Fprintf(w, "replaced %s at %#x (%d bytes) -> patch+%#x (%d bytes, keep %d, guard %d%s)\n",
			f.Symbol, f.Target, f.Size, f.New, f.Length, f.Keep, f.Guard, thumb)
	}
	list := func(what string, names []string) {
		if len(names) > 0 {
			fmt.Fprintf(w, "%s: %s\n", what, strings.Join(names, ", "))
		}
	}
	list("new functions", r.New)
	list("copied functions", r.Copied)
	list("read-only data", r.Rodata)
	list("new writable data", r.NewData)
	fmt.Fprintf(w, "relocations %d (%d to the target, %d in the patch): %s\n",
		r.ToTarget+r.ToPatch, r.ToTarget, r.ToPatch, countList(r.Relocs))
	fmt.Fprintf(w, "GOT slots %d, veneers %d; code %d bytes, data %d, bss %d\n", r.GOTSlots, r.Veneers, r.Code, r.Data, r.BSS)
	if r.NoEscape {
		fmt.Fprintln(w, "no pointer into the patch escapes: its mapping may be removed after a revert")
	}
	for _, g := range r.Bindings {
		fmt.Fprintf(w, "bound: %s\n", g)
	}
	for _, g := range r.Guarded {
		fmt.Fprintf(w, "guarded: %s\n", g)
	}
	for _, c := range r.Checks {
		fmt.Fprintf(w, "checked: %s\n", c)
	}
	for _, c := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", c)
	}
}

func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func patchShowCmd() command {
	return command{
		name:    "patch show",
		args:    "BUNDLE",
		summary: "decode a userspace live-patch bundle and print it",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			asJSON := fs.Bool("json", false, "print the bundle as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 1, "BUNDLE"); err != nil {
					return err
				}
				raw, err := os.ReadFile(args[0])
				if err != nil {
					return err
				}
				b, err := ulp.Decode(raw)
				if err != nil {
					return err
				}
				v := bundleView(b)
				if *asJSON {
					return writeJSON(e.stdout, v)
				}
				fmt.Fprintf(e.stdout, "bundle %s format %d: %s %s build-id %s\n", v.Name, v.Format, v.Soname, v.Arch, v.BuildID)
				fmt.Fprintf(e.stdout, "code %d bytes, data %d, bss %d, no-escape %v\n", v.Code, v.Data, v.BSS, v.NoEscape)
				for _, f := range v.Funcs {
					fmt.Fprintf(e.stdout, "func %s target %#x size %d keep %d guard %d check %s new %#x thumb %v\n",
						f.Symbol, f.Target, f.Size, f.Keep, f.Guard, f.Check, f.New, f.Thumb)
				}
				for _, r := range v.Relocs {
					fmt.Fprintf(e.stdout, "reloc %#x %s %s%+#x %+d\n", r.Offset, r.Type, r.Base, r.Sym, r.Addend)
				}
				return nil
			}
		},
	}
}

type funcView struct {
	Symbol string `json:"symbol"`
	Target uint64 `json:"target"`
	Size   uint64 `json:"size"`
	Keep   uint64 `json:"keep"`
	Guard  uint64 `json:"guard"`
	Check  string `json:"check"` // SHA-256 of all Size bytes
	New    uint64 `json:"new"`
	Thumb  bool   `json:"thumb"`
}

type relocView struct {
	Offset uint64 `json:"offset"`
	Type   string `json:"type"`
	Base   string `json:"base"`
	Sym    uint64 `json:"sym"`
	Addend int64  `json:"addend"`
}

type bundleJSON struct {
	Format   uint        `json:"format"`
	Name     string      `json:"name"`
	Arch     string      `json:"arch"`
	BuildID  string      `json:"build_id"`
	Soname   string      `json:"soname"`
	Code     int         `json:"code_bytes"`
	Data     int         `json:"data_bytes"`
	BSS      uint64      `json:"bss_bytes"`
	NoEscape bool        `json:"no_escape"`
	Funcs    []funcView  `json:"funcs"`
	Relocs   []relocView `json:"relocs"`
}

func bundleView(b *ulp.Bundle) bundleJSON {
	v := bundleJSON{Format: b.Format, Name: b.Name, Arch: b.Arch, BuildID: hex.EncodeToString(b.BuildID), Soname: b.Soname,
		Code: len(b.Code), Data: len(b.Data), BSS: b.BSS, NoEscape: b.NoEscape, Funcs: []funcView{}, Relocs: []relocView{}}
	for _, f := range b.Funcs {
		v.Funcs = append(v.Funcs, funcView{Symbol: f.Symbol, Target: f.Target, Size: f.Size, Keep: f.Keep,
			Guard: f.Guard, Check: hex.EncodeToString(f.Check), New: f.New, Thumb: f.Thumb})
	}
	for _, r := range b.Relocs {
		base := "patch"
		if r.Base == ulp.BaseTarget {
			base = "target"
		}
		v.Relocs = append(v.Relocs, relocView{Offset: r.Offset, Type: ulp.RelocName(b.Arch, r.Type), Base: base, Sym: r.Sym, Addend: r.Addend})
	}
	return v
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory and a rename.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
