package cross

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
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

// Package is one package linked into a binary.
type Package struct {
	Path    string   // import path; std's vendored copies are "vendor/golang.org/x/..."
	Name    string   // package name ("main" for a command)
	Module  string   // module path, "std" for the standard library
	Imports []string // import paths
}

// Packages lists the packages a command links for t (go list -deps).
func Packages(ctx context.Context, t Target, pkg string) ([]Package, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-json=ImportPath,Name,Standard,Module,Imports", pkg)
	cmd.Env = t.Env()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s for %s: %w", pkg, t.Name, err)
	}
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			ImportPath string
			Name       string
			Standard   bool
			Module     *struct{ Path string }
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("go list %s: %w", pkg, err)
		}
		mod := "std"
		if !p.Standard {
			if p.Module == nil {
				return nil, fmt.Errorf("go list %s: %s is in no module", pkg, p.ImportPath)
			}
			mod = p.Module.Path
		}
		pkgs = append(pkgs, Package{Path: p.ImportPath, Name: p.Name, Module: mod, Imports: p.Imports})
	}
	return pkgs, nil
}

// Cost is what one package or module adds to a binary's file.
type Cost struct {
	Name string // import path, or module path ("std" for the standard library)
	// Symbols is the size of its symbols in sections stored in the file
	// (code, read-only data, initialised data), found by symbol name:
	// exact.
	Symbols int64
	Code    int64 // the .text part of Symbols
	// Estimate adds a share of the bytes no symbol names (the pclntab and
	// funcdata, type descriptors, strings, itabs), in proportion to Code.
	Estimate int64
	// Packages are a module's packages, biggest first (modules only).
	Packages []Cost
	// ImportedBy are the other modules whose packages import this
	// module's (modules only).
	ImportedBy []string
}

// Sizes is where a binary's stored bytes go.
type Sizes struct {
	Loaded  int64 // sections stored in the file and loaded: what strip keeps, without ELF headers and padding
	Named   int64 // of Loaded, in symbols attributed to a package
	Pclntab int64 // .gopclntab, funcdata included: named by no package
	Other   int64 // Loaded - Named - Pclntab: type descriptors, strings, itabs, alignment
	// Modules are every module linked, biggest first, with their packages;
	// a module whose code the linker dropped costs 0.
	Modules []Cost
	// Main is the main package's module.
	Main string
	// Direct are the modules Main imports, each with the packages (of any
	// module, std included) that only it brings in, biggest first: what
	// dropping it would save, as estimates.
	Direct []Cost
}

// Unattributed is the package and module of symbols that match no package
// of the binary.
const Unattributed = "(unattributed)"

// sharedTables are symbols that hold every package's data at once.
var sharedTables = map[string]bool{
	"go:func.*": true, // funcdata of all functions, in .gopclntab
}

// DependencyCosts attributes the stored bytes of an unstripped binary
// (built with symbols, otherwise exactly as it ships) to the packages and
// modules in pkgs: symbol sizes by name, and the rest spread in proportion
// to code. Symbols of sections that take no room in the file (.bss,
// .noptrbss) are left out.
func DependencyCosts(binary string, pkgs []Package) (*Sizes, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return nil, fmt.Errorf("cross: %w", err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("cross: symbols of %s (built with -s?): %w", binary, err)
	}
	sz := &Sizes{}
	stored := map[elf.SectionIndex]bool{}
	text, pclntab := elf.SHN_UNDEF, elf.SHN_UNDEF
	for i, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS {
			continue
		}
		stored[elf.SectionIndex(i)] = true
		sz.Loaded += int64(s.Size)
		switch s.Name {
		case ".text":
			text = elf.SectionIndex(i)
		case ".gopclntab":
			pclntab = elf.SectionIndex(i)
			sz.Pclntab = int64(s.Size)
		}
	}

	known := map[string]bool{}
	module := map[string]string{}
	for _, p := range pkgs {
		known[p.Path] = true
		module[p.Path] = p.Module
		if p.Name == "main" {
			known["main"] = true // a command's symbols say main, not its path
			module["main"] = p.Module
		}
	}
	bytesOf := map[string]*Cost{}
	for _, s := range syms {
		if s.Size == 0 || !stored[s.Section] || sharedTables[s.Name] {
			continue
		}
		p := packageOf(s.Name, known)
		c := bytesOf[p]
		if c == nil {
			c = &Cost{Name: p}
			bytesOf[p] = c
		}
		c.Symbols += int64(s.Size)
		if s.Section == text {
			c.Code += int64(s.Size)
		}
		if s.Section == pclntab {
			sz.Pclntab -= int64(s.Size) // a named table inside it (findfunctab) counts as named
		}
		sz.Named += int64(s.Size)
	}
	sz.Other = sz.Loaded - sz.Named - sz.Pclntab
	spread(bytesOf, sz.Loaded-sz.Named)

	mods := map[string]*Cost{}
	for p, c := range bytesOf {
		m := module[p]
		if m == "" {
			m = Unattributed
		}
		mc := mods[m]
		if mc == nil {
			mc = &Cost{Name: m}
			mods[m] = mc
		}
		mc.Symbols += c.Symbols
		mc.Code += c.Code
		mc.Estimate += c.Estimate
		mc.Packages = append(mc.Packages, *c)
	}
	for _, p := range pkgs { // linked, but the linker kept none of its code
		key := p.Path
		if p.Name == "main" {
			key = "main"
		}
		if bytesOf[key] != nil {
			continue
		}
		if mods[p.Module] == nil {
			mods[p.Module] = &Cost{Name: p.Module}
		}
		mods[p.Module].Packages = append(mods[p.Module].Packages, Cost{Name: p.Path})
	}
	importers := map[string]map[string]bool{}
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if m := module[imp]; m != "" && m != "std" && m != p.Module {
				if importers[m] == nil {
					importers[m] = map[string]bool{}
				}
				importers[m][p.Module] = true
			}
		}
	}
	for m, c := range mods {
		sortCosts(c.Packages)
		for by := range importers[m] {
			c.ImportedBy = append(c.ImportedBy, by)
		}
		sort.Strings(c.ImportedBy)
		sz.Modules = append(sz.Modules, *c)
	}
	sortCosts(sz.Modules)
	sz.Main, sz.Direct = directCosts(pkgs, bytesOf)
	return sz, nil
}

// directCosts returns the main package's module and, for each module it
// imports directly, the packages that would leave the binary with it:
// those the main package reaches only through that module's packages.
func directCosts(pkgs []Package, costs map[string]*Cost) (string, []Cost) {
	byPath := map[string]Package{}
	var root Package
	for _, p := range pkgs {
		byPath[p.Path] = p
		if p.Name == "main" {
			root = p
		}
	}
	if root.Path == "" {
		return "", nil
	}
	reach := func(skip string) map[string]bool {
		seen := map[string]bool{}
		var walk func(path string)
		walk = func(path string) {
			p, ok := byPath[path]
			if !ok || seen[path] || p.Module == skip {
				return
			}
			seen[path] = true
			for _, imp := range p.Imports {
				walk(imp)
			}
		}
		walk(root.Path)
		return seen
	}
	all := reach("")
	direct := map[string]bool{}
	for _, p := range pkgs {
		if p.Module != root.Module {
			continue
		}
		for _, imp := range p.Imports {
			if m := byPath[imp].Module; m != "" && m != "std" && m != root.Module {
				direct[m] = true
			}
		}
	}
	var out []Cost
	for m := range direct {
		without := reach(m)
		d := Cost{Name: m}
		for path := range all {
			if without[path] {
				continue
			}
			key := path
			if path == root.Path {
				key = "main"
			}
			c := Cost{Name: path}
			if pc := costs[key]; pc != nil {
				c = *pc
			}
			d.Symbols += c.Symbols
			d.Code += c.Code
			d.Estimate += c.Estimate
			d.Packages = append(d.Packages, c)
		}
		sortCosts(d.Packages)
		out = append(out, d)
	}
	sortCosts(out)
	return root.Module, out
}

// spread gives each package a share of extra in proportion to its code,
// so that the estimates add up to the named bytes plus extra.
func spread(costs map[string]*Cost, extra int64) {
	var code int64
	for _, c := range costs {
		code += c.Code
	}
	for _, c := range costs {
		c.Estimate = c.Symbols
		if code > 0 {
			c.Estimate += int64(float64(extra) * float64(c.Code) / float64(code))
		}
	}
}

func sortCosts(cs []Cost) {
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].Estimate != cs[j].Estimate {
			return cs[i].Estimate > cs[j].Estimate
		}
		return cs[i].Name < cs[j].Name
	})
}

// Prefixes the compiler and linker put before a type or a package path in
// a symbol name. The longest of a family comes first.
var symbolPrefixes = []string{
	"type:.eq.", "type:.hash.", "type:.namedata.", "type:.importpath.", "type:.gcmask.", "type:",
	"go:itab.", "go:link.", "go:string.", "go:",
}

// packageOf returns the package a symbol belongs to: the longest known
// package path the symbol's name starts with, once stripped of what the
// compiler adds for types, itabs and equality functions, and with the
// linker's escapes undone (it writes the dots of a path's last element as
// %2e: paho%2emqtt%2egolang). Generic instantiations (pkg.F[...]) and
// closures (pkg.F.func1) belong to pkg.F's package; method values
// (pkg.T.M-fm) to T's. A name whose start is no package (a composite type
// like map[string]pkg.T, a struct literal) is matched at the first package
// path inside it. Compiler constants ($f64.…), linker tables (go:buildinfo)
// and assembly symbols without a package (_rt0_arm64, aeshashbody) belong
// to runtime. Otherwise Unattributed.
func packageOf(sym string, known map[string]bool) string {
	name := unescape(sym)
	for _, p := range symbolPrefixes {
		if strings.HasPrefix(name, p) {
			name = name[len(p):]
			break
		}
	}
	if p := packageAt(name, known); p != "" {
		return p
	}
	for i := 1; i < len(name); i++ {
		if strings.IndexByte("*[]( ,;{", name[i-1]) < 0 {
			continue
		}
		if p := packageAt(name[i:], known); p != "" {
			return p
		}
	}
	linker := strings.HasPrefix(sym, "go:") || strings.HasPrefix(name, "$") || !strings.Contains(name, ".")
	if linker && known["runtime"] {
		return "runtime"
	}
	return Unattributed
}

// unescape undoes the linker's %xx escapes in a symbol name.
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// packageAt returns the longest known package path that s starts with,
// followed by a dot.
func packageAt(s string, known map[string]bool) string {
	best := ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' && known[s[:i]] {
			best = s[:i]
		}
		if strings.IndexByte("[]( *{,;", c) >= 0 {
			break
		}
	}
	return best
}

// OutPath is where a binary for t goes.
func OutPath(dir string, t Target, bin string) string { return filepath.Join(dir, t.Name, bin) }
