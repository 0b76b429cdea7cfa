// Command graft-cross builds graft's binaries for every architecture into
// out/<arch>/ and prints their sizes; -deps adds what each dependency
// costs in the device binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/cross"
)

func main() {
	out := flag.String("out", "out", "output `dir`")
	version := flag.String("version", "0.1.0", "version stamped into graft-agent")
	deps := flag.Bool("deps", false, "report what each dependency costs in the device binary")
	flag.Parse()
	if err := run(context.Background(), *out, *version, *deps); err != nil {
		fmt.Fprintln(os.Stderr, "graft-cross:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, version string, deps bool) error {
	ldflags := "-X github.com/graft-dev/graft/agent/daemon.version=" + version
	fmt.Printf("%-7s %-12s %12s %12s\n", "ARCH", "BINARY", "STRIPPED", "XZ")
	for _, t := range cross.Targets {
		for _, b := range cross.Binaries {
			p := cross.OutPath(out, t, b.Name)
			if err := cross.Build(ctx, t, b.Pkg, p, ldflags, false); err != nil {
				return err
			}
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			xz, err := cross.XZSize(ctx, p)
			if err != nil {
				return err
			}
			fmt.Printf("%-7s %-12s %9.2f MiB %9.2f MiB\n", t.Name, b.Name, mib(fi.Size()), mib(xz))
		}
	}
	if !deps {
		return nil
	}
	for _, t := range cross.Targets[:2] {
		tmp, err := os.MkdirTemp("", "graft-cross")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		bin := filepath.Join(tmp, "graft-agent")
		agent := cross.Binaries[0]
		if err := cross.Build(ctx, t, agent.Pkg, bin, ldflags, true); err != nil {
			return err
		}
		mods, err := cross.Modules(ctx, t, agent.Pkg)
		if err != nil {
			return err
		}
		costs, err := cross.DependencyCosts(ctx, bin, mods)
		if err != nil {
			return err
		}
		fmt.Printf("\ngraft-agent %s: symbol bytes by module (unstripped build)\n", t.Name)
		for _, c := range costs {
			fmt.Printf("  %9.2f MiB  %s\n", mib(c.Bytes), c.Module)
		}
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
