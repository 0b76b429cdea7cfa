package initramfs

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/graft-dev/graft/agent/atomicfile"
)

// ErrSpec: the spec cannot be built (wrong binary for the arch, bad args).
var ErrSpec = errors.New("initramfs: bad spec")

// Archive paths graft-agent relies on in provisioning mode.
const (
	InitPath  = "init"                     // graft-agent
	AgentPath = "bin/graft-agent"          // a symlink to /init
	ArgsPath  = "etc/graft/provision-args" // extra arguments to `graft-agent provision --init`
	BoardPath = "etc/graft/boards.json"    // extra board definitions
)

// Arches maps the --arch names to ELF machines and classes.
var Arches = map[string]struct {
	Machine elf.Machine
	Class   elf.Class
}{
	"arm64": {elf.EM_AARCH64, elf.ELFCLASS64},
	"armv7": {elf.EM_ARM, elf.ELFCLASS32},
	"amd64": {elf.EM_X86_64, elf.ELFCLASS64},
}

// Spec says what goes in.
type Spec struct {
	Arch   string   // "arm64", "armv7" (or "amd64")
	Agent  string   // path to a static graft-agent built for Arch
	Args   []string // extra provisioning-mode arguments, e.g. --board NAME
	Boards []byte   // board definitions file content, optional
}

var dirs = []string{"bin", "dev", "etc", "etc/graft", "proc", "run", "sys", "tmp", "var", "var/lib", "var/lib/graft"}

// Build returns the archive for spec.
func Build(spec Spec) ([]byte, error) {
	want, ok := Arches[spec.Arch]
	if !ok {
		return nil, fmt.Errorf("%w: unknown arch %q (arm64, armv7, amd64)", ErrSpec, spec.Arch)
	}
	agent, err := os.ReadFile(spec.Agent)
	if err != nil {
		return nil, fmt.Errorf("initramfs: graft-agent: %w", err)
	}
	ef, err := elf.NewFile(bytes.NewReader(agent))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not an ELF binary: %v", ErrSpec, spec.Agent, err)
	}
	if ef.Machine != want.Machine || ef.Class != want.Class {
		return nil, fmt.Errorf("%w: %s is built for %v, not %s", ErrSpec, spec.Agent, ef.Machine, spec.Arch)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("%w: %s is dynamically linked (build it with CGO_ENABLED=0)", ErrSpec, spec.Agent)
		}
	}
	for _, a := range spec.Args {
		if strings.ContainsAny(a, " \t\n") {
			return nil, fmt.Errorf("%w: argument %q has white space", ErrSpec, a)
		}
	}
	var recs []cpio.Record
	for _, d := range dirs {
		recs = append(recs, cpio.Directory(d, 0o755))
	}
	recs = append(recs,
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticRecord(agent, cpio.Info{Name: InitPath, Mode: cpio.S_IFREG | 0o755, NLink: 1}),
		cpio.Symlink(AgentPath, "/init"),
	)
	if len(spec.Args) > 0 {
		recs = append(recs, cpio.StaticFile(ArgsPath, strings.Join(spec.Args, "\n")+"\n", 0o644))
	}
	if spec.Boards != nil {
		recs = append(recs, cpio.StaticFile(BoardPath, string(spec.Boards), 0o644))
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := cpio.Newc.Writer(zw)
	for i, r := range recs {
		r = cpio.MakeReproducible(r)
		r.Ino = uint64(i + 1)
		if err := w.WriteRecord(r); err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return buf.Bytes(), nil
}

// Write builds the archive for spec into out, atomically.
func Write(spec Spec, out string) error {
	b, err := Build(spec)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(out, b, 0o644)
}
