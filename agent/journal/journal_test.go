package journal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSaveOpenRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "journal.json")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if j.Record().Update != nil {
		t.Fatal("a new journal has no update in flight")
	}
	r := j.Record()
	r.Installed = Release{Name: "v1", Sequence: 1, Slot: "A"}
	r.Update = &Update{Release: Release{Name: "v2", Sequence: 2, Slot: "B"}, From: "A", Step: StepDownloading, Offset: 4096}
	if err := j.Save(r); err != nil {
		t.Fatal(err)
	}
	// The caller's copy must not alias the journal's, either way.
	r.Update.Offset = 1
	if got := j.Record(); got.Update.Offset != 4096 {
		t.Fatalf("changing the saved record changed the journal: offset %d", got.Update.Offset)
	}
	j.Record().Update.Offset = 2
	if got := j.Record(); got.Update.Offset != 4096 {
		t.Fatalf("changing a returned record changed the journal: offset %d", got.Update.Offset)
	}
	j2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got := j2.Record()
	if got.Update == nil || got.Update.Offset != 4096 || got.Update.Step != StepDownloading || got.Installed.Slot != "A" {
		t.Fatalf("reopened record = %+v", got)
	}
}

func TestOpenRefusesCorruptAndForeignSchema(t *testing.T) {
	for name, content := range map[string]string{
		"garbage":      "{not json",
		"other schema": `{"schema": 99}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
		})
	}
}

// A journal.json that is a symlink is not followed: it is corrupt.
func TestSymlinkedJournalIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "elsewhere.json")
	if err := os.WriteFile(other, []byte(`{"schema": 1, "installed": {"sequence": 1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "journal.json")
	if err := os.Symlink(other, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a symlinked journal: %v, want ErrCorrupt", err)
	}
}
