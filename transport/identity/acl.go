package identity

import (
	"strings"

	"github.com/graft-dev/graft/transport"
)

// Access is what a client wants to do with a topic.
type Access int

// Accesses.
const (
	// Subscribe: subscribe with a filter, or receive a message published
	// on a topic.
	Subscribe Access = iota + 1
	// Publish: publish on a topic (a will included).
	Publish
)

func (a Access) String() string {
	switch a {
	case Subscribe:
		return "subscribe"
	case Publish:
		return "publish"
	}
	return "access(?)"
}

// Allowed is the fleet's access rule, the one brokers enforce (graft-fleet
// serve calls it; the mosquitto and EMQX configurations written by
// graft-fleet broker-config express the same table, docs/security.md):
//
//   - a device subscribes only to its own notify topic and to group notify
//     topics (the exact topics, no wildcards), and publishes only its own
//     status, telemetry, online and inventory topics (transport.ReportKinds);
//   - an admin operator publishes (and clears) notices on any device's or
//     group's notify topic and subscribes to any filter under
//     transport.Prefix;
//   - a viewer operator subscribes to the devices' report topics
//     (transport.ReportKinds), for one device or all ("+"), and publishes
//     nothing.
//
// Anything else, and any invalid identity, is refused. topic is a topic
// name for Publish and a topic name or filter for Subscribe.
func Allowed(id Identity, topic string, a Access) bool {
	if id.Check() != nil {
		return false
	}
	switch id.Kind {
	case Device:
		if a == Publish {
			dev, kind, ok := transport.ParseDeviceTopic(topic)
			return ok && dev == id.Name && kind != transport.KindNotify
		}
		if a == Subscribe {
			return topic == transport.NotifyTopic(id.Name) || isGroupNotify(topic)
		}
	case Operator:
		switch {
		case id.Role == RoleAdmin && a == Publish:
			dev, kind, ok := transport.ParseDeviceTopic(topic)
			return ok && dev != "" && kind == transport.KindNotify || isGroupNotify(topic)
		case id.Role == RoleAdmin && a == Subscribe:
			return strings.HasPrefix(topic, transport.Prefix)
		case id.Role == RoleViewer && a == Subscribe:
			return isDeviceReport(topic)
		}
	}
	return false
}

// isGroupNotify reports whether topic is graft/v1/group/G/notify for a
// valid group name G.
func isGroupNotify(topic string) bool {
	rest, ok := strings.CutPrefix(topic, transport.Prefix+"group/")
	if !ok {
		return false
	}
	g, ok := strings.CutSuffix(rest, "/"+transport.KindNotify)
	return ok && transport.ValidID(g) == nil
}

// isDeviceReport reports whether filter is a device's (or, with "+",
// every device's) status, telemetry or online topic.
func isDeviceReport(filter string) bool {
	rest, ok := strings.CutPrefix(filter, transport.Prefix+"dev/")
	if !ok {
		return false
	}
	dev, kind, ok := strings.Cut(rest, "/")
	if !ok || (dev != "+" && transport.ValidID(dev) != nil) {
		return false
	}
	switch kind {
	case transport.KindStatus, transport.KindTelemetry, transport.KindOnline, transport.KindInventory:
		return true
	}
	return false
}
