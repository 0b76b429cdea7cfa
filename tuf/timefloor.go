package tuf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/graft-dev/graft/tuf/internal/atomicfs"
)

// floorFile in MetadataDir holds the time floor: the newest reference time
// at which a Refresh found every piece of metadata valid, RFC 3339.
const floorFile = "time-floor"

// ClockBehindSlack is how far the clock may lag the floor before
// Refresh reports it as behind (a clock that drifted a little is normal).
const ClockBehindSlack = time.Hour

// TimeCheck is the time a Refresh checked expiry against.
type TimeCheck struct {
	// Clock is what the device's clock said.
	Clock time.Time
	// Floor is the time floor: the newest trusted time seen, never below
	// Config.MinTime.
	Floor time.Time
	// At is Config.At: a debugging reference time that overrides both.
	At time.Time
}

// Reference is the time expiry is checked against: the later of Clock
// and Floor.
func (t TimeCheck) Reference() time.Time {
	if !t.At.IsZero() {
		return t.At
	}
	if t.Floor.After(t.Clock) {
		return t.Floor
	}
	return t.Clock
}

// Behind reports a clock more than ClockBehindSlack behind the floor: a
// device without an RTC that booted at 1970 or at its image's build time.
func (t TimeCheck) Behind() bool { return t.At.IsZero() && t.Floor.Sub(t.Clock) > ClockBehindSlack }

// Time returns the clock and floor the last Refresh used (zero before the
// first). A Client refreshed with a clock far behind says so here and in
// a warning log line.
func (c *Client) Time() TimeCheck { return c.clock }

// referenceTime reads the clock and the persisted floor. A floor file
// that does not parse is ignored (with a warning): MinTime still holds.
func (c *Client) referenceTime() TimeCheck {
	now := time.Now
	if c.cfg.Now != nil {
		now = c.cfg.Now
	}
	tc := TimeCheck{Clock: now().UTC(), Floor: c.cfg.MinTime.UTC(), At: c.cfg.At.UTC()}
	if f, err := ReadTimeFloor(c.cfg.MetadataDir); err != nil {
		c.log.Warn("tuf: ignoring unreadable time floor", "err", err)
	} else if f.After(tc.Floor) {
		tc.Floor = f
	}
	return tc
}

// raiseFloor persists the reference time of a successful refresh as the
// floor when it is newer than the stored one (not for a debugging At).
func (c *Client) raiseFloor(tc TimeCheck) error {
	if !tc.At.IsZero() {
		return nil
	}
	t := tc.Reference()
	old, err := ReadTimeFloor(c.cfg.MetadataDir)
	if err == nil && !t.After(old) {
		return nil
	}
	data := []byte(t.UTC().Truncate(time.Second).Format(time.RFC3339) + "\n")
	return atomicfs.WriteFile(filepath.Join(c.cfg.MetadataDir, floorFile), data, 0o644)
}

// ReadTimeFloor returns the time floor persisted in metadataDir, or the
// zero time when there is none yet.
func ReadTimeFloor(metadataDir string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(metadataDir, floorFile))
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("tuf: time floor: %w", err)
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("tuf: time floor: %w", err)
	}
	return t.UTC(), nil
}
