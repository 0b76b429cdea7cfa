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
// transaction each (serve's ingester when messages trickle in), and
// reports events per second and the database's size per million events.
func BenchmarkIngestStatus(b *testing.B) { benchIngest(b, 1) }

// BenchmarkIngestStatusBatched is the same in transactions of 256 events,
// as serve's ingester stores a burst.
func BenchmarkIngestStatusBatched(b *testing.B) { benchIngest(b, 256) }

func benchIngest(b *testing.B, per int) {
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
	for i := 0; i < b.N; i += per {
		err := s.Batch(ctx, func(bt *store.Batch) error {
			for j := i; j < min(i+per, b.N); j++ {
				st := transport.Status{EventID: fmt.Sprintf("ev-%012d", j), Device: fmt.Sprintf("sim-%05d", j%1000),
					State: states[j%len(states)], Release: "v2", Sequence: 2, Path: transport.PathAB, Slot: "A",
					Installed: "v1", Seq: uint64(j/1000 + 1), Time: int64(1_700_000_000_000 + j)}
				if _, err := bt.IngestStatus(st); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
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
