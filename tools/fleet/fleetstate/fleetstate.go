package fleetstate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/graft-dev/graft/transport"
)

// Errors returned by Apply; match them with errors.Is.
var (
	// ErrNotDeviceTopic: the topic is not a device's status, online or
	// telemetry topic.
	ErrNotDeviceTopic = errors.New("fleetstate: not a device status, online or telemetry topic")
	// ErrDeviceMismatch: the payload names another device than its topic.
	ErrDeviceMismatch = errors.New("fleetstate: payload device differs from topic device")
)

// DefaultRemember is how many status event IDs a Table remembers for
// de-duplication.
const DefaultRemember = 10000

// Device is one row of the table: the latest known state of a device.
type Device struct {
	ID           string          `json:"device"`
	Online       *bool           `json:"online"` // nil: never heard
	State        transport.State `json:"state,omitempty"`
	Release      string          `json:"release,omitempty"`   // release the last status is about
	Sequence     uint64          `json:"sequence,omitempty"`  // its manifest sequence
	Installed    string          `json:"installed,omitempty"` // release running now
	Slot         string          `json:"slot,omitempty"`      // booted slot
	Path         string          `json:"path,omitempty"`      // ab or live
	Reason       string          `json:"reason,omitempty"`
	Done         int64           `json:"done,omitempty"`
	Total        int64           `json:"total,omitempty"`
	AgentVersion string          `json:"agent_version,omitempty"`
	Uptime       int64           `json:"uptime_s,omitempty"` // from telemetry
	// Telemetry is the newest report (by the device's event counter).
	Telemetry *transport.Telemetry `json:"telemetry,omitempty"`
	EventID   string               `json:"event_id,omitempty"` // last status applied
	Updated   int64                `json:"updated_ms,omitempty"`
	// Updated is the device's own time (unix ms) of the newest status or
	// telemetry applied; 0 if none carried a time.
}

// row is a Device plus what the table needs to order events.
type row struct {
	Device
	statusTime int64  // device time of the newest status applied
	statusSeq  uint64 // device event counter of the newest status applied; 0: none counted
	// telemetrySeq is the event counter of the newest report applied.
	telemetrySeq uint64
}

// Event is one decoded message.
type Event struct {
	Device    string              `json:"device"`
	Kind      string              `json:"kind"` // transport.KindStatus, KindOnline or KindTelemetry
	Status    transport.Status    `json:"-"`    // when Kind is KindStatus
	Online    bool                `json:"-"`    // when Kind is KindOnline
	Telemetry transport.Telemetry `json:"-"`    // when Kind is KindTelemetry
	Inventory transport.Inventory `json:"-"`    // when Kind is KindInventory
	Cleared   bool                `json:"-"`    // an empty payload: a retained message was deleted
}

// Table is the fleet's device table. The zero value is not usable; call
// New. A Table is not safe for concurrent use.
type Table struct {
	devices  map[string]*row
	seen     map[string]struct{}
	order    []string // event IDs, oldest first, for forgetting
	remember int
}

// New returns an empty table remembering up to remember event IDs
// (DefaultRemember if remember <= 0).
func New(remember int) *Table {
	if remember <= 0 {
		remember = DefaultRemember
	}
	return &Table{devices: make(map[string]*row), seen: make(map[string]struct{}), remember: remember}
}

// Apply decodes a message that arrived on topic and folds it into the
// table. fresh is false when the message changed nothing: a status whose
// EventID was already applied, a status older than the one the row holds
// (by the device's event counter, Status.Seq; by device time only when
// neither carries one), or a cleared retained message. A malformed payload or
// a foreign topic returns an error and leaves the table unchanged.
func (t *Table) Apply(topic string, payload []byte) (ev Event, fresh bool, err error) {
	ev, err = Decode(topic, payload)
	if err != nil || ev.Cleared {
		return ev, false, err
	}
	switch ev.Kind {
	case transport.KindStatus:
		return ev, t.applyStatus(ev.Status), nil
	case transport.KindInventory:
		return ev, false, nil // the table shows no inventory
	case transport.KindOnline:
		d := t.row(ev.Device)
		fresh = d.Online == nil || *d.Online != ev.Online
		on := ev.Online
		d.Online = &on
		return ev, fresh, nil
	default: // KindTelemetry
		t.applyTelemetry(ev.Telemetry)
		return ev, true, nil
	}
}

// Decode decodes a message that arrived on topic: a status, online flag
// or telemetry, checked against the contract and against the device its
// topic names. An empty payload is a cleared retained message
// (ev.Cleared).
func Decode(topic string, payload []byte) (ev Event, err error) {
	device, kind, ok := transport.ParseDeviceTopic(topic)
	if !ok || kind == transport.KindNotify {
		return Event{}, fmt.Errorf("%w: %q", ErrNotDeviceTopic, topic)
	}
	ev = Event{Device: device, Kind: kind}
	if len(payload) == 0 {
		ev.Cleared = true
		return ev, nil
	}
	switch kind {
	case transport.KindStatus:
		s, err := transport.DecodeStatus(payload)
		if err != nil {
			return Event{}, fmt.Errorf("fleetstate: %s: %w", topic, err)
		}
		if s.Device != device {
			return Event{}, fmt.Errorf("%w: topic %q, payload %q", ErrDeviceMismatch, device, s.Device)
		}
		ev.Status = s
	case transport.KindInventory:
		inv, err := transport.DecodeInventory(payload)
		if err != nil {
			return Event{}, fmt.Errorf("fleetstate: %s: %w", topic, err)
		}
		if inv.Device != device {
			return Event{}, fmt.Errorf("%w: topic %q, payload %q", ErrDeviceMismatch, device, inv.Device)
		}
		ev.Inventory = inv
	case transport.KindOnline:
		on, err := transport.DecodeOnline(payload)
		if err != nil {
			return Event{}, fmt.Errorf("fleetstate: %s: %w", topic, err)
		}
		ev.Online = on
	default: // KindTelemetry
		tel, err := transport.DecodeTelemetry(payload)
		if err != nil {
			return Event{}, fmt.Errorf("fleetstate: %s: %w", topic, err)
		}
		if tel.Device != device {
			return Event{}, fmt.Errorf("%w: topic %q, payload %q", ErrDeviceMismatch, device, tel.Device)
		}
		ev.Telemetry = tel
	}
	return ev, nil
}

func (t *Table) applyStatus(s transport.Status) bool {
	if _, dup := t.seen[s.EventID]; dup {
		return false
	}
	t.remember1(s.EventID)
	d := t.row(s.Device)
	if older(s, d) {
		return false // an older event delivered late
	}
	d.statusTime = max(d.statusTime, s.Time)
	if s.Seq != 0 {
		d.statusSeq = s.Seq
	}
	d.State, d.Release, d.Sequence = s.State, s.Release, s.Sequence
	d.Path, d.Reason, d.Done, d.Total = s.Path, s.Reason, s.Done, s.Total
	d.EventID = s.EventID
	if s.Slot != "" {
		d.Slot = s.Slot
	}
	if s.Installed != "" {
		d.Installed = s.Installed
	}
	if s.AgentVersion != "" {
		d.AgentVersion = s.AgentVersion
	}
	d.Updated = max(d.Updated, s.Time)
	return true
}

// older reports whether status s is older than the newest one row d
// applied.
func older(s transport.Status, d *row) bool { return Older(s, d.statusSeq, d.statusTime) }

// Older reports whether status s is older than the newest status applied
// for its device, which carried event counter lastSeq (0: none) and
// device time lastTime. The device's event counter decides; a device's
// clock is trusted only between two statuses that both lack it (an older
// agent): a board without an RTC reports 1970 after a power cut, and its
// statuses from then on are newer all the same. The fleet's database
// orders by the same rule.
func Older(s transport.Status, lastSeq uint64, lastTime int64) bool {
	switch {
	case s.Seq != 0 && lastSeq != 0:
		return s.Seq < lastSeq
	case s.Seq != 0 || lastSeq != 0:
		return false // one side uncounted: an agent up- or downgrade; take it
	}
	return s.Time != 0 && s.Time < lastTime
}

func (t *Table) applyTelemetry(tel transport.Telemetry) {
	d := t.row(tel.Device)
	// The device's event counter orders reports and statuses alike (they
	// draw from one counter); its clock only between two uncounted ones.
	last := max(d.statusSeq, d.telemetrySeq)
	switch {
	case tel.Seq != 0 && last != 0:
		if tel.Seq < last {
			return // older than what the row shows; keep the newer facts
		}
	case tel.Seq != 0 || last != 0: // one side uncounted: an agent up- or downgrade; take it
	case tel.Time != 0 && tel.Time < d.Updated:
		return
	}
	d.telemetrySeq = max(d.telemetrySeq, tel.Seq)
	d.Uptime = tel.Uptime
	rep := tel
	d.Telemetry = &rep
	if tel.Slot != "" {
		d.Slot = tel.Slot
	}
	if tel.Installed != "" {
		d.Installed = tel.Installed
	}
	if tel.AgentVersion != "" {
		d.AgentVersion = tel.AgentVersion
	}
	d.Updated = max(d.Updated, tel.Time)
}

func (t *Table) remember1(id string) {
	t.seen[id] = struct{}{}
	t.order = append(t.order, id)
	if len(t.order) > t.remember {
		delete(t.seen, t.order[0])
		t.order = t.order[1:]
	}
}

func (t *Table) row(id string) *row {
	d, ok := t.devices[id]
	if !ok {
		d = &row{Device: Device{ID: id}}
		t.devices[id] = d
	}
	return d
}

// Get returns a copy of device id's row.
func (t *Table) Get(id string) (Device, bool) {
	d, ok := t.devices[id]
	if !ok {
		return Device{}, false
	}
	return d.Device.copy(), true
}

// Devices returns copies of all rows, sorted by device ID.
func (t *Table) Devices() []Device {
	out := make([]Device, 0, len(t.devices))
	for _, d := range t.devices {
		out = append(out, d.Device.copy())
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (d *Device) copy() Device {
	c := *d
	if d.Online != nil {
		on := *d.Online
		c.Online = &on
	}
	return c
}
