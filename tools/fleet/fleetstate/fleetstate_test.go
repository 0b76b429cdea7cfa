package fleetstate_test

import (
	"errors"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/fleetstate"
	"github.com/graft-dev/graft/transport"
)

func status(t testing.TB, s transport.Status) []byte {
	t.Helper()
	b, err := transport.EncodeStatus(s)
	if err != nil {
		t.Fatalf("EncodeStatus: %v", err)
	}
	return b
}

func telemetry(t testing.TB, tel transport.Telemetry) []byte {
	t.Helper()
	b, err := transport.EncodeTelemetry(tel)
	if err != nil {
		t.Fatalf("EncodeTelemetry: %v", err)
	}
	return b
}

type msg struct {
	topic   string
	payload []byte
}

func TestApplySequence(t *testing.T) {
	downloading := transport.Status{EventID: "e1", Device: "d1", Time: 1000, State: transport.StateDownloading,
		Release: "v2", Sequence: 2, Path: transport.PathAB, Done: 10, Total: 100, Slot: "A", Installed: "v1", AgentVersion: "1.0.0"}
	committed := transport.Status{EventID: "e2", Device: "d1", Time: 3000, State: transport.StateCommitted,
		Release: "v2", Sequence: 2, Path: transport.PathAB, Slot: "B", Installed: "v2"}
	late := transport.Status{EventID: "e0", Device: "d1", Time: 500, State: transport.StateIdle}

	tests := []struct {
		name      string
		msgs      []msg
		wantFresh []bool
		want      fleetstate.Device
	}{
		{
			name:      "status then online",
			msgs:      []msg{{transport.StatusTopic("d1"), status(t, downloading)}, {transport.OnlineTopic("d1"), transport.EncodeOnline(true)}},
			wantFresh: []bool{true, true},
			want: fleetstate.Device{ID: "d1", Online: ptr(true), State: transport.StateDownloading, Release: "v2", Sequence: 2,
				Installed: "v1", Slot: "A", Path: "ab", Done: 10, Total: 100, AgentVersion: "1.0.0", EventID: "e1", Updated: 1000},
		},
		{
			name: "redelivered event applied once",
			msgs: []msg{{transport.StatusTopic("d1"), status(t, downloading)}, {transport.StatusTopic("d1"), status(t, committed)},
				{transport.StatusTopic("d1"), status(t, downloading)}},
			wantFresh: []bool{true, true, false},
			want: fleetstate.Device{ID: "d1", State: transport.StateCommitted, Release: "v2", Sequence: 2,
				Installed: "v2", Slot: "B", Path: "ab", AgentVersion: "1.0.0", EventID: "e2", Updated: 3000},
		},
		{
			name:      "late older event ignored",
			msgs:      []msg{{transport.StatusTopic("d1"), status(t, committed)}, {transport.StatusTopic("d1"), status(t, late)}},
			wantFresh: []bool{true, false},
			want: fleetstate.Device{ID: "d1", State: transport.StateCommitted, Release: "v2", Sequence: 2,
				Installed: "v2", Slot: "B", Path: "ab", EventID: "e2", Updated: 3000},
		},
		{
			name: "offline will, same flag twice",
			msgs: []msg{{transport.OnlineTopic("d1"), transport.EncodeOnline(true)}, {transport.OnlineTopic("d1"), transport.EncodeOnline(false)},
				{transport.OnlineTopic("d1"), transport.EncodeOnline(false)}},
			wantFresh: []bool{true, true, false},
			want:      fleetstate.Device{ID: "d1", Online: ptr(false)},
		},
		{
			name: "telemetry fills inventory",
			msgs: []msg{{transport.TelemetryTopic("d1"), telemetry(t, transport.Telemetry{Device: "d1", Time: 2000, Uptime: 60,
				Slot: "B", Installed: "v2", AgentVersion: "1.1.0"})}},
			wantFresh: []bool{true},
			want:      fleetstate.Device{ID: "d1", Uptime: 60, Slot: "B", Installed: "v2", AgentVersion: "1.1.0", Updated: 2000},
		},
		{
			name:      "cleared retained status",
			msgs:      []msg{{transport.StatusTopic("d1"), status(t, committed)}, {transport.StatusTopic("d1"), nil}},
			wantFresh: []bool{true, false},
			want: fleetstate.Device{ID: "d1", State: transport.StateCommitted, Release: "v2", Sequence: 2,
				Installed: "v2", Slot: "B", Path: "ab", EventID: "e2", Updated: 3000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := fleetstate.New(0)
			for i, m := range tt.msgs {
				ev, fresh, err := tab.Apply(m.topic, m.payload)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if ev.Device != "d1" || fresh != tt.wantFresh[i] {
					t.Fatalf("message %d: device %q fresh %v, want fresh %v", i, ev.Device, fresh, tt.wantFresh[i])
				}
			}
			got, ok := tab.Get("d1")
			if !ok {
				t.Fatal("no row for d1")
			}
			if !equal(got, tt.want) {
				t.Fatalf("row\n got %+v online %v\nwant %+v online %v", got, str(got.Online), tt.want, str(tt.want.Online))
			}
		})
	}
}

func TestApplyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		topic   string
		payload []byte
		want    error
	}{
		{name: "notify topic", topic: transport.NotifyTopic("d1"), payload: []byte{0xa0}, want: fleetstate.ErrNotDeviceTopic},
		{name: "foreign topic", topic: "other/d1/status", payload: []byte{0xa0}, want: fleetstate.ErrNotDeviceTopic},
		{name: "bad id", topic: "graft/v1/dev/a+b/status", payload: []byte{0xa0}, want: fleetstate.ErrNotDeviceTopic},
		{name: "status for another device", topic: transport.StatusTopic("d1"),
			payload: status(t, transport.Status{EventID: "x", Device: "d2", State: transport.StateIdle}), want: fleetstate.ErrDeviceMismatch},
		{name: "telemetry for another device", topic: transport.TelemetryTopic("d1"),
			payload: telemetry(t, transport.Telemetry{Device: "d2"}), want: fleetstate.ErrDeviceMismatch},
		{name: "garbage status", topic: transport.StatusTopic("d1"), payload: []byte{0xff, 0x00}, want: transport.ErrMalformed},
		{name: "online not a bool", topic: transport.OnlineTopic("d1"), payload: []byte("true"), want: transport.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := fleetstate.New(0)
			_, _, err := tab.Apply(tt.topic, tt.payload)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if n := len(tab.Devices()); n != 0 {
				t.Fatalf("refused message left %d rows", n)
			}
		})
	}
}

func TestForgetsOldestEventIDs(t *testing.T) {
	tab := fleetstate.New(2)
	apply := func(id string, ms int64) bool {
		t.Helper()
		_, fresh, err := tab.Apply(transport.StatusTopic("d1"),
			status(t, transport.Status{EventID: id, Device: "d1", State: transport.StateIdle}))
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	for _, id := range []string{"a", "b", "c"} {
		if !apply(id, 0) {
			t.Fatalf("%s not fresh", id)
		}
	}
	if apply("c", 0) || apply("b", 0) {
		t.Fatal("remembered IDs applied twice")
	}
	if !apply("a", 0) {
		t.Fatal("forgotten ID a still refused; memory is not bounded")
	}
}

func TestDevicesSorted(t *testing.T) {
	tab := fleetstate.New(0)
	for _, id := range []string{"c", "a", "b"} {
		if _, _, err := tab.Apply(transport.OnlineTopic(id), transport.EncodeOnline(true)); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, d := range tab.Devices() {
		ids = append(ids, d.ID)
	}
	if len(ids) != 3 || ids[0] != "a" || ids[1] != "b" || ids[2] != "c" {
		t.Fatalf("order %v", ids)
	}
}

// FuzzApply: no payload on any device topic panics, and a refused message
// leaves no row behind.
func FuzzApply(f *testing.F) {
	f.Add(transport.StatusTopic("d1"), status(f, transport.Status{EventID: "e", Device: "d1", State: transport.StateIdle}))
	f.Add(transport.TelemetryTopic("d1"), telemetry(f, transport.Telemetry{Device: "d1", Uptime: 3}))
	f.Add(transport.OnlineTopic("d1"), transport.EncodeOnline(true))
	f.Add("graft/v1/dev/d1/status", []byte{0xa1, 0x01, 0x61, 0x78})
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		tab := fleetstate.New(0)
		_, _, err := tab.Apply(topic, payload)
		if err != nil && len(tab.Devices()) != 0 {
			t.Fatalf("refused message left a row: %v", err)
		}
	})
}

func ptr(b bool) *bool { return &b }

func str(b *bool) string {
	if b == nil {
		return "nil"
	}
	if *b {
		return "true"
	}
	return "false"
}

func equal(a, b fleetstate.Device) bool {
	if str(a.Online) != str(b.Online) {
		return false
	}
	a.Online, b.Online = nil, nil
	// the report itself is checked where it matters (TestTelemetryOrderAcrossClocks)
	a.Telemetry, b.Telemetry = nil, nil
	return a == b
}

// TestStatusOrderAcrossClocks: a device's statuses are ordered by its
// event counter, never by its clock. A board without an RTC reports 1970
// after a power cut: its later statuses still apply, and a late
// redelivery of an earlier one (with a later clock) does not.
func TestStatusOrderAcrossClocks(t *testing.T) {
	const day = 24 * 3600 * 1000
	before := transport.Status{EventID: "e1", Device: "d1", Seq: 41, Time: 1_796_000_000_000, State: transport.StateRebooting, Release: "v2"}
	after := transport.Status{EventID: "e2", Device: "d1", Seq: 1025, Time: 7_000, State: transport.StateCommitted, Release: "v2", Installed: "v2"}
	idle := transport.Status{EventID: "e3", Device: "d1", Seq: 1026, Time: day, State: transport.StateIdle, Installed: "v2"}
	tb := fleetstate.New(0)
	for i, s := range []transport.Status{before, after, idle, before} {
		_, fresh, err := tb.Apply(transport.StatusTopic("d1"), status(t, s))
		if err != nil {
			t.Fatal(err)
		}
		if want := i < 3; fresh != want {
			t.Errorf("status %d (seq %d, time %d): fresh %v, want %v", i, s.Seq, s.Time, fresh, want)
		}
	}
	if d, _ := tb.Get("d1"); d.State != transport.StateIdle || d.EventID != "e3" || d.Installed != "v2" {
		t.Errorf("row %+v: want the device's newest status (idle, v2)", d)
	}
	// A late copy of an older event with the same clock reading is
	// dropped too (e2 again under another event ID).
	late := after
	late.EventID, late.State = "e2b", transport.StateVerifying
	if _, fresh, _ := tb.Apply(transport.StatusTopic("d1"), status(t, late)); fresh {
		t.Error("an older event by the counter was applied")
	}
}

// Telemetry is ordered by the device's event counter too: a board without
// an RTC reports 1970 after a power cut, and its reports from then on are
// still the newest (before, the row kept the pre-cut report); a late copy
// of an older report leaves the row alone.
func TestTelemetryOrderAcrossClocks(t *testing.T) {
	tb := fleetstate.New(0)
	apply := func(tel transport.Telemetry) {
		t.Helper()
		if _, _, err := tb.Apply(transport.TelemetryTopic("d1"), telemetry(t, tel)); err != nil {
			t.Fatal(err)
		}
	}
	apply(transport.Telemetry{Device: "d1", Seq: 40, Time: 1_796_000_000_000, Uptime: 900, Installed: "v1"})
	apply(transport.Telemetry{Device: "d1", Seq: 1025, Time: 7_000, Uptime: 7, Installed: "v2"})
	if d, _ := tb.Get("d1"); d.Uptime != 7 || d.Installed != "v2" || d.Telemetry == nil || d.Telemetry.Seq != 1025 {
		t.Fatalf("after the power cut: %+v", d)
	}
	apply(transport.Telemetry{Device: "d1", Seq: 40, Time: 1_796_000_000_000, Uptime: 900, Installed: "v1"})
	if d, _ := tb.Get("d1"); d.Uptime != 7 || d.Installed != "v2" {
		t.Fatalf("a late older report was applied: %+v", d)
	}
	// A status later by the counter than a report makes the report old.
	if _, _, err := tb.Apply(transport.StatusTopic("d1"), status(t, transport.Status{EventID: "e", Device: "d1", Seq: 2000, State: transport.StateIdle, Installed: "v3"})); err != nil {
		t.Fatal(err)
	}
	apply(transport.Telemetry{Device: "d1", Seq: 1500, Uptime: 8, Installed: "v2"})
	if d, _ := tb.Get("d1"); d.Installed != "v3" {
		t.Fatalf("a report older than the status overrode it: %+v", d)
	}
}
