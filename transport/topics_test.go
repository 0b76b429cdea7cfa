package transport

import (
	"errors"
	"strings"
	"testing"
)

func TestTopics(t *testing.T) {
	tests := []struct{ got, want string }{
		{NotifyTopic("d1"), "graft/v1/dev/d1/notify"},
		{GroupNotifyTopic("canary"), "graft/v1/group/canary/notify"},
		{StatusTopic("d1"), "graft/v1/dev/d1/status"},
		{TelemetryTopic("d1"), "graft/v1/dev/d1/telemetry"},
		{OnlineTopic("d1"), "graft/v1/dev/d1/online"},
		{DeviceFilter(KindStatus), "graft/v1/dev/+/status"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("topic %q, want %q", tt.got, tt.want)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"dev-01", true},
		{"A.b_c-9", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"a/b", false},
		{"+", false},
		{"#", false},
		{"a b", false},
		{".", false},
		{"..", false},
		{"dév", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			err := ValidID(tt.id)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v, want ErrInvalidID", err)
			}
		})
	}
}

func TestParseDeviceTopic(t *testing.T) {
	tests := []struct {
		topic, device, kind string
		ok                  bool
	}{
		{StatusTopic("d1"), "d1", KindStatus, true},
		{OnlineTopic("d-2"), "d-2", KindOnline, true},
		{"graft/v1/dev/d1/other", "", "", false},
		{"graft/v1/dev/d1/status/x", "", "", false},
		{"graft/v1/dev/+/status", "", "", false},
		{"graft/v2/dev/d1/status", "", "", false},
		{GroupNotifyTopic("g"), "", "", false},
	}
	for _, tt := range tests {
		d, k, ok := ParseDeviceTopic(tt.topic)
		if d != tt.device || k != tt.kind || ok != tt.ok {
			t.Errorf("ParseDeviceTopic(%q) = %q, %q, %v", tt.topic, d, k, ok)
		}
	}
}
