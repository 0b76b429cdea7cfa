package config

import (
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// key is one "section.key" of the file: how to set it from text and how to
// write it back. set receives the value with surrounding blanks removed;
// first is false for the second and later lines of a repeatable key.
type key struct {
	name   string
	repeat bool
	set    func(c *Config, v string, first bool) error
	format func(c *Config) []string // nil: the key is not written
}

var keys = []key{
	{name: "device.id",
		set:    func(c *Config, v string, _ bool) error { return setName(&c.DeviceID, v) },
		format: func(c *Config) []string { return opt(c.DeviceID) }},
	{name: "device.board",
		set: func(c *Config, v string, _ bool) error {
			if v == BoardAuto {
				c.Board = v
				return nil
			}
			return setName(&c.Board, v)
		},
		format: func(c *Config) []string { return []string{c.Board} }},
	{name: "device.board_file",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.BoardFile, v) },
		format: func(c *Config) []string { return opt(c.BoardFile) }},
	{name: "device.class",
		set:    func(c *Config, v string, _ bool) error { return setName(&c.DeviceClass, v) },
		format: func(c *Config) []string { return opt(c.DeviceClass) }},
	{name: "device.groups",
		set:    func(c *Config, v string, _ bool) error { return setGroups(c, v) },
		format: func(c *Config) []string { return opt(strings.Join(c.Groups, ", ")) }},
	{name: "device.data_dir",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.DataDir, v) },
		format: func(c *Config) []string { return []string{c.DataDir} }},
	{name: "mqtt.broker",
		set:    func(c *Config, v string, _ bool) error { return setBroker(c, v) },
		format: func(c *Config) []string { return opt(c.Broker) }},
	{name: "mqtt.ca",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.CAFile, v) },
		format: func(c *Config) []string { return opt(c.CAFile) }},
	{name: "mqtt.cert",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.CertFile, v) },
		format: func(c *Config) []string { return opt(c.CertFile) }},
	{name: "mqtt.key",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.KeyFile, v) },
		format: func(c *Config) []string { return opt(c.KeyFile) }},
	{name: "mqtt.keepalive",
		set: func(c *Config, v string, _ bool) error {
			return setDuration(&c.KeepAlive, v, time.Second, MaxKeepAlive, true)
		},
		format: func(c *Config) []string { return []string{c.KeepAlive.String()} }},
	{name: "tuf.metadata_url",
		set:    func(c *Config, v string, _ bool) error { return setRepoURL(&c.MetadataURL, v) },
		format: func(c *Config) []string { return opt(c.MetadataURL) }},
	{name: "tuf.targets_url",
		set:    func(c *Config, v string, _ bool) error { return setRepoURL(&c.TargetsURL, v) },
		format: func(c *Config) []string { return opt(c.TargetsURL) }},
	{name: "tuf.stall_timeout",
		set: func(c *Config, v string, _ bool) error {
			return setDuration(&c.StallTimeout, v, time.Second, MaxStallTimeout, false)
		},
		format: func(c *Config) []string { return []string{c.StallTimeout.String()} }},
	{name: "health.timeout",
		set: func(c *Config, v string, _ bool) error {
			return setDuration(&c.HealthTimeout, v, time.Second, MaxHealthTimeout, false)
		},
		format: func(c *Config) []string { return []string{c.HealthTimeout.String()} }},
	{name: "health.checks", repeat: true,
		set:    setChecks,
		format: func(c *Config) []string { return c.HealthChecks }},
	{name: "update.policy",
		set:    func(c *Config, v string, _ bool) error { return setEnum(&c.Policy, v, Policies) },
		format: func(c *Config) []string { return []string{c.Policy} }},
	{name: "update.maintenance",
		set: func(c *Config, v string, _ bool) error {
			w, err := ParseWindow(v)
			if err != nil {
				return err
			}
			c.Maintenance = w
			return nil
		},
		format: func(c *Config) []string {
			if c.Maintenance.IsZero() {
				return nil
			}
			return []string{c.Maintenance.String()}
		}},
	{name: "update.transition_timeout",
		set: func(c *Config, v string, _ bool) error {
			return setDuration(&c.TransitionTimeout, v, time.Second, MaxTransitionTimeout, false)
		},
		format: func(c *Config) []string { return []string{c.TransitionTimeout.String()} }},
	{name: "log.level",
		set:    func(c *Config, v string, _ bool) error { return setEnum(&c.LogLevel, v, LogLevels) },
		format: func(c *Config) []string { return []string{c.LogLevel} }},
	{name: "telemetry.interval",
		set: func(c *Config, v string, _ bool) error {
			return setDuration(&c.TelemetryInterval, v, MinTelemetryInterval, MaxTelemetryInterval, true)
		},
		format: func(c *Config) []string { return []string{c.TelemetryInterval.String()} }},
	{name: "telemetry.queue",
		set: func(c *Config, v string, _ bool) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxTelemetryQueue {
				return bad("%q is not a whole number from 1 to %d", v, MaxTelemetryQueue)
			}
			c.TelemetryQueue = n
			return nil
		},
		format: func(c *Config) []string { return []string{strconv.Itoa(c.TelemetryQueue)} }},
	{name: "console.tty",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.Console.TTY, v) },
		format: func(c *Config) []string { return opt(c.Console.TTY) }},
	{name: "console.baud",
		set: func(c *Config, v string, _ bool) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1200 || n > 4000000 {
				return bad("baud %q is not a serial speed", v)
			}
			c.Console.Baud = n
			return nil
		},
		format: func(c *Config) []string {
			if c.Console.Baud == Default().Console.Baud {
				return nil
			}
			return []string{strconv.Itoa(c.Console.Baud)}
		}},
	{name: "console.guard",
		set: func(c *Config, v string, _ bool) error {
			switch v {
			case "on":
				c.Console.GuardOff = false
			case "off":
				c.Console.GuardOff = true
			default:
				return bad("guard %q: on or off", v)
			}
			return nil
		},
		format: func(c *Config) []string {
			if c.Console.GuardOff {
				return []string{"off"}
			}
			return nil
		}},
	{name: "console.operator_ca",
		set:    func(c *Config, v string, _ bool) error { return setPath(&c.Console.OperatorCA, v) },
		format: func(c *Config) []string { return opt(c.Console.OperatorCA) }},
}

// sections lists the section names in the order Encode writes them.
var sections = []string{"device", "mqtt", "tuf", "health", "update", "log", "telemetry", "console"}

func findKey(name string) (key, bool) {
	i := slices.IndexFunc(keys, func(k key) bool { return k.name == name })
	if i < 0 {
		return key{}, false
	}
	return keys[i], true
}

// opt writes a key only when it has a value.
func opt(v string) []string {
	if v == "" {
		return nil
	}
	return []string{v}
}

// validName: 1 to 64 of A-Z a-z 0-9 . _ - (a loop: a counted regexp
// costs the agent's package init and resident memory).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func setName(dst *string, v string) error {
	if !validName(v) {
		return bad("%q must be 1 to 64 of A-Z a-z 0-9 . _ -", v)
	}
	*dst = v
	return nil
}

func setPath(dst *string, v string) error {
	if !filepath.IsAbs(v) {
		return bad("%q is not an absolute path", v)
	}
	*dst = v
	return nil
}

const maxGroups = 32

func setGroups(c *Config, v string) error {
	var groups []string
	for g := range strings.SplitSeq(v, ",") {
		g = strings.TrimSpace(g)
		if !validName(g) {
			return bad("group %q must be 1 to 64 of A-Z a-z 0-9 . _ -", g)
		}
		if slices.Contains(groups, g) {
			return bad("group %q listed twice", g)
		}
		groups = append(groups, g)
	}
	if len(groups) > maxGroups {
		return bad("more than %d groups", maxGroups)
	}
	c.Groups = groups
	return nil
}

// BrokerSchemes are the URL schemes mqtt.broker accepts (those of
// paho.mqtt.golang).
var BrokerSchemes = []string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}

func setBroker(c *Config, v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return bad("%q is not a URL", v)
	}
	if !slices.Contains(BrokerSchemes, u.Scheme) {
		return bad("scheme %q is not one of %s", u.Scheme, strings.Join(BrokerSchemes, ", "))
	}
	if u.User != nil {
		return bad("credentials do not belong in the broker URL; use mqtt.cert and mqtt.key")
	}
	if u.Hostname() == "" {
		return bad("%q has no host", v)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return bad("%q needs a port, as in tcp://10.0.2.2:1883", v)
	}
	if u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Scheme != "ws" && u.Scheme != "wss") {
		return bad("%q has a path, query or fragment", v)
	}
	c.Broker = v
	return nil
}

func setRepoURL(dst *string, v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return bad("%q is not a URL", v)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Hostname() == "" {
			return bad("%q has no host", v)
		}
	case "file":
		if u.Host != "" || !filepath.IsAbs(u.Path) {
			return bad("%q: a file URL needs an absolute path, as in file:///var/lib/repo", v)
		}
	default:
		return bad("scheme %q is not http, https or file", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return bad("%q has credentials, a query or a fragment", v)
	}
	*dst = v
	return nil
}

func setDuration(dst *time.Duration, v string, lo, hi time.Duration, whole bool) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return bad("%q is not a duration such as 30s or 2m", v)
	}
	if d < lo || d > hi {
		return bad("%v is outside %v to %v", d, lo, hi)
	}
	if whole && d%time.Second != 0 {
		return bad("%v is not a whole number of seconds", d)
	}
	*dst = d
	return nil
}

func setEnum(dst *string, v string, allowed []string) error {
	if !slices.Contains(allowed, v) {
		return bad("%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	*dst = v
	return nil
}

const maxChecks = 32

// setChecks reads "broker, tuf, exec:command": names separated by commas,
// where an exec: item runs to the end of the line (a command may hold
// commas). The first checks line replaces the default list; later lines
// add to it.
func setChecks(c *Config, v string, first bool) error {
	var list []string
	if !first {
		list = slices.Clone(c.HealthChecks)
	}
	rest := v
	for {
		rest = strings.TrimLeft(rest, " \t")
		var item string
		if cmd, ok := strings.CutPrefix(rest, ExecPrefix); ok {
			cmd = strings.TrimSpace(cmd)
			if cmd == "" {
				return bad("exec: needs a command")
			}
			item, rest = ExecPrefix+cmd, ""
		} else {
			var more bool
			item, rest, more = strings.Cut(rest, ",")
			item = strings.TrimSpace(item)
			if item != CheckBroker && item != CheckTUF {
				return bad("check %q is not %s, %s or %s<command>", item, CheckBroker, CheckTUF, ExecPrefix)
			}
			if !more {
				rest = ""
			} else if strings.TrimSpace(rest) == "" {
				return bad("empty check after the last comma")
			}
		}
		if slices.Contains(list, item) {
			return bad("check %q listed twice", item)
		}
		list = append(list, item)
		if rest == "" {
			break
		}
	}
	if len(list) > maxChecks {
		return bad("more than %d checks", maxChecks)
	}
	c.HealthChecks = list
	return nil
}
