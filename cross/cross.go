package cross

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Target is one architecture graft ships for.
type Target struct {
	Name   string // directory name under out/
	GOARCH string
	GOARM  string
}

// Targets are the architectures graft builds for.
var Targets = []Target{
	{Name: "arm64", GOARCH: "arm64"},
	{Name: "armv7", GOARCH: "arm", GOARM: "7"},
	{Name: "amd64", GOARCH: "amd64"},
}

// Binary is one of graft's commands.
type Binary struct {
	Name string
	Pkg  string
}

// Binaries are graft's commands; the first is the device binary.
var Binaries = []Binary{
	{Name: "graft-agent", Pkg: "./agent/cmd/graft-agent"},
	{Name: "graft-fleet", Pkg: "./tools/fleet/cmd/graft-fleet"},
}

// Env returns the environment for building for t.
func (t Target) Env() []string {
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.GOARCH)
	if t.GOARM != "" {
		env = append(env, "GOARM="+t.GOARM)
	}
	return env
}

// Build compiles pkg for t into out. Stripped unless keepSymbols.
func Build(ctx context.Context, t Target, pkg, out, ldflags string, keepSymbols bool) error {
	if !keepSymbols {
		ldflags = "-s -w " + ldflags
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Env = t.Env()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, t.Name, err, b)
	}
	return nil
}

// XZSize returns the size of path compressed with xz -9.
func XZSize(ctx context.Context, path string) (int64, error) {
	cmd := exec.CommandContext(ctx, "xz", "-9", "-c", "-T1", path)
	var n countWriter
	cmd.Stdout = &n
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("xz %s: %w", path, err)
	}
	return int64(n), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// Cost is what one module adds to a binary's text and data.
type Cost struct {
	Module string
	Bytes  int64
}

// DependencyCosts attributes the symbol sizes of an unstripped binary to
// the modules they come from (standard library as "std", the runtime
// included).
func DependencyCosts(ctx context.Context, binary string, modules []string) ([]Cost, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "nm", "-size", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool nm %s: %w", binary, err)
	}
	sort.Slice(modules, func(i, j int) bool { return len(modules[i]) > len(modules[j]) })
	sums := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size == 0 {
			continue
		}
		sums[moduleOf(strings.Join(f[3:], " "), modules)] += size
	}
	costs := make([]Cost, 0, len(sums))
	for m, b := range sums {
		costs = append(costs, Cost{Module: m, Bytes: b})
	}
	sort.Slice(costs, func(i, j int) bool { return costs[i].Bytes > costs[j].Bytes })
	return costs, nil
}

// moduleOf maps a symbol name to the longest module path it starts with.
func moduleOf(sym string, modules []string) string {
	sym = strings.TrimPrefix(sym, "type:")
	sym = strings.TrimPrefix(sym, "go:")
	for _, m := range modules {
		if strings.HasPrefix(sym, m+".") || strings.HasPrefix(sym, m+"/") {
			return m
		}
	}
	if i := strings.IndexByte(sym, '.'); i > 0 && !strings.Contains(sym[:i], "/") && !strings.Contains(sym[:i], ".") {
		return "std"
	}
	return "other"
}

// Modules lists the modules a package depends on, its own module first.
func Modules(ctx context.Context, t Target, pkg string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", pkg)
	cmd.Env = t.Env()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w", pkg, err)
	}
	seen := map[string]bool{}
	var mods []string
	for _, m := range strings.Fields(string(out)) {
		if !seen[m] {
			seen[m] = true
			mods = append(mods, m)
		}
	}
	return mods, nil
}

// OutPath is where a binary for t goes.
func OutPath(dir string, t Target, bin string) string { return filepath.Join(dir, t.Name, bin) }
