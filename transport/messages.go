package transport

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Notice tells a device that a release is available. It is a hint only:
// everything installed is verified through TUF, so a forged or replayed
// notice can at worst make a device look for an update.
type Notice struct {
	Release  string `cbor:"1,keyasint"`           // release name, e.g. "v2"
	Manifest string `cbor:"2,keyasint"`           // TUF target name of the manifest, e.g. "releases/v2/manifest.cbor"
	Sequence uint64 `cbor:"3,keyasint,omitempty"` // hint for logs only
	Time     int64  `cbor:"4,keyasint,omitempty"` // unix ms when sent, by the fleet's clock (never compared with a device's)
	// ID is issued by the fleet, new at every notify: a device tells a
	// real re-notify from a redelivery of the same (retained) notice by
	// it, with no clock involved.
	ID string `cbor:"256,keyasint,omitempty"` // an extension key: older devices ignore it
}

// State is a device's position in the update lifecycle, as reported in a
// Status.
type State string

// The states a device reports.
const (
	StateIdle        State = "idle"
	StateDownloading State = "downloading"
	StateInstalling  State = "installing"
	StateRebooting   State = "rebooting"
	StateVerifying   State = "verifying"
	StateCommitted   State = "committed"
	StateRolledBack  State = "rolled-back"
	StateFailed      State = "failed"
	StateRefused     State = "refused"
	// StateFault: the agent runs and is connected but cannot update: its
	// data directory is unusable (read-only, full), or its journal was
	// corrupt and had to be rebuilt. Reason says what; the booted slot
	// stays bootable. It is followed by "idle" once the fault clears.
	StateFault State = "fault"
)

// Valid reports whether s is one of the states of this contract.
func (s State) Valid() bool {
	switch s {
	case StateIdle, StateDownloading, StateInstalling, StateRebooting, StateVerifying,
		StateCommitted, StateRolledBack, StateFailed, StateRefused, StateFault:
		return true
	}
	return false
}

// RetrySuffix ends the reason of a `failed` status that is not final: the
// release did not verify in a way a network fault or a man in the middle
// can cause, and the agent tries the same notice again (docs/wire.md).
const RetrySuffix = "(will retry with back-off)"

// Retrying reports whether s is a failure the agent will retry by itself:
// not an outcome a fleet should count.
func (s Status) Retrying() bool {
	return s.State == StateFailed && strings.HasSuffix(s.Reason, RetrySuffix)
}

// Values of Status.Path.
const (
	PathAB   = "ab"
	PathLive = "live"
)

// Status is one event in a device's update lifecycle. Devices publish it
// retained, so the topic always holds the latest; the fleet de-duplicates
// redeliveries on EventID. Its JSON names are those of the fleet's event
// schema (docs/fleet.md), so `status --follow --json` and `history
// --json` read alike.
type Status struct {
	EventID      string `cbor:"1,keyasint" json:"event_id"`                           // unique per event; the fleet de-duplicates on it
	Device       string `cbor:"2,keyasint" json:"device"`                             // device ID
	Time         int64  `cbor:"3,keyasint,omitempty" json:"device_time_ms,omitempty"` // unix ms
	State        State  `cbor:"4,keyasint" json:"state"`                              // lifecycle state
	Release      string `cbor:"5,keyasint,omitempty" json:"release,omitempty"`        // release concerned
	Sequence     uint64 `cbor:"6,keyasint,omitempty" json:"sequence,omitempty"`       // manifest sequence
	Path         string `cbor:"7,keyasint,omitempty" json:"path,omitempty"`           // PathAB, PathLive or ""
	Reason       string `cbor:"8,keyasint,omitempty" json:"reason,omitempty"`         // why (refusal, failure, rollback reason, path choice)
	Slot         string `cbor:"9,keyasint,omitempty" json:"slot,omitempty"`           // booted slot
	Done         int64  `cbor:"10,keyasint,omitempty" json:"done,omitempty"`          // download/install progress bytes
	Total        int64  `cbor:"11,keyasint,omitempty" json:"total,omitempty"`         // bytes expected
	AgentVersion string `cbor:"12,keyasint,omitempty" json:"agent_version,omitempty"` // agent build
	Installed    string `cbor:"13,keyasint,omitempty" json:"installed,omitempty"`     // release running now
	// Seq is the device's own event counter: larger for every later
	// event, across restarts and power cuts. The fleet orders a device's
	// statuses by it, not by Time (a device without an RTC may report
	// 1970 after a power cut). 0: not counted (an older agent).
	Seq uint64 `cbor:"256,keyasint,omitempty" json:"seq,omitempty"` // an extension key: older fleets ignore it
}

// Telemetry is a device's periodic health and inventory report. Keys 1 to
// 6 are the first contract; everything later is an extension key (256 up),
// so a fleet that predates them still decodes the report.
type Telemetry struct {
	Device       string `cbor:"1,keyasint" json:"device"`                            // device ID
	Time         int64  `cbor:"2,keyasint,omitempty" json:"time_ms,omitempty"`       // unix ms
	Uptime       int64  `cbor:"3,keyasint,omitempty" json:"uptime_s,omitempty"`      // seconds since boot
	Slot         string `cbor:"4,keyasint,omitempty" json:"slot,omitempty"`          // booted slot
	Installed    string `cbor:"5,keyasint,omitempty" json:"installed,omitempty"`     // release running now
	AgentVersion string `cbor:"6,keyasint,omitempty" json:"agent_version,omitempty"` // agent build

	// Seq is the device's event counter, the one Status.Seq draws from:
	// the fleet orders a device's reports by it, never by Time.
	Seq uint64 `cbor:"256,keyasint,omitempty" json:"seq,omitempty"`
	// Load is the 1, 5 and 15 minute load averages, in hundredths.
	Load         []uint64 `cbor:"257,keyasint,omitempty" json:"load_hundredths,omitempty"`
	MemTotal     int64    `cbor:"258,keyasint,omitempty" json:"mem_total_bytes,omitempty"`     // bytes
	MemAvailable int64    `cbor:"259,keyasint,omitempty" json:"mem_available_bytes,omitempty"` // bytes
	Disks        []Disk   `cbor:"260,keyasint,omitempty" json:"disks,omitempty"`               // data dir and slots first
	Thermal      []Zone   `cbor:"261,keyasint,omitempty" json:"thermal,omitempty"`             // thermal zones, where present
	Kernel       string   `cbor:"262,keyasint,omitempty" json:"kernel,omitempty"`              // kernel release (uname -r)
	BootCount    uint64   `cbor:"263,keyasint,omitempty" json:"boot_count,omitempty"`          // boots this agent has seen
	// KernelPatches and UserPatches name the live patches in force.
	KernelPatches []string `cbor:"264,keyasint,omitempty" json:"kernel_patches,omitempty"`
	UserPatches   []string `cbor:"265,keyasint,omitempty" json:"user_patches,omitempty"`
	AgentRSS      int64    `cbor:"266,keyasint,omitempty" json:"agent_rss_bytes,omitempty"` // the agent's resident set, bytes
	Reconnects    uint64   `cbor:"267,keyasint,omitempty" json:"reconnects,omitempty"`      // MQTT reconnects since the agent started
	LastUpdate    *Outcome `cbor:"268,keyasint,omitempty" json:"last_update,omitempty"`     // how the last update ended
	Health        *Check   `cbor:"269,keyasint,omitempty" json:"health,omitempty"`          // the last health check
	// Dropped counts the reports the device's offline queue dropped
	// (oldest first) since the agent started.
	Dropped uint64 `cbor:"270,keyasint,omitempty" json:"dropped,omitempty"`
}

// Disk is one mount's space.
type Disk struct {
	Mount string `cbor:"1,keyasint" json:"mount"`                           // mount point or slot name
	Total int64  `cbor:"2,keyasint,omitempty" json:"total_bytes,omitempty"` // bytes
	Free  int64  `cbor:"3,keyasint,omitempty" json:"free_bytes,omitempty"`  // bytes available to the agent
}

// Zone is one thermal zone's temperature.
type Zone struct {
	Name  string `cbor:"1,keyasint" json:"name"`                              // zone type, e.g. "cpu-thermal"
	Milli int64  `cbor:"2,keyasint,omitempty" json:"milli_celsius,omitempty"` // millidegrees Celsius
}

// Outcome is how an update ended.
type Outcome struct {
	Release string `cbor:"1,keyasint,omitempty" json:"release,omitempty"`
	State   State  `cbor:"2,keyasint" json:"state"`
	Reason  string `cbor:"3,keyasint,omitempty" json:"reason,omitempty"`
}

// Check is a health check's result.
type Check struct {
	OK     bool   `cbor:"1,keyasint" json:"ok"`
	Reason string `cbor:"2,keyasint,omitempty" json:"reason,omitempty"`  // why it failed
	Time   int64  `cbor:"3,keyasint,omitempty" json:"time_ms,omitempty"` // unix ms
}

// Telemetry bounds: a report never grows past MaxTelemetry bytes.
const (
	MaxTelemetry     = 16 << 10
	maxTelemetryList = 16  // disks, zones, patches of each kind
	maxShortReason   = 512 // reasons inside telemetry
)

// Text field limits, in bytes.
const (
	maxName   = 128  // release names, event IDs, slots, versions
	maxTarget = 1024 // TUF target names
	maxReason = 4096 // free text
)

// checkText refuses empty required fields, over-long text and control
// characters (which would corrupt logs and terminals on the fleet side).
func checkText(field, s string, required bool, limit int) error {
	return checkTextAllow(field, s, required, limit, false)
}

// checkTextAllow is checkText that may also allow newlines and tabs
// (free text such as a reason made from a joined error).
func checkTextAllow(field, s string, required bool, limit int, multiline bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%w: %s is missing", ErrMalformed, field)
		}
		return nil
	}
	if len(s) > limit {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrMalformed, field, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, field)
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s holds control character %#x", ErrMalformed, field, r)
		}
	}
	return nil
}

func checkDevice(s string) error {
	if err := ValidID(s); err != nil {
		return fmt.Errorf("%w: device: %w", ErrMalformed, err)
	}
	return nil
}

func checkNonNegative(field string, v int64) error {
	if v < 0 {
		return fmt.Errorf("%w: %s is negative (%d)", ErrMalformed, field, v)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Check reports whether n is a notice this contract accepts.
func (n Notice) Check() error {
	return firstErr(
		checkText("release", n.Release, true, maxName),
		checkText("manifest", n.Manifest, true, maxTarget),
		checkNonNegative("time", n.Time),
		checkText("notice ID", n.ID, false, maxName),
	)
}

// Check reports whether s is a status this contract accepts.
func (s Status) Check() error {
	if err := firstErr(
		checkText("event ID", s.EventID, true, maxName),
		checkDevice(s.Device),
		checkNonNegative("time", s.Time),
		checkText("release", s.Release, false, maxName),
		checkTextAllow("reason", s.Reason, false, maxReason, true),
		checkText("slot", s.Slot, false, maxName),
		checkNonNegative("done", s.Done),
		checkNonNegative("total", s.Total),
		checkText("agent version", s.AgentVersion, false, maxName),
		checkText("installed", s.Installed, false, maxName),
	); err != nil {
		return err
	}
	if !s.State.Valid() {
		return fmt.Errorf("%w: state %q is not a known state", ErrMalformed, s.State)
	}
	switch s.Path {
	case "", PathAB, PathLive:
	default:
		return fmt.Errorf("%w: path %q is not %q, %q or empty", ErrMalformed, s.Path, PathAB, PathLive)
	}
	return nil
}

// Check reports whether t is telemetry this contract accepts.
func (t Telemetry) Check() error {
	errs := []error{
		checkDevice(t.Device),
		checkNonNegative("time", t.Time),
		checkNonNegative("uptime", t.Uptime),
		checkText("slot", t.Slot, false, maxName),
		checkText("installed", t.Installed, false, maxName),
		checkText("agent version", t.AgentVersion, false, maxName),
		checkNonNegative("memory total", t.MemTotal),
		checkNonNegative("memory available", t.MemAvailable),
		checkText("kernel", t.Kernel, false, maxName),
		checkNonNegative("agent RSS", t.AgentRSS),
		checkLen("load", len(t.Load), 3),
		checkLen("disks", len(t.Disks), maxTelemetryList),
		checkLen("thermal zones", len(t.Thermal), maxTelemetryList),
		checkLen("kernel patches", len(t.KernelPatches), maxTelemetryList),
		checkLen("user patches", len(t.UserPatches), maxTelemetryList),
	}
	for _, d := range t.Disks {
		errs = append(errs, checkText("disk mount", d.Mount, true, maxName),
			checkNonNegative("disk total", d.Total), checkNonNegative("disk free", d.Free))
	}
	for _, z := range t.Thermal {
		errs = append(errs, checkText("thermal zone", z.Name, true, maxName))
	}
	for _, p := range t.KernelPatches {
		errs = append(errs, checkText("kernel patch", p, true, maxName))
	}
	for _, p := range t.UserPatches {
		errs = append(errs, checkText("user patch", p, true, maxName))
	}
	if o := t.LastUpdate; o != nil {
		errs = append(errs, checkText("last update release", o.Release, false, maxName),
			checkTextAllow("last update reason", o.Reason, false, maxShortReason, true))
		if !o.State.Valid() {
			errs = append(errs, fmt.Errorf("%w: last update state %q is not a known state", ErrMalformed, o.State))
		}
	}
	if h := t.Health; h != nil {
		errs = append(errs, checkTextAllow("health reason", h.Reason, false, maxShortReason, true),
			checkNonNegative("health time", h.Time))
	}
	return firstErr(errs...)
}

func checkLen(field string, n, limit int) error {
	if n > limit {
		return fmt.Errorf("%w: %s has %d entries, limit %d", ErrMalformed, field, n, limit)
	}
	return nil
}

// EncodeNotice checks n and encodes it deterministically.
func EncodeNotice(n Notice) ([]byte, error) {
	if err := n.Check(); err != nil {
		return nil, fmt.Errorf("encode notice: %w", err)
	}
	return encode(n)
}

// DecodeNotice strictly decodes and checks a notice.
func DecodeNotice(data []byte) (Notice, error) {
	var n Notice
	if err := decodeMap(data, keyIn(1, 4), &n); err != nil {
		return Notice{}, fmt.Errorf("decode notice: %w", err)
	}
	if err := n.Check(); err != nil {
		return Notice{}, fmt.Errorf("decode notice: %w", err)
	}
	return n, nil
}

// EncodeStatus checks s and encodes it deterministically.
func EncodeStatus(s Status) ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	return encode(s)
}

// DecodeStatus strictly decodes and checks a status.
func DecodeStatus(data []byte) (Status, error) {
	var s Status
	if err := decodeMap(data, keyIn(1, 13), &s); err != nil {
		return Status{}, fmt.Errorf("decode status: %w", err)
	}
	if err := s.Check(); err != nil {
		return Status{}, fmt.Errorf("decode status: %w", err)
	}
	return s, nil
}

// EncodeTelemetry checks t and encodes it deterministically.
func EncodeTelemetry(t Telemetry) ([]byte, error) {
	if err := t.Check(); err != nil {
		return nil, fmt.Errorf("encode telemetry: %w", err)
	}
	b, err := encode(t)
	if err == nil && len(b) > MaxTelemetry {
		err = fmt.Errorf("%w: telemetry is %d bytes, limit %d", ErrTooLarge, len(b), MaxTelemetry)
	}
	if err != nil {
		return nil, fmt.Errorf("encode telemetry: %w", err)
	}
	return b, nil
}

// DecodeTelemetry strictly decodes and checks telemetry.
func DecodeTelemetry(data []byte) (Telemetry, error) {
	var t Telemetry
	if len(data) > MaxTelemetry {
		return Telemetry{}, fmt.Errorf("decode telemetry: %w: %d bytes, limit %d", ErrTooLarge, len(data), MaxTelemetry)
	}
	if err := decodeMap(data, keyIn(1, 6), &t); err != nil {
		return Telemetry{}, fmt.Errorf("decode telemetry: %w", err)
	}
	if err := t.Check(); err != nil {
		return Telemetry{}, fmt.Errorf("decode telemetry: %w", err)
	}
	return t, nil
}

// CBOR simple values false and true: the whole online payload.
const (
	cborFalse = 0xf4
	cborTrue  = 0xf5
)

// EncodeOnline encodes the online flag as a one-byte CBOR bool.
func EncodeOnline(online bool) []byte {
	if online {
		return []byte{cborTrue}
	}
	return []byte{cborFalse}
}

// DecodeOnline decodes the online flag; anything but a lone CBOR bool is
// refused.
func DecodeOnline(data []byte) (bool, error) {
	if len(data) > MaxPayload {
		return false, fmt.Errorf("decode online: %w: %d bytes", ErrTooLarge, len(data))
	}
	if len(data) == 1 {
		switch data[0] {
		case cborTrue:
			return true, nil
		case cborFalse:
			return false, nil
		}
	}
	return false, fmt.Errorf("decode online: %w: want a single CBOR bool, got %d bytes", ErrMalformed, len(data))
}

// NewNoticeID returns a new random notice ID (Notice.ID), as the fleet
// issues one for every notify.
func NewNoticeID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
