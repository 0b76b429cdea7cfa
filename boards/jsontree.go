package boards

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// The board-file reader first turns JSON into a small tree that remembers
// the line of every value and key, so that errors can name the line, and
// that keeps object members in order (slots are listed in file order).

type nodeKind int

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k nodeKind) String() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object"}[k]
}

type member struct {
	key  string
	line int
	val  *node
}

type node struct {
	kind    nodeKind
	line    int
	str     string // string value, or number literal
	members []member
	elems   []*node
}

// maxDepth bounds nesting; a board file needs four levels.
const maxDepth = 16

type treeParser struct {
	data     []byte
	dec      *json.Decoder
	newlines []int // offsets of '\n' in data
}

// parseTree parses one JSON value from data. Errors are *FieldError with
// the line set and ErrSyntax as cause.
func parseTree(data []byte) (*node, error) {
	p := &treeParser{data: data}
	for i, c := range data {
		if c == '\n' {
			p.newlines = append(p.newlines, i)
		}
	}
	p.dec = json.NewDecoder(bytes.NewReader(data))
	p.dec.UseNumber()
	n, err := p.value(0)
	if err != nil {
		return nil, err
	}
	off := p.dec.InputOffset()
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, p.syntax(off, errors.New("data after the end of the top-level value"))
	}
	return n, nil
}

// lineAt returns the 1-based line of the first token at or after off.
func (p *treeParser) lineAt(off int64) int {
	for off < int64(len(p.data)) {
		switch p.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
			continue
		}
		break
	}
	return sort.SearchInts(p.newlines, int(off)) + 1
}

func (p *treeParser) syntax(off int64, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		off = int64(len(p.data))
		err = errors.New("unexpected end of file")
	}
	return &FieldError{Line: p.lineAt(off), Err: fmt.Errorf("%w: %v", ErrSyntax, err)}
}

func (p *treeParser) value(depth int) (*node, error) {
	off := p.dec.InputOffset()
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(off, err)
	}
	n := &node{line: p.lineAt(off)}
	switch t := tok.(type) {
	case nil:
		n.kind = kindNull
	case bool:
		n.kind = kindBool
	case json.Number:
		n.kind, n.str = kindNumber, string(t)
	case string:
		n.kind, n.str = kindString, t
	case json.Delim:
		if depth >= maxDepth {
			return nil, p.syntax(off, fmt.Errorf("nested deeper than %d levels", maxDepth))
		}
		switch t {
		case '{':
			n.kind = kindObject
			for p.dec.More() {
				koff := p.dec.InputOffset()
				ktok, err := p.dec.Token()
				if err != nil {
					return nil, p.syntax(koff, err)
				}
				key, ok := ktok.(string)
				if !ok {
					return nil, p.syntax(koff, errors.New("object key is not a string"))
				}
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.members = append(n.members, member{key: key, line: p.lineAt(koff), val: v})
			}
		case '[':
			n.kind = kindArray
			for p.dec.More() {
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, v)
			}
		default:
			return nil, p.syntax(off, fmt.Errorf("unexpected %q", rune(t)))
		}
		coff := p.dec.InputOffset()
		end, err := p.dec.Token()
		if err != nil {
			return nil, p.syntax(coff, err)
		}
		if d, ok := end.(json.Delim); !ok || (t == '{' && d != '}') || (t == '[' && d != ']') {
			return nil, p.syntax(coff, errors.New("unterminated object or array"))
		}
	}
	return n, nil
}
