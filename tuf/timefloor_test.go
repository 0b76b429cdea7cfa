package tuf_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/graft-dev/graft/tuf"
	"github.com/graft-dev/graft/tuf/repo"
)

var epoch = time.Unix(0, 0).UTC()

// TestTimeFloorBuildTime: the repository's metadata expired ten days
// before the agent was built. A device whose clock restarted at 1970
// accepts it without a floor, and refuses it (ErrExpired) when the floor
// is the build time.
func TestTimeFloorBuildTime(t *testing.T) {
	built := time.Now().UTC().Truncate(time.Second)
	signed := built.Add(-30 * 24 * time.Hour)
	f := newFixture(t, repo.Options{ConsistentSnapshot: true, Now: func() time.Time { return signed }})
	f.add("image.bin", payload(1000, 30), "")
	f.publish() // timestamp and snapshot expire 23 days before the build
	f.clock = epoch

	c := f.device("http", nil)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("control: a 1970 clock without a floor: %v", err)
	}
	c = f.device("http", func(cfg *tuf.Config) { cfg.MinTime = built })
	err := c.Refresh(context.Background())
	t.Logf("refused: %v", err)
	if !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("Refresh with the build-time floor = %v, want ErrExpired", err)
	}
	if tc := c.Time(); !tc.Behind() || !tc.Reference().Equal(built) {
		t.Fatalf("Time() = %+v, want a clock behind the floor %v", tc, built)
	}
}

// TestTimeFloorPersisted: a device refreshes with a good clock, which
// raises its floor. Later its clock is reset to 1970, its cached metadata
// is lost, and the network serves an old copy of the repository that
// expired before that refresh: refused with ErrExpired. Without the
// persisted floor the same replay is accepted.
func TestTimeFloorPersisted(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	repoClock := now.Add(-10 * 24 * time.Hour)
	f := newFixture(t, repo.Options{ConsistentSnapshot: true, Now: func() time.Time { return repoClock }})
	f.add("image.bin", payload(1000, 31), "")
	f.publish()
	old := filepath.Join(t.TempDir(), "old")
	copyTree(t, f.pub, old)
	repoClock = now
	f.add("image.bin", payload(1000, 32), "")
	f.publish()

	for _, keepFloor := range []bool{true, false} {
		f.clock = now
		c := f.device("dir", nil)
		ctx := context.Background()
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		floor, err := tuf.ReadTimeFloor(c.MetadataDir())
		if err != nil || !floor.Equal(now) {
			t.Fatalf("floor after a refresh at %v: %v, %v", now, floor, err)
		}
		// the replay: old metadata, no cache, a reset clock
		os.RemoveAll(f.pub)
		copyTree(t, old, f.pub)
		for _, role := range []string{"timestamp", "snapshot", "targets"} {
			os.Remove(filepath.Join(c.MetadataDir(), role+".json"))
		}
		if !keepFloor {
			os.Remove(filepath.Join(c.MetadataDir(), "time-floor"))
		}
		f.clock = epoch
		err = c.Refresh(ctx)
		t.Logf("floor kept %v: %v", keepFloor, err)
		if keepFloor && !errors.Is(err, tuf.ErrExpired) {
			t.Fatalf("replay under the floor: %v, want ErrExpired", err)
		}
		if !keepFloor && err != nil {
			t.Fatalf("control: replay without a floor: %v", err)
		}
		f.sync()
	}
}

// TestReferenceTime: Config.At checks expiry as of a given moment (the
// debugging --time), and neither applies nor raises the floor.
func TestReferenceTime(t *testing.T) {
	signed := time.Now().UTC().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	f := newFixture(t, repo.Options{ConsistentSnapshot: true, Now: func() time.Time { return signed }})
	f.add("image.bin", payload(1000, 33), "")
	f.publish()
	f.clock = time.Now()
	if err := f.device("http", nil).Refresh(context.Background()); !errors.Is(err, tuf.ErrExpired) {
		t.Fatalf("today: %v, want ErrExpired", err)
	}
	c := f.device("http", func(cfg *tuf.Config) { cfg.At = signed.Add(time.Hour); cfg.MinTime = time.Now() })
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("as of an hour after signing: %v", err)
	}
	if floor, _ := tuf.ReadTimeFloor(c.MetadataDir()); !floor.IsZero() {
		t.Fatalf("a debugging reference time raised the floor to %v", floor)
	}
	// without a TargetsURL the client checks metadata but fetches nothing
	c = f.device("http", func(cfg *tuf.Config) { cfg.At = signed.Add(time.Hour); cfg.TargetsURL = "" })
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh without TargetsURL: %v", err)
	}
	if _, err := c.Download(context.Background(), "image.bin", tuf.DownloadOptions{}); !errors.Is(err, tuf.ErrInvalidConfig) {
		t.Fatalf("Download without TargetsURL: %v, want ErrInvalidConfig", err)
	}
}
