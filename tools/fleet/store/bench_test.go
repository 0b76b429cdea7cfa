package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// BenchmarkIngestStatus stores status events from 1,000 devices, one
// transaction each as serve does, and reports events per second and the
// database's size per million events.
func BenchmarkIngestStatus(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	path := filepath.Join(dir, "fleet.db")
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	states := []transport.State{transport.StateDownloading, transport.StateInstalling, transport.StateRebooting,
		transport.StateVerifying, transport.StateCommitted}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		st := transport.Status{EventID: fmt.Sprintf("ev-%012d", i), Device: fmt.Sprintf("sim-%05d", i%1000),
			State: states[i%len(states)], Release: "v2", Sequence: 2, Path: transport.PathAB, Slot: "A",
			Installed: "v1", Seq: uint64(i/1000 + 1), Time: int64(1_700_000_000_000 + i)}
		if _, err := s.IngestStatus(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if err := s.Exec(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil { // the size is the database's, not a WAL's
		b.Fatal(err)
	}
	var size int64
	for _, f := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(f); err == nil {
			size += fi.Size()
		}
	}
	if b.N >= 1000 {
		b.ReportMetric(float64(size)/float64(b.N)*1e6/(1<<20), "MiB/1M-events")
	}
}
