package transport

import (
	"errors"
	"fmt"
	"strings"
)

// Prefix starts every graft topic; the version in it changes only with an
// incompatible wire change.
const Prefix = "graft/v1/"

// MaxPayload is the largest message payload either side accepts.
const MaxPayload = 64 << 10

// maxIDLen is the longest device ID or group name.
const maxIDLen = 64

// ErrInvalidID reports a device ID or group name that ValidID refuses.
var ErrInvalidID = errors.New("transport: invalid device ID or group name")

// ValidID checks a device ID or group name: 1 to 64 characters from
// [A-Za-z0-9._-]. That excludes the MQTT wildcards '+' and '#', the level
// separator '/', and the names "." and ".." that would confuse file paths.
func ValidID(s string) error {
	if len(s) == 0 || len(s) > maxIDLen {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrInvalidID, len(s), maxIDLen)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%w: %q", ErrInvalidID, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: byte %#x at %d", ErrInvalidID, c, i)
		}
	}
	return nil
}

// Topic kinds, the last level of a device topic.
const (
	KindNotify    = "notify"
	KindStatus    = "status"
	KindTelemetry = "telemetry"
	KindOnline    = "online"
)

// The topic functions do not validate their argument: check it with
// ValidID first (a name with '/', '+' or '#' would build another topic or
// a wildcard filter).

// NotifyTopic is where the fleet publishes (retained) release notices for
// one device.
func NotifyTopic(device string) string { return devTopic(device, KindNotify) }

// GroupNotifyTopic is where the fleet publishes release notices for every
// device of a group.
func GroupNotifyTopic(group string) string { return Prefix + "group/" + group + "/" + KindNotify }

// StatusTopic is where a device publishes (retained) its state changes.
func StatusTopic(device string) string { return devTopic(device, KindStatus) }

// TelemetryTopic is where a device publishes periodic health and inventory.
func TelemetryTopic(device string) string { return devTopic(device, KindTelemetry) }

// OnlineTopic carries a device's retained online flag; false is its will.
func OnlineTopic(device string) string { return devTopic(device, KindOnline) }

func devTopic(device, kind string) string { return Prefix + "dev/" + device + "/" + kind }

// DeviceFilter is the subscription filter matching one kind of device
// topic for every device, e.g. "graft/v1/dev/+/status" for KindStatus.
func DeviceFilter(kind string) string { return Prefix + "dev/+/" + kind }

// ParseDeviceTopic splits a device topic into its device ID and kind. It
// reports false for anything that is not a graft device topic with a valid
// ID and a known kind.
func ParseDeviceTopic(topic string) (device, kind string, ok bool) {
	rest, found := strings.CutPrefix(topic, Prefix+"dev/")
	if !found {
		return "", "", false
	}
	device, kind, found = strings.Cut(rest, "/")
	if !found || ValidID(device) != nil {
		return "", "", false
	}
	switch kind {
	case KindNotify, KindStatus, KindTelemetry, KindOnline, KindInventory:
		return device, kind, true
	}
	return "", "", false
}
