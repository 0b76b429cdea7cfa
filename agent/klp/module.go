package klp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors of the checks. Each is wrapped with the detail a status report
// can show ("module built for 6.1.0-49-amd64, running 6.1.0-50-amd64").
var (
	// ErrNotModule: the bytes are not a loadable kernel module (not an ELF
	// relocatable, no .modinfo or .gnu.linkonce.this_module section, no
	// usable module name, or larger than MaxModuleSize).
	ErrNotModule = errors.New("klp: not a kernel module")
	// ErrUnsupported: the running kernel has no /sys/kernel/livepatch.
	ErrUnsupported = errors.New("klp: kernel has no livepatch support")
	// ErrWrongKernel: the running release is not the one the patch is for
	// (the release the caller names, or the one in the module's vermagic).
	ErrWrongKernel = errors.New("klp: patch is for another kernel")
	// ErrNotLivepatch: the module's .modinfo lacks livepatch=Y.
	ErrNotLivepatch = errors.New("klp: module is not a livepatch (no livepatch=Y)")
	// ErrVermagic: the module has no vermagic, or its build flags differ
	// from the running kernel's vermagic.
	ErrVermagic = errors.New("klp: module vermagic does not match the running kernel")
	// ErrName: the module's name is not the name the caller expects.
	ErrName = errors.New("klp: module name differs from the expected name")
)

// MaxModuleSize is the largest module ParseModule accepts (livepatch
// modules are tens of kilobytes).
const MaxModuleSize = 64 << 20

// moduleNameLen is the kernel's MODULE_NAME_LEN on 64-bit (64 minus the
// size of a long); names must be shorter.
const moduleNameLen = 56

// Info is what ParseModule reads from a module.
type Info struct {
	Name      string   // module name (modinfo name=, else the this_module section); the sysfs name of its patch
	Vermagic  string   // modinfo vermagic= ("6.1.0-50-amd64 SMP preempt mod_unload modversions ")
	Release   string   // the vermagic's first field: the kernel release the module was built for
	Livepatch bool     // modinfo livepatch=Y
	License   string   // modinfo license=
	Depends   []string // modinfo depends=, split at commas
}

// elfLayout holds the header offsets that differ between ELF classes.
type elfLayout struct {
	shoff, shentsize, shnum, shstrndx int // offsets in the ELF header
	shdrSize                          int // minimum section header size
	word                              int // size of an address-sized field
	thisModuleName                    int // offset of name[] in struct module
}

var (
	elf32 = elfLayout{shoff: 0x20, shentsize: 0x2e, shnum: 0x30, shstrndx: 0x32, shdrSize: 40, word: 4, thisModuleName: 12}
	elf64 = elfLayout{shoff: 0x28, shentsize: 0x3a, shnum: 0x3c, shstrndx: 0x3e, shdrSize: 64, word: 8, thisModuleName: 24}
)

// section is one ELF section's name and bytes (nil for SHT_NOBITS).
type section struct {
	name string
	data []byte
}

// ParseModule reads a kernel module's identity from its bytes: the
// .modinfo key=value strings and its name. Anything that is not an ELF
// relocatable carrying .modinfo and .gnu.linkonce.this_module is
// ErrNotModule. It never executes or relocates anything.
func ParseModule(b []byte) (*Info, error) {
	secs, err := elfSections(b)
	if err != nil {
		return nil, err
	}
	var modinfo, thisModule []byte
	var haveModinfo, haveThis bool
	for _, s := range secs {
		switch s.name {
		case ".modinfo":
			modinfo, haveModinfo = s.data, true
		case ".gnu.linkonce.this_module":
			thisModule, haveThis = s.data, true
		}
	}
	if !haveModinfo {
		return nil, fmt.Errorf("%w: no .modinfo section", ErrNotModule)
	}
	if !haveThis {
		return nil, fmt.Errorf("%w: no .gnu.linkonce.this_module section", ErrNotModule)
	}
	inf := parseModinfo(modinfo)
	if inf.Name == "" {
		// Kernels before 5.3 do not put name= in .modinfo; struct
		// module's name[] follows state and the list head.
		l := elf64
		if b[4] == 1 {
			l = elf32
		}
		if len(thisModule) > l.thisModuleName {
			n := thisModule[l.thisModuleName:]
			n = n[:min(len(n), moduleNameLen)]
			if i := bytes.IndexByte(n, 0); i >= 0 {
				inf.Name = string(n[:i])
			}
		}
	}
	if !validName(inf.Name) {
		return nil, fmt.Errorf("%w: module name %q is not a valid kernel module name", ErrNotModule, inf.Name)
	}
	return inf, nil
}

// parseModinfo reads the NUL-separated key=value strings of .modinfo.
func parseModinfo(b []byte) *Info {
	inf := &Info{}
	for _, f := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(f), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			inf.Name = v
		case "vermagic":
			inf.Vermagic = v
			if fs := strings.Fields(v); len(fs) > 0 {
				inf.Release = fs[0]
			}
		case "livepatch":
			inf.Livepatch = v == "Y"
		case "license":
			inf.License = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					inf.Depends = append(inf.Depends, d)
				}
			}
		}
	}
	return inf
}

// validName reports whether n can be a module name: what the kernel uses
// as a directory name in sysfs, so no '/' and no dots.
func validName(n string) bool {
	if n == "" || len(n) >= moduleNameLen {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// elfSections returns the sections of an ELF relocatable (ET_REL), with
// every offset checked against len(b).
func elfSections(b []byte) ([]section, error) {
	if len(b) > MaxModuleSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrNotModule, len(b), MaxModuleSize)
	}
	if len(b) < 0x34 || string(b[:4]) != "\x7fELF" {
		return nil, fmt.Errorf("%w: not an ELF file", ErrNotModule)
	}
	var l elfLayout
	switch b[4] {
	case 1:
		l = elf32
	case 2:
		l = elf64
		if len(b) < 0x40 {
			return nil, fmt.Errorf("%w: truncated ELF header", ErrNotModule)
		}
	default:
		return nil, fmt.Errorf("%w: unknown ELF class %d", ErrNotModule, b[4])
	}
	var bo binary.ByteOrder
	switch b[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: unknown ELF byte order %d", ErrNotModule, b[5])
	}
	if t := bo.Uint16(b[16:]); t != 1 { // ET_REL
		return nil, fmt.Errorf("%w: ELF type %d, not a relocatable object", ErrNotModule, t)
	}
	word := func(off int) uint64 {
		if l.word == 4 {
			return uint64(bo.Uint32(b[off:]))
		}
		return bo.Uint64(b[off:])
	}
	shoff := word(l.shoff)
	shentsize := int(bo.Uint16(b[l.shentsize:]))
	shnum := int(bo.Uint16(b[l.shnum:]))
	shstrndx := int(bo.Uint16(b[l.shstrndx:]))
	if shnum == 0 || shentsize < l.shdrSize || shstrndx >= shnum {
		return nil, fmt.Errorf("%w: bad section header table (%d entries of %d bytes, names in %d)", ErrNotModule, shnum, shentsize, shstrndx)
	}
	if shoff > uint64(len(b)) || uint64(shnum)*uint64(shentsize) > uint64(len(b))-shoff {
		return nil, fmt.Errorf("%w: section header table outside the file", ErrNotModule)
	}
	type shdr struct {
		name    uint32
		typ     uint32
		off, sz uint64
	}
	hdrs := make([]shdr, shnum)
	for i := range hdrs {
		h := b[int(shoff)+i*shentsize:]
		// sh_offset and sh_size follow sh_name, sh_type, sh_flags and
		// sh_addr: two 4-byte fields and two words.
		hdrs[i] = shdr{name: bo.Uint32(h), typ: bo.Uint32(h[4:])}
		o := int(shoff) + i*shentsize + 8 + 2*l.word
		hdrs[i].off, hdrs[i].sz = word(o), word(o+l.word)
	}
	data := func(h shdr) ([]byte, bool) {
		if h.typ == 8 { // SHT_NOBITS
			return nil, true
		}
		if h.off > uint64(len(b)) || h.sz > uint64(len(b))-h.off {
			return nil, false
		}
		return b[h.off : h.off+h.sz], true
	}
	strtab, ok := data(hdrs[shstrndx])
	if !ok {
		return nil, fmt.Errorf("%w: section name table outside the file", ErrNotModule)
	}
	secs := make([]section, 0, shnum)
	for i, h := range hdrs {
		if i == 0 {
			continue // SHN_UNDEF
		}
		if uint64(h.name) >= uint64(len(strtab)) {
			return nil, fmt.Errorf("%w: section %d name outside the name table", ErrNotModule, i)
		}
		name := strtab[h.name:]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		d, ok := data(h)
		if !ok {
			return nil, fmt.Errorf("%w: section %q outside the file", ErrNotModule, name)
		}
		secs = append(secs, section{name: string(name), data: d})
	}
	return secs, nil
}

// KernelFacts describe the running kernel for CheckModule.
type KernelFacts struct {
	Livepatch bool   // /sys/kernel/livepatch exists
	Release   string // uname -r
	// Vermagic is the running kernel's module vermagic if known (from one
	// of its own modules); "" checks only the release field.
	Vermagic string
}

// CheckModule decides whether inf may be loaded into the kernel k as a
// live patch for wantRelease ("" means the release in its vermagic).
// The checks run in this order, and the first failure is returned:
// livepatch support (ErrUnsupported), the release (ErrWrongKernel),
// livepatch=Y (ErrNotLivepatch), the vermagic (ErrVermagic).
//
// The kernel has the final word (module_layout's symbol CRC); a module
// that passes here can still be refused by finit_module.
func CheckModule(inf *Info, k KernelFacts, wantRelease string) error {
	if !k.Livepatch {
		return fmt.Errorf("%w: release %s has no /sys/kernel/livepatch", ErrUnsupported, k.Release)
	}
	if wantRelease != "" && wantRelease != k.Release {
		return fmt.Errorf("%w: patch %s is for %s, running %s", ErrWrongKernel, inf.Name, wantRelease, k.Release)
	}
	if !inf.Livepatch {
		return fmt.Errorf("%w: module %s", ErrNotLivepatch, inf.Name)
	}
	if inf.Vermagic == "" {
		return fmt.Errorf("%w: module %s has no vermagic", ErrVermagic, inf.Name)
	}
	if inf.Release != k.Release {
		return fmt.Errorf("%w: module %s built for %s, running %s", ErrWrongKernel, inf.Name, inf.Release, k.Release)
	}
	if k.Vermagic != "" && strings.Join(strings.Fields(inf.Vermagic), " ") != strings.Join(strings.Fields(k.Vermagic), " ") {
		return fmt.Errorf("%w: module %s has %q, kernel %q", ErrVermagic, inf.Name, strings.TrimSpace(inf.Vermagic), strings.TrimSpace(k.Vermagic))
	}
	return nil
}

// kmsgMessage returns the message text of one /dev/kmsg record
// ("prio,seq,usec,flags[,...];text\n" followed by optional " KEY=value"
// continuation lines), with the kernel's \xNN escapes left as they are.
func kmsgMessage(rec []byte) (string, bool) {
	_, msg, ok := bytes.Cut(rec, []byte{';'})
	if !ok {
		return "", false
	}
	if i := bytes.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return string(msg), true
}

// kmsgRecord is one kernel log record: its timestamp (microseconds since
// boot, the kernel's own clock) and its message.
type kmsgRecord struct {
	usec int64
	msg  string
}

// parseKmsg reads one /dev/kmsg record's timestamp and message.
func parseKmsg(rec []byte) (kmsgRecord, bool) {
	msg, ok := kmsgMessage(rec)
	if !ok {
		return kmsgRecord{}, false
	}
	head, _, _ := bytes.Cut(rec, []byte{';'})
	fields := strings.Split(string(head), ",")
	r := kmsgRecord{msg: msg}
	if len(fields) >= 3 {
		if v, err := strconv.ParseInt(fields[2], 10, 64); err == nil && v >= 0 {
			r.usec = v
		}
	}
	return r, true
}

// kernelTransition reads how long the kernel took to enable patch name
// from its log: from "livepatch: enabling patch 'NAME'" to "livepatch:
// 'NAME': patching complete", and the timestamp (microseconds since boot,
// the log's clock) of the completion. ok is false when either is missing.
func kernelTransition(recs []kmsgRecord, name string) (took time.Duration, doneUsec int64, ok bool) {
	start, end := int64(-1), int64(-1)
	for _, r := range recs {
		switch {
		case strings.Contains(r.msg, "enabling patch '"+name+"'"):
			start = r.usec
		case start >= 0 && strings.Contains(r.msg, "'"+name+"': patching complete"):
			end = r.usec
		}
	}
	if start < 0 || end < start {
		return 0, 0, false
	}
	return time.Duration(end-start) * time.Microsecond, end, true
}

// parseSysfsBool reads a livepatch sysfs attribute ("0\n" or "1\n").
func parseSysfsBool(b []byte) (bool, error) {
	switch strings.TrimSpace(string(b)) {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("klp: sysfs value %q is neither 0 nor 1", b)
}
