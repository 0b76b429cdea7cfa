package boards

import (
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
)

//go:embed builtin/*.json
var builtinFS embed.FS

// Set is a collection of boards by name. Load and LoadFile change it; a Set
// is safe for concurrent Lookup, Names and Detect once loading is done, but
// not while it is being loaded.
type Set struct {
	boards map[string]Board
}

// builtins parses the embedded board files once.
var builtins = sync.OnceValues(func() (map[string]Board, error) {
	s := &Set{boards: map[string]Board{}}
	files, err := fs.Glob(builtinFS, "builtin/*.json")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := builtinFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		bs, err := s.parse(data, f)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			s.boards[b.Name] = b
		}
	}
	return s.boards, nil
})

// Builtin returns a new Set holding the built-in boards. It panics if an
// embedded board file is invalid, which the package's tests rule out.
func Builtin() *Set {
	m, err := builtins()
	if err != nil {
		panic("boards: built-in board file: " + err.Error())
	}
	s := &Set{boards: make(map[string]Board, len(m))}
	for n, b := range m {
		s.boards[n] = b.clone()
	}
	return s
}

func (s *Set) parse(data []byte, filename string) ([]Board, error) {
	d := &decoder{file: filename, lookup: func(name string) (Board, bool) {
		b, ok := s.boards[name]
		return b, ok
	}}
	return d.parseFile(data)
}

// Load reads a board file (one board object or an array of them; see
// docs/boards.md) and adds its boards, replacing boards of the same name.
// filename is only used in errors. On error the Set is left unchanged; the
// error is a *FieldError naming the file, line and field.
func (s *Set) Load(r io.Reader, filename string) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("boards: read %s: %w", filename, err)
	}
	bs, err := s.parse(data, filename)
	if err != nil {
		return err
	}
	if s.boards == nil {
		s.boards = map[string]Board{}
	}
	for _, b := range bs {
		s.boards[b.Name] = b
	}
	return nil
}

// LoadFile loads the board file at path.
func (s *Set) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("boards: %w", err)
	}
	defer f.Close()
	return s.Load(f, path)
}

// Lookup returns the board called name, or an error matching ErrUnknownBoard.
func (s *Set) Lookup(name string) (Board, error) {
	b, ok := s.boards[name]
	if !ok {
		return Board{}, fmt.Errorf("boards: %w %q (known: %v)", ErrUnknownBoard, name, s.Names())
	}
	return b.clone(), nil
}

// Names returns the names of all boards, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.boards))
	for n := range s.boards {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Detect picks the board for a device from its device-tree compatible
// strings (most specific first, as in /proc/device-tree/compatible): the
// first string that some board lists decides. If several boards list it,
// the one whose Arch is the architecture the agent runs as wins. Errors
// match ErrNoMatch or ErrAmbiguous.
func (s *Set) Detect(compatible []string) (Board, error) {
	return s.DetectArch(compatible, runtime.GOARCH)
}

// DetectArch is Detect for a given architecture (a GOARCH name).
func (s *Set) DetectArch(compatible []string, arch string) (Board, error) {
	names := s.Names()
	for _, c := range compatible {
		var cands []Board
		for _, n := range names {
			if b := s.boards[n]; slices.Contains(b.Compatible, c) {
				cands = append(cands, b)
			}
		}
		if len(cands) == 1 {
			return cands[0].clone(), nil
		}
		if len(cands) == 0 {
			continue
		}
		var same []Board
		for _, b := range cands {
			if b.Arch == arch {
				same = append(same, b)
			}
		}
		if len(same) == 1 {
			return same[0].clone(), nil
		}
		var cn []string
		for _, b := range cands {
			cn = append(cn, b.Name)
		}
		return Board{}, fmt.Errorf("boards: %w: %q is listed by %v and %d of them are %s; set the board in the config", ErrAmbiguous, c, cn, len(same), arch)
	}
	return Board{}, fmt.Errorf("boards: %w: compatible %q", ErrNoMatch, compatible)
}

// DetectOS picks the board for a host no device tree identifies (a
// server) from its os-release IDs (ParseOSRelease: ID first, then
// ID_LIKE): the first ID that some board lists in OSRelease decides, among
// the boards of the agent's architecture. Errors match ErrNoMatch or
// ErrAmbiguous.
func (s *Set) DetectOS(ids []string) (Board, error) {
	for _, id := range ids {
		var cands []string
		for _, n := range s.Names() {
			if b := s.boards[n]; slices.Contains(b.OSRelease, id) && b.Arch == runtime.GOARCH {
				cands = append(cands, n)
			}
		}
		switch len(cands) {
		case 0:
			continue
		case 1:
			return s.boards[cands[0]].clone(), nil
		}
		return Board{}, fmt.Errorf("boards: %w: os-release ID %q is listed by %v; set the board in the config", ErrAmbiguous, id, cands)
	}
	return Board{}, fmt.Errorf("boards: %w: os-release IDs %q", ErrNoMatch, ids)
}
