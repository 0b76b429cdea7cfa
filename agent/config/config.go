package config

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Values of Config.Board, Config.Policy and Config.LogLevel, and the names
// of the built-in health checks.
const (
	BoardAuto = "auto" // detect the board from the device tree

	PolicyLiveFirst         = "live-first"           // live patch when possible, else the image
	PolicyImageOnly         = "image-only"           // always install the image on the A/B slot
	PolicyLiveNowImageLater = "live-now-image-later" // live patch now and also stage the image

	CheckBroker = "broker" // the MQTT broker is reachable
	CheckTUF    = "tuf"    // the TUF repository refreshes
	ExecPrefix  = "exec:"  // "exec:<command>": the command, run with sh -c, exits 0
)

// Policies and LogLevels are the values update.policy and log.level accept.
var (
	Policies  = []string{PolicyLiveFirst, PolicyImageOnly, PolicyLiveNowImageLater}
	LogLevels = []string{"debug", "info", "warn", "error"}
)

// Limits on values and on the file.
const (
	MaxKeepAlive     = 65535 * time.Second // MQTT's keep-alive is 16 bits of seconds
	MaxHealthTimeout = 24 * time.Hour
	// MaxTransitionTimeout bounds update.transition_timeout.
	MaxTransitionTimeout = time.Hour
	// MaxStallTimeout bounds tuf.stall_timeout.
	MaxStallTimeout      = time.Hour
	MaxFileSize          = 64 << 10
	MaxLineLength        = 4096
	MaxTelemetryInterval = 24 * time.Hour
	MinTelemetryInterval = 10 * time.Second
	MaxTelemetryQueue    = 10000
)

// Config is the agent's configuration. Parse and Load return it with
// defaults filled in and every value checked.
type Config struct {
	DeviceID    string   // [device] id, required: [A-Za-z0-9._-]{1,64}
	Board       string   // [device] board, default "auto" (detect from the device tree)
	BoardFile   string   // [device] board_file, optional extra board definitions
	DeviceClass string   // [device] class, default the board name ("" while Board is "auto")
	Groups      []string // [device] groups, comma-separated
	DataDir     string   // [device] data_dir, default /var/lib/graft

	Broker                    string        // [mqtt] broker, required, e.g. tcp://10.0.2.2:1883
	CAFile, CertFile, KeyFile string        // [mqtt] ca, cert, key (cert and key together)
	KeepAlive                 time.Duration // [mqtt] keepalive, default 30s

	MetadataURL string // [tuf] metadata_url, required
	TargetsURL  string // [tuf] targets_url, required
	// StallTimeout is [tuf] stall_timeout: a download that receives
	// nothing (no response, no byte) for this long is cut and resumed
	// from where it stopped. Default 60s.
	StallTimeout time.Duration

	HealthTimeout time.Duration // [health] timeout, default 60s
	HealthChecks  []string      // [health] checks, default broker, tuf; also exec:<command>

	Policy string // [update] policy, default live-first
	// Maintenance is [update] maintenance, "HH:MM-HH:MM" local time: when
	// the live-now-image-later policy installs the deferred image (and
	// reboots). Required with that policy, unused otherwise.
	Maintenance Window
	// TransitionTimeout is [update] transition_timeout: how long a
	// kernel live patch's transition may take before it is reversed
	// (and the engine falls back to the image). Default 60s.
	TransitionTimeout time.Duration
	LogLevel          string // [log] level, default info

	// TelemetryInterval is [telemetry] interval: the mean time between
	// two reports (each wait is jittered ±20%). Default 5m, 10s to 24h.
	TelemetryInterval time.Duration
	// TelemetryQueue is [telemetry] queue: how many reports wait while
	// offline before the oldest are dropped. Default 100, 1 to 10000.
	TelemetryQueue int
	Console        Console
}

// Console is the [console] section: the serial debug console the daemon
// serves (agent/console).
type Console struct {
	TTY  string // [console] tty, e.g. /dev/ttyAMA0; empty: no console
	Baud int    // [console] baud, default 115200
	// GuardOff is [console] guard = off: changing commands need no unlock
	// (lab boards only).
	GuardOff bool
	// OperatorCA is [console] operator_ca: the fleet CA certificate that
	// operator tokens must chain to; default [mqtt] ca.
	OperatorCA string
}

// Default returns the defaults; the required keys are empty.
func Default() Config {
	return Config{
		Board:             BoardAuto,
		DataDir:           "/var/lib/graft",
		KeepAlive:         30 * time.Second,
		HealthTimeout:     60 * time.Second,
		HealthChecks:      []string{CheckBroker, CheckTUF},
		Policy:            PolicyLiveFirst,
		TransitionTimeout: 60 * time.Second,
		StallTimeout:      60 * time.Second,
		LogLevel:          "info",
		Console:           Console{Baud: 115200},
		TelemetryInterval: 5 * time.Minute,
		TelemetryQueue:    100,
	}
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads a config file from r; filename is only used in errors, which
// are *Error values naming the file, line and key.
func Parse(r io.Reader, filename string) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", filename, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: filename, Err: fmt.Errorf("%w: file is larger than %d bytes", ErrSyntax, MaxFileSize)}
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	c := Default()
	seen := map[string]int{} // key → line it was first set on
	section := ""
	for i, raw := range strings.Split(string(data), "\n") {
		ln := i + 1
		fail := func(key string, err error) (*Config, error) {
			return nil, &Error{File: filename, Line: ln, Key: key, Err: err}
		}
		if len(raw) > MaxLineLength {
			return fail("", fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, MaxLineLength))
		}
		if !utf8.ValidString(raw) {
			return fail("", fmt.Errorf("%w: not UTF-8", ErrSyntax))
		}
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return fail("", fmt.Errorf("%w: section header without ']'", ErrSyntax))
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			if !slices.Contains(sections, name) {
				return fail(name, fmt.Errorf("%w: no section [%s]; sections are %s", ErrUnknownKey, name, strings.Join(sections, ", ")))
			}
			section = name
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return fail("", fmt.Errorf("%w: want \"key = value\", a [section] or a # comment", ErrSyntax))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if section == "" {
			return fail(k, fmt.Errorf("%w: key before any [section]", ErrUnknownKey))
		}
		name := section + "." + k
		def, ok := findKey(name)
		if !ok {
			return fail(name, ErrUnknownKey)
		}
		prev, dup := seen[name]
		if dup && !def.repeat {
			return fail(name, fmt.Errorf("%w: first set on line %d", ErrDuplicateKey, prev))
		}
		if !dup {
			seen[name] = ln
		}
		if err := set(def, &c, v, !dup); err != nil {
			return fail(name, err)
		}
	}
	if c.DeviceClass == "" && c.Board != BoardAuto {
		c.DeviceClass = c.Board
	}
	if err := crossCheck(&c, seen); err != nil {
		err.File = filename
		return nil, err
	}
	return &c, nil
}

// set applies one value, refusing control characters for every key.
func set(def key, c *Config, v string, first bool) error {
	if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }); i >= 0 {
		return bad("control character %q in value", v[i])
	}
	return def.set(c, v, first)
}

// crossCheck checks what no single line can: required keys, and cert and
// key given together. lines gives the line each key was set on.
func crossCheck(c *Config, lines map[string]int) *Error {
	for _, req := range []struct {
		key, val string
	}{
		{"device.id", c.DeviceID},
		{"mqtt.broker", c.Broker},
		{"tuf.metadata_url", c.MetadataURL},
		{"tuf.targets_url", c.TargetsURL},
	} {
		if req.val == "" {
			return &Error{Key: req.key, Err: ErrMissingKey}
		}
	}
	if c.CertFile != "" && c.KeyFile == "" {
		return &Error{Line: lines["mqtt.cert"], Key: "mqtt.key", Err: fmt.Errorf("%w: mqtt.cert is set, so mqtt.key must be too", ErrMissingKey)}
	}
	if c.KeyFile != "" && c.CertFile == "" {
		return &Error{Line: lines["mqtt.key"], Key: "mqtt.cert", Err: fmt.Errorf("%w: mqtt.key is set, so mqtt.cert must be too", ErrMissingKey)}
	}
	if c.Policy == PolicyLiveNowImageLater && c.Maintenance.IsZero() {
		return &Error{Line: lines["update.policy"], Key: "update.maintenance", Err: fmt.Errorf("%w: policy %s installs the image at the maintenance window, so update.maintenance must be set", ErrMissingKey, PolicyLiveNowImageLater)}
	}
	return nil
}

// Validate checks a Config built in code (by the provisioning tool, say)
// with the same rules Parse applies; errors are *Error with Key set.
func (c Config) Validate() error {
	for _, def := range keys {
		vals := def.format(&c)
		scratch := Default()
		for i, v := range vals {
			if v != strings.TrimSpace(v) {
				return &Error{Key: def.name, Err: bad("%q has blanks at the start or end, which a file cannot keep", v)}
			}
			if err := set(def, &scratch, v, i == 0); err != nil {
				return &Error{Key: def.name, Err: err}
			}
		}
		// A value that does not read back as itself (an empty value, a
		// group name with a comma, blanks around a path) cannot be written.
		if !slices.Equal(def.format(&scratch), vals) {
			return &Error{Key: def.name, Err: bad("%q cannot be written in a config file", vals)}
		}
	}
	if err := crossCheck(&c, nil); err != nil {
		return err
	}
	return nil
}

// Encode writes c in the config file format, every key explicit, so that
// Parse returns c again. It refuses a Config that does not Validate.
func (c Config) Encode() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString("# graft-agent configuration; see docs/config.md\n")
	for _, s := range sections {
		fmt.Fprintf(&buf, "\n[%s]\n", s)
		for _, def := range keys {
			short, ok := strings.CutPrefix(def.name, s+".")
			if !ok {
				continue
			}
			for _, v := range def.format(&c) {
				fmt.Fprintf(&buf, "%s = %s\n", short, v)
			}
		}
	}
	return buf.Bytes(), nil
}

// Class returns the device class: DeviceClass, or board (the detected
// board's name) when the config leaves it to the board.
func (c *Config) Class(board string) string {
	if c.DeviceClass != "" {
		return c.DeviceClass
	}
	return board
}

// SlogLevel returns LogLevel as a slog.Level.
func (c *Config) SlogLevel() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ExecCommand returns the command of an "exec:<command>" health check.
func ExecCommand(check string) (string, bool) {
	return strings.CutPrefix(check, ExecPrefix)
}
