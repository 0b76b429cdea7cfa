package userpatch

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Offset     uint64
	Dev        string // "fd:01"
	Inode      uint64
	Path       string // may end in " (deleted)"
}

// Exec reports whether the mapping is executable.
func (m Mapping) Exec() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// ParseMaps parses the text of /proc/PID/maps.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMapsLine(line)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

func parseMapsLine(line string) (Mapping, error) {
	var m Mapping
	bad := func(why string) (Mapping, error) {
		return Mapping{}, fmt.Errorf("userpatch: maps line %q: %s: %w", line, why, ErrProcfs)
	}
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return bad("too few fields")
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return bad("no address range")
	}
	var err error
	if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
		return bad("start")
	}
	if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil || m.End < m.Start {
		return bad("end")
	}
	m.Perms = fields[1]
	if m.Offset, err = strconv.ParseUint(fields[2], 16, 64); err != nil {
		return bad("offset")
	}
	m.Dev = fields[3]
	if m.Inode, err = strconv.ParseUint(fields[4], 10, 64); err != nil {
		return bad("inode")
	}
	if len(fields) > 5 {
		// The path is everything after the inode, spaces included.
		i := strings.Index(line, fields[5])
		m.Path = line[i:]
	}
	return m, nil
}

// procDir is /proc; tests of the parsers use their own files.
const procDir = "/proc"

func readMaps(pid int) ([]Mapping, error) {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "maps"))
	if err != nil {
		return nil, procErr(err)
	}
	return ParseMaps(bytes.NewReader(b))
}

// procErr turns a vanished process into ErrGone.
func procErr(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, errESRCH) {
		return fmt.Errorf("%w: %v", ErrGone, err)
	}
	return err
}

// tasks lists the thread IDs of pid.
func tasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(filepath.Join(procDir, strconv.Itoa(pid), "task"))
	if err != nil {
		return nil, procErr(err)
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, tid)
		}
	}
	return out, nil
}

// pids lists the process IDs in /proc.
func pids() ([]int, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// procStat is what the agent needs from /proc/PID/stat and status.
type procStat struct {
	Comm      string
	StartTime uint64 // clock ticks after boot: with the PID, names one process
	TracerPID int
}

func readStat(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "stat"))
	if err != nil {
		return st, procErr(err)
	}
	st, err = ParseStat(b)
	if err != nil {
		return st, err
	}
	s, err := os.ReadFile(filepath.Join(procDir, strconv.Itoa(pid), "status"))
	if err != nil {
		return st, procErr(err)
	}
	for line := range strings.Lines(string(s)) {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			st.TracerPID, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return st, nil
}

// ParseStat reads the command name and start time out of /proc/PID/stat.
func ParseStat(b []byte) (procStat, error) {
	var st procStat
	s := string(bytes.TrimSpace(b))
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return st, fmt.Errorf("userpatch: stat %q: no command: %w", s, ErrProcfs)
	}
	st.Comm = s[open+1 : close]
	rest := strings.Fields(s[close+1:])
	// rest[0] is field 3 (state); starttime is field 22.
	if len(rest) < 20 {
		return st, fmt.Errorf("userpatch: stat %q: too few fields: %w", s, ErrProcfs)
	}
	t, err := strconv.ParseUint(rest[19], 10, 64)
	if err != nil {
		return st, fmt.Errorf("userpatch: stat starttime: %w", ErrProcfs)
	}
	st.StartTime = t
	return st, nil
}

// fileKey names a mapped file: device and inode. A library replaced on
// disk gets a new inode, so the key tells the builds apart.
type fileKey struct {
	dev   string
	inode uint64
}

// ElfInfo is what the agent reads from a mapped ELF file.
type ElfInfo struct {
	BuildID  []byte
	Machine  elf.Machine
	LoadBase uint64 // page-aligned vaddr of the first PT_LOAD
	// Soname is the DT_SONAME of a shared library ("libfoo.so.1" for the
	// file libfoo.so.1.2.3); "" when it has none.
	Soname string
}

// ReadElfInfo reads the GNU build ID, machine and first load address of
// the ELF file in r.
func ReadElfInfo(r io.ReaderAt) (ElfInfo, error) {
	var inf ElfInfo
	f, err := elf.NewFile(r)
	if err != nil {
		return inf, fmt.Errorf("userpatch: not an ELF file: %w", err)
	}
	defer f.Close()
	inf.Machine = f.Machine
	if names, err := f.DynString(elf.DT_SONAME); err == nil && len(names) > 0 {
		inf.Soname = names[0]
	}
	first := true
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if first {
				inf.LoadBase = p.Vaddr &^ (p.Align - 1)
				if p.Align == 0 {
					inf.LoadBase = p.Vaddr &^ 0xfff
				}
				first = false
			}
		case elf.PT_NOTE:
			if inf.BuildID == nil {
				b := make([]byte, min(p.Filesz, 1<<16))
				if _, err := p.ReadAt(b, 0); err == nil {
					inf.BuildID = noteBuildID(b, f.ByteOrder)
				}
			}
		}
	}
	if inf.BuildID == nil {
		return inf, fmt.Errorf("userpatch: ELF has no GNU build ID: %w", ErrNoBuildID)
	}
	return inf, nil
}

// noteBuildID finds NT_GNU_BUILD_ID in a PT_NOTE segment's bytes.
func noteBuildID(b []byte, bo interface{ Uint32([]byte) uint32 }) []byte {
	for len(b) >= 12 {
		namesz, descsz, typ := bo.Uint32(b), bo.Uint32(b[4:]), bo.Uint32(b[8:])
		nameEnd := 12 + (uint64(namesz)+3)&^3
		descEnd := nameEnd + (uint64(descsz)+3)&^3
		if descEnd > uint64(len(b)) {
			return nil
		}
		if typ == 3 && namesz == 4 && string(b[12:15]) == "GNU" {
			return bytes.Clone(b[nameEnd : nameEnd+uint64(descsz)])
		}
		b = b[descEnd:]
	}
	return nil
}

// LoadBase returns where pid maps the ELF with the given build ID: the
// base that bundle offsets are relative to.
func LoadBase(pid int, buildID []byte) (uint64, error) {
	t, err := locate(pid, buildID, globalIDs)
	if err != nil {
		return 0, err
	}
	return t.Base, nil
}

// Carries reports whether the process named in a still runs and still
// holds a's trampolines (it may have exited, or exec'd another program).
func Carries(a *Applied) bool { return carries(a) }
