package transport

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func fullTelemetry() Telemetry {
	return Telemetry{
		Device: "dev-1", Time: 9, Uptime: 100, Slot: "A", Installed: "v1", AgentVersion: "0.1.0",
		Seq: 42, Load: []uint64{12, 30, 5}, MemTotal: 512 << 20, MemAvailable: 300 << 20,
		Disks:         []Disk{{Mount: "/var/lib/graft", Total: 1 << 30, Free: 1 << 29}, {Mount: "slot:B", Total: 1 << 28}},
		Thermal:       []Zone{{Name: "cpu-thermal", Milli: 48250}},
		Kernel:        "6.1.0-graft",
		BootCount:     3,
		KernelPatches: []string{"livepatch_fix"},
		UserPatches:   []string{"libfoo-cve"},
		AgentRSS:      6 << 20,
		Reconnects:    2,
		LastUpdate:    &Outcome{Release: "v2", State: StateRolledBack, Reason: "health: broker\nunreachable"},
		Health:        &Check{OK: true, Time: 8},
		Dropped:       1,
	}
}

func TestTelemetryRoundTrip(t *testing.T) {
	tm := fullTelemetry()
	b, err := EncodeTelemetry(tm)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeTelemetry(b)
	if err != nil || !reflect.DeepEqual(got, tm) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, tm)
	}
}

// A fleet that knows only keys 1 to 6 still reads a new report: every new
// field is an extension key.
func TestTelemetryExtensionsCompatible(t *testing.T) {
	b, err := EncodeTelemetry(fullTelemetry())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[uint64]cbor.RawMessage
	if err := cbor.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for k := range raw {
		if k > 6 && k < FirstExtensionKey {
			t.Errorf("key %d is below the extension range: an older fleet refuses it", k)
		}
	}
	var old struct {
		Device string `cbor:"1,keyasint"`
		Uptime int64  `cbor:"3,keyasint"`
	}
	if err := decodeMap(b, keyIn(1, 6), &old); err != nil || old.Device != "dev-1" || old.Uptime != 100 {
		t.Fatalf("the first contract's decoder: %+v, %v", old, err)
	}
}

func TestTelemetryBounds(t *testing.T) {
	for name, mut := range map[string]func(*Telemetry){
		"too many disks":  func(t *Telemetry) { t.Disks = make([]Disk, maxTelemetryList+1) },
		"unnamed disk":    func(t *Telemetry) { t.Disks = []Disk{{Total: 1}} },
		"four loads":      func(t *Telemetry) { t.Load = []uint64{1, 2, 3, 4} },
		"bad state":       func(t *Telemetry) { t.LastUpdate = &Outcome{State: "exploded"} },
		"long reason":     func(t *Telemetry) { t.Health = &Check{Reason: strings.Repeat("x", maxShortReason+1)} },
		"control in zone": func(t *Telemetry) { t.Thermal = []Zone{{Name: "a\x1bb"}} },
		"negative rss":    func(t *Telemetry) { t.AgentRSS = -1 },
	} {
		tm := fullTelemetry()
		mut(&tm)
		if _, err := EncodeTelemetry(tm); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// The largest report the checks allow still fits the bound.
	long := strings.Repeat("x", maxName)
	big := fullTelemetry()
	big.Disks, big.Thermal, big.KernelPatches, big.UserPatches = nil, nil, nil, nil
	for range maxTelemetryList {
		big.Disks = append(big.Disks, Disk{Mount: long, Total: 1 << 62, Free: 1 << 62})
		big.Thermal = append(big.Thermal, Zone{Name: long, Milli: -1 << 62})
		big.KernelPatches = append(big.KernelPatches, long)
		big.UserPatches = append(big.UserPatches, long)
	}
	big.Kernel, big.Slot, big.Installed, big.AgentVersion = long, long, long, long
	big.LastUpdate = &Outcome{Release: long, State: StateFailed, Reason: strings.Repeat("y", maxShortReason)}
	big.Health = &Check{Reason: strings.Repeat("y", maxShortReason)}
	b, err := EncodeTelemetry(big)
	if err != nil {
		t.Fatalf("largest valid report: %v", err)
	}
	t.Logf("largest valid report: %d bytes (limit %d)", len(b), MaxTelemetry)
	if _, err := DecodeTelemetry(make([]byte, MaxTelemetry+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
}
