package boards

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// MaxFileSize bounds a board file.
const MaxFileSize = 1 << 20

// ArchHost in a board file stands for the architecture the agent was built
// for; the simulated board uses it.
const ArchHost = "host"

// hostArch is the architecture "host" resolves to; a variable for tests.
var hostArch = runtime.GOARCH

// decoder turns the JSON tree of one board file into boards.
type decoder struct {
	file   string
	lookup func(name string) (Board, bool) // boards "extends" may name
}

// parseFile parses a board file: one board object or an array of them.
func (d *decoder) parseFile(data []byte) ([]Board, error) {
	if len(data) > MaxFileSize {
		return nil, &FieldError{File: d.file, Err: fmt.Errorf("%w: larger than %d bytes", ErrSyntax, MaxFileSize)}
	}
	root, err := parseTree(data)
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.File = d.file
		}
		return nil, err
	}
	var objs []*node
	switch root.kind {
	case kindObject:
		objs = []*node{root}
	case kindArray:
		objs = root.elems
	default:
		return nil, d.at(root.line, "", "", fmt.Errorf("%w: want a board object or an array of them, got %s", ErrWrongType, root.kind))
	}
	var out []Board
	seen := map[string]bool{}
	for _, o := range objs {
		b, err := d.board(o, func(name string) (Board, bool) {
			for i := len(out) - 1; i >= 0; i-- {
				if out[i].Name == name {
					return out[i], true
				}
			}
			return d.lookup(name)
		})
		if err != nil {
			return nil, err
		}
		if seen[b.Name] {
			return nil, d.at(o.line, b.Name, "name", errors.New("board defined twice in this file"))
		}
		seen[b.Name] = true
		out = append(out, b)
	}
	return out, nil
}

func (d *decoder) at(line int, board, field string, err error) *FieldError {
	return &FieldError{File: d.file, Line: line, Board: board, Field: field, Err: err}
}

// fields walks an object's members, refusing duplicates and keys not in
// known; fn sees each member with its dotted field path.
func (d *decoder) fields(n *node, board, path string, known []string, fn func(m member, field string) error) error {
	if n.kind != kindObject {
		return d.at(n.line, board, path, fmt.Errorf("%w: want object, got %s", ErrWrongType, n.kind))
	}
	seen := map[string]bool{}
	for _, m := range n.members {
		field := join(path, m.key)
		if known != nil && !contains(known, m.key) {
			return d.at(m.line, board, field, ErrUnknownField)
		}
		if seen[m.key] {
			return d.at(m.line, board, field, ErrDuplicateField)
		}
		seen[m.key] = true
		if err := fn(m, field); err != nil {
			return err
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *decoder) str(n *node, board, field string) (string, error) {
	if n.kind != kindString {
		return "", d.at(n.line, board, field, fmt.Errorf("%w: want string, got %s", ErrWrongType, n.kind))
	}
	return n.str, nil
}

// integer reads a JSON integer; with hexOK also a string such as "0x4000".
func (d *decoder) integer(n *node, board, field string, hexOK bool) (int64, error) {
	switch {
	case n.kind == kindNumber:
		v, err := strconv.ParseInt(n.str, 10, 64)
		if err != nil {
			return 0, d.at(n.line, board, field, fmt.Errorf("%w: want an integer, got %s", ErrWrongType, n.str))
		}
		return v, nil
	case n.kind == kindString && hexOK:
		v, err := strconv.ParseInt(n.str, 0, 64)
		if err != nil {
			return 0, d.at(n.line, board, field, fmt.Errorf("%w: want an integer such as 16384 or \"0x4000\", got %q", ErrWrongType, n.str))
		}
		return v, nil
	}
	return 0, d.at(n.line, board, field, fmt.Errorf("%w: want integer, got %s", ErrWrongType, n.kind))
}

// smallInt reads a positive integer that fits an int32.
func (d *decoder) smallInt(n *node, board, field string) (int, error) {
	v, err := d.integer(n, board, field, false)
	if err != nil {
		return 0, err
	}
	// Zero means "default" inside a Board, so a file may not say it.
	if v < 1 || v > 1<<31-1 {
		return 0, d.at(n.line, board, field, fmt.Errorf("must be a positive integer, not %d", v))
	}
	return int(v), nil
}

func (d *decoder) strings(n *node, board, field string) ([]string, error) {
	if n.kind != kindArray {
		return nil, d.at(n.line, board, field, fmt.Errorf("%w: want array of strings, got %s", ErrWrongType, n.kind))
	}
	var out []string
	for i, e := range n.elems {
		s, err := d.str(e, board, fmt.Sprintf("%s[%d]", field, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

var boardKeys = []string{"name", "extends", "arch", "compatible", "os_release", "console", "slots", "bootloader", "cmdline", "reboot"}

// board decodes one board object, applies defaults and validates it; a
// validation error gets the line of the field it names.
func (d *decoder) board(n *node, lookup func(string) (Board, bool)) (Board, error) {
	if n.kind != kindObject {
		return Board{}, d.at(n.line, "", "", fmt.Errorf("%w: want board object, got %s", ErrWrongType, n.kind))
	}
	// The name and base come first so every later error can name the board.
	var b Board
	var name string
	for _, m := range n.members {
		if m.key == "name" {
			s, err := d.str(m.val, "", "name")
			if err != nil {
				return Board{}, err
			}
			name = s
		}
	}
	for _, m := range n.members {
		if m.key != "extends" {
			continue
		}
		s, err := d.str(m.val, name, "extends")
		if err != nil {
			return Board{}, err
		}
		base, ok := lookup(s)
		if !ok {
			return Board{}, d.at(m.line, name, "extends", fmt.Errorf("%w %q", ErrUnknownBoard, s))
		}
		b = base.clone()
	}
	b.Name = name
	lines := map[string]int{"": n.line}
	err := d.fields(n, name, "", boardKeys, func(m member, field string) error {
		lines[field] = m.line
		var err error
		switch m.key {
		case "name", "extends":
			// read above
		case "arch":
			b.Arch, err = d.str(m.val, name, field)
			if b.Arch == ArchHost {
				b.Arch = hostArch
			}
		case "compatible":
			b.Compatible, err = d.strings(m.val, name, field)
		case "os_release":
			b.OSRelease, err = d.strings(m.val, name, field)
		case "console":
			err = d.fields(m.val, name, field, []string{"device", "baud"}, func(m member, field string) error {
				lines[field] = m.line
				var err error
				switch m.key {
				case "device":
					b.Console, err = d.str(m.val, name, field)
				case "baud":
					b.Baud, err = d.smallInt(m.val, name, field)
				}
				return err
			})
		case "slots":
			b.SlotGroups, err = d.slots(m.val, name, field, lines)
		case "bootloader":
			err = d.bootloader(m.val, name, field, &b.Bootloader, lines)
		case "cmdline":
			b.Cmdline, err = d.str(m.val, name, field)
		case "reboot":
			b.Reboot, err = d.str(m.val, name, field)
		}
		return err
	})
	if err != nil {
		return Board{}, err
	}
	b = b.WithDefaults()
	if err := b.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.File = d.file
			fe.Line = lineOf(lines, fe.Field)
		}
		return Board{}, err
	}
	return b, nil
}

// lineOf finds the line of field or of its nearest enclosing field.
func lineOf(lines map[string]int, field string) int {
	for {
		if l, ok := lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			return lines[""]
		}
		field = field[:i]
	}
}

func (d *decoder) slots(n *node, board, path string, lines map[string]int) ([]SlotGroup, error) {
	var groups []SlotGroup
	err := d.fields(n, board, path, nil, func(g member, gfield string) error {
		lines[gfield] = g.line
		group := SlotGroup{Name: g.key}
		err := d.fields(g.val, board, gfield, nil, func(s member, sfield string) error {
			lines[sfield] = s.line
			dev, err := d.str(s.val, board, sfield)
			group.Slots = append(group.Slots, Slot{Name: s.key, Device: dev})
			return err
		})
		groups = append(groups, group)
		return err
	})
	return groups, err
}

var bootloaderKeys = []string{"kind", "fw_env_config", "fw_env", "grubenv", "attempts", "try_attempts"}

func (d *decoder) bootloader(n *node, board, path string, bl *Bootloader, lines map[string]int) error {
	return d.fields(n, board, path, bootloaderKeys, func(m member, field string) error {
		lines[field] = m.line
		var err error
		switch m.key {
		case "kind":
			bl.Kind, err = d.str(m.val, board, field)
		case "fw_env_config":
			bl.FWEnvConfig, err = d.str(m.val, board, field)
		case "fw_env":
			bl.FWEnv, err = d.envLocations(m.val, board, field, lines)
		case "grubenv":
			bl.GrubEnv, err = d.str(m.val, board, field)
		case "attempts":
			bl.Attempts, err = d.smallInt(m.val, board, field)
		case "try_attempts":
			bl.TryAttempts, err = d.smallInt(m.val, board, field)
		}
		return err
	})
}

func (d *decoder) envLocations(n *node, board, path string, lines map[string]int) ([]EnvLocation, error) {
	if n.kind != kindArray {
		return nil, d.at(n.line, board, path, fmt.Errorf("%w: want array of objects, got %s", ErrWrongType, n.kind))
	}
	var out []EnvLocation
	for i, e := range n.elems {
		ef := fmt.Sprintf("%s[%d]", path, i)
		lines[ef] = e.line
		var l EnvLocation
		err := d.fields(e, board, ef, []string{"device", "offset", "size", "sector_size"}, func(m member, field string) error {
			lines[field] = m.line
			var err error
			switch m.key {
			case "device":
				l.Device, err = d.str(m.val, board, field)
			case "offset":
				l.Offset, err = d.integer(m.val, board, field, true)
			case "size":
				l.Size, err = d.integer(m.val, board, field, true)
			case "sector_size":
				l.SectorSize, err = d.integer(m.val, board, field, true)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}
