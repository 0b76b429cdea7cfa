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
	"sort"
	"strings"

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

// deviceTarget is the most the stripped device binary may weigh.
const deviceTarget = 12 << 20

func run(ctx context.Context, out, version string, deps bool) error {
	ldflags := "-X github.com/graft-dev/graft/agent/daemon.version=" + version
	agent := cross.Binaries[0]
	stripped := map[string]int64{} // device binary size by target
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
			if b == agent {
				stripped[t.Name] = fi.Size()
			}
			fmt.Printf("%-7s %-12s %9.2f MiB %9.2f MiB\n", t.Name, b.Name, mib(fi.Size()), mib(xz))
		}
	}
	fmt.Printf("\n%s (static, stripped, every feature: the agent has no build tags) against the %d MiB target:", agent.Name, deviceTarget>>20)
	for _, t := range cross.Targets[:2] {
		fmt.Printf("  %s %.2f MiB = %.2f", t.Name, mib(stripped[t.Name]), float64(stripped[t.Name])/deviceTarget)
	}
	fmt.Println()
	if !deps {
		return nil
	}
	tmp, err := os.MkdirTemp("", "graft-cross")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, t := range cross.Targets[:2] {
		bin := filepath.Join(tmp, t.Name, agent.Name)
		if err := cross.Build(ctx, t, agent.Pkg, bin, ldflags, true); err != nil {
			return err
		}
		pkgs, err := cross.Packages(ctx, t, agent.Pkg)
		if err != nil {
			return err
		}
		sz, err := cross.DependencyCosts(bin, pkgs)
		if err != nil {
			return err
		}
		printCosts(t, agent.Name, stripped[t.Name], sz)
	}
	return nil
}

// printCosts prints where the device binary's bytes go, by module, and the
// biggest packages of the biggest modules.
func printCosts(t cross.Target, bin string, file int64, sz *cross.Sizes) {
	fmt.Printf("\n%s %s: %.2f MiB stripped = %.2f MiB of sections + %.2f MiB of ELF headers and padding\n",
		bin, t.Name, mib(file), mib(sz.Loaded), mib(file-sz.Loaded))
	var code int64
	for _, m := range sz.Modules {
		code += m.Code
	}
	fmt.Printf("  %9.2f MiB named by symbols (code %.2f MiB, data %.2f MiB): SYMBOLS, exact\n", mib(sz.Named), mib(code), mib(sz.Named-code))
	fmt.Printf("  %9.2f MiB pclntab and funcdata, %.2f MiB type descriptors, strings, itabs, padding: no symbol names them;\n", mib(sz.Pclntab), mib(sz.Other))
	fmt.Printf("  %13s EST. spreads them over packages in proportion to their code\n", "")
	fmt.Printf("  %-50s %10s %10s %6s  %s\n", "MODULE", "SYMBOLS", "EST.", "SHARE", "IMPORTED BY")
	var sym, est int64
	moduleOf := map[string]string{}
	for _, m := range sz.Modules {
		sym += m.Symbols
		est += m.Estimate
		by := strings.Join(m.ImportedBy, ", ")
		switch m.Name {
		case "std":
			by = "(all)"
		case sz.Main:
			by = "(main module)"
		}
		fmt.Printf("  %-50s %6.2f MiB %6.2f MiB %5.1f%%  %s\n", m.Name, mib(m.Symbols), mib(m.Estimate),
			100*float64(m.Estimate)/float64(sz.Loaded), by)
		for _, p := range m.Packages {
			moduleOf[p.Name] = m.Name
		}
	}
	fmt.Printf("  %-50s %6.2f MiB %6.2f MiB\n", "total", mib(sym), mib(est))
	fmt.Printf("  what dropping each direct dependency of %s would save: it and every package only it brings in (EST. MiB):\n", sz.Main)
	for _, d := range sz.Direct {
		perModule := map[string]int64{}
		for _, p := range d.Packages {
			perModule[moduleOf[p.Name]] += p.Estimate
		}
		mods := make([]string, 0, len(perModule))
		for m := range perModule {
			mods = append(mods, m)
		}
		sort.Slice(mods, func(i, j int) bool { return perModule[mods[i]] > perModule[mods[j]] })
		var parts []string
		for _, m := range mods {
			if mib(perModule[m]) >= 0.005 { // what prints as 0.00 is noise here
				parts = append(parts, fmt.Sprintf("%s %.2f", m, mib(perModule[m])))
			}
		}
		detail := ""
		if len(parts) > 0 {
			detail = ": " + strings.Join(parts, ", ")
		}
		fmt.Printf("    %-48s %6.2f MiB  %d pkgs, %d modules%s\n", d.Name, mib(d.Estimate), len(d.Packages), len(mods), detail)
	}
	const topModules, topPackages = 4, 6
	fmt.Printf("  biggest packages of the %d biggest modules (EST. MiB):\n", topModules)
	for _, m := range sz.Modules[:min(topModules, len(sz.Modules))] {
		var parts []string
		for _, p := range m.Packages[:min(topPackages, len(m.Packages))] {
			name := strings.TrimPrefix(strings.TrimPrefix(p.Name, m.Name), "/")
			if name == "" {
				name = "."
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", name, mib(p.Estimate)))
		}
		fmt.Printf("    %s (%d pkgs): %s\n", m.Name, len(m.Packages), strings.Join(parts, ", "))
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
