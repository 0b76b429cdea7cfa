package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		DeviceID:      "rpi4-bench-01",
		Board:         "raspberrypi4-64",
		BoardFile:     "/etc/graft/boards.json",
		DeviceClass:   "rpi4-kiosk",
		Groups:        []string{"canary", "lab-3"},
		DataDir:       "/data/graft",
		Broker:        "ssl://fleet.example.com:8883",
		CAFile:        "/etc/graft/ca.pem",
		CertFile:      "/etc/graft/device.pem",
		KeyFile:       "/etc/graft/device.key",
		KeepAlive:     45 * time.Second,
		MetadataURL:   "https://fleet.example.com/tuf/metadata",
		TargetsURL:    "https://fleet.example.com/tuf/targets",
		StallTimeout:  2 * time.Minute,
		HealthTimeout: 2 * time.Minute,
		HealthChecks: []string{
			"broker", "tuf",
			"exec:systemctl is-active kiosk.service",
			"exec:test -e /run/kiosk/ready && curl -fsS http://127.0.0.1:8080/health, --max-time 5",
		},
		Policy:            PolicyLiveNowImageLater,
		Maintenance:       Window{Start: 2 * time.Hour, End: 4 * time.Hour},
		TransitionTimeout: 90 * time.Second,
		LogLevel:          "debug",
		Console:           Console{TTY: "/dev/ttyAMA0", Baud: 921600, OperatorCA: "/etc/graft/fleet-ca.pem"},
		TelemetryInterval: 2 * time.Minute,
		TelemetryQueue:    50,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load\n got %+v\nwant %+v", c, want)
	}
	if c.SlogLevel() != slog.LevelDebug {
		t.Errorf("SlogLevel = %v", c.SlogLevel())
	}
	if cmd, ok := ExecCommand(c.HealthChecks[2]); !ok || cmd != "systemctl is-active kiosk.service" {
		t.Errorf("ExecCommand = %q, %v", cmd, ok)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load("testdata/minimal.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DeviceID = "sim-1"
	want.Broker = "tcp://10.0.2.2:1883"
	want.MetadataURL = "http://10.0.2.2:8080/metadata"
	want.TargetsURL = "http://10.0.2.2:8080/targets"
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got %+v\nwant %+v", *c, want)
	}
	if c.Board != "auto" || c.DataDir != "/var/lib/graft" || c.KeepAlive != 30*time.Second ||
		c.HealthTimeout != 60*time.Second || !reflect.DeepEqual(c.HealthChecks, []string{"broker", "tuf"}) ||
		c.Policy != "live-first" || c.LogLevel != "info" || c.DeviceClass != "" || c.Groups != nil {
		t.Errorf("defaults: %+v", *c)
	}
	if got := c.Class("qemu-virt-arm64"); got != "qemu-virt-arm64" {
		t.Errorf("Class = %q, want the detected board", got)
	}
}

func TestClassDefaultsToBoard(t *testing.T) {
	c, err := Parse(strings.NewReader(minimal("board = sim")), "c.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceClass != "sim" || c.Class("other") != "sim" {
		t.Errorf("class %q, want the board name", c.DeviceClass)
	}
}

// minimal returns a valid file with extra on line 3, in [device].
func minimal(extra string) string {
	return "[device]\nid = d1\n" + extra + `
[mqtt]
broker = tcp://127.0.0.1:1883
[tuf]
metadata_url = http://127.0.0.1/m
targets_url = http://127.0.0.1/t
`
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		err  error
		line int
		key  string
	}{
		{"unknown key", minimal("colour = blue"), ErrUnknownKey, 3, "device.colour"},
		{"unknown section", minimal("[gps]"), ErrUnknownKey, 3, "gps"},
		{"key before section", "id = x\n" + minimal(""), ErrUnknownKey, 1, "id"},
		{"no equals", minimal("board raspberrypi4-64"), ErrSyntax, 3, ""},
		{"unclosed section", minimal("[mqtt"), ErrSyntax, 3, ""},
		{"duplicate", minimal("id = d2"), ErrDuplicateKey, 3, "device.id"},
		{"bad id", strings.Replace(minimal(""), "id = d1", "id = dev/1", 1), ErrBadValue, 2, "device.id"},
		{"empty id", strings.Replace(minimal(""), "id = d1", "id =", 1), ErrBadValue, 2, "device.id"},
		{"long id", strings.Replace(minimal(""), "id = d1", "id = "+strings.Repeat("a", 65), 1), ErrBadValue, 2, "device.id"},
		{"relative data dir", minimal("data_dir = var/lib/graft"), ErrBadValue, 3, "device.data_dir"},
		{"group with slash", minimal("groups = a, b/c"), ErrBadValue, 3, "device.groups"},
		{"group twice", minimal("groups = a, a"), ErrBadValue, 3, "device.groups"},
		{"empty group", minimal("groups = a,,b"), ErrBadValue, 3, "device.groups"},
		{"board wildcard", minimal("board = *"), ErrBadValue, 3, "device.board"},
		{"broker scheme", strings.Replace(minimal(""), "tcp://", "http://", 1), ErrBadValue, 5, "mqtt.broker"},
		{"broker no port", strings.Replace(minimal(""), ":1883", "", 1), ErrBadValue, 5, "mqtt.broker"},
		{"broker credentials", strings.Replace(minimal(""), "tcp://", "tcp://u:p@", 1), ErrBadValue, 5, "mqtt.broker"},
		{"keepalive not a duration", minimal("[mqtt]\nkeepalive = 30"), ErrBadValue, 4, "mqtt.keepalive"},
		{"keepalive fraction", minimal("[mqtt]\nkeepalive = 1500ms"), ErrBadValue, 4, "mqtt.keepalive"},
		{"keepalive too long", minimal("[mqtt]\nkeepalive = 19h"), ErrBadValue, 4, "mqtt.keepalive"},
		{"relative ca", minimal("[mqtt]\nca = ca.pem"), ErrBadValue, 4, "mqtt.ca"},
		{"cert without key", minimal("[mqtt]\ncert = /c.pem"), ErrMissingKey, 4, "mqtt.key"},
		{"key without cert", minimal("[mqtt]\n\nkey = /k.pem"), ErrMissingKey, 5, "mqtt.cert"},
		{"tuf scheme", strings.Replace(minimal(""), "http://127.0.0.1/m", "ftp://127.0.0.1/m", 1), ErrBadValue, 7, "tuf.metadata_url"},
		{"tuf relative file", strings.Replace(minimal(""), "http://127.0.0.1/t", "file:repo/t", 1), ErrBadValue, 8, "tuf.targets_url"},
		{"negative timeout", minimal("[health]\ntimeout = -5s"), ErrBadValue, 4, "health.timeout"},
		{"telemetry too often", minimal("[telemetry]\ninterval = 5s"), ErrBadValue, 4, "telemetry.interval"},
		{"telemetry too rare", minimal("[telemetry]\ninterval = 25h"), ErrBadValue, 4, "telemetry.interval"},
		{"telemetry queue 0", minimal("[telemetry]\nqueue = 0"), ErrBadValue, 4, "telemetry.queue"},
		{"telemetry queue huge", minimal("[telemetry]\nqueue = 10001"), ErrBadValue, 4, "telemetry.queue"},
		{"telemetry queue word", minimal("[telemetry]\nqueue = many"), ErrBadValue, 4, "telemetry.queue"},
		{"unknown check", minimal("[health]\nchecks = broker, ping"), ErrBadValue, 4, "health.checks"},
		{"empty exec", minimal("[health]\nchecks = tuf, exec:  "), ErrBadValue, 4, "health.checks"},
		{"check twice", minimal("[health]\nchecks = broker\nchecks = tuf, broker"), ErrBadValue, 5, "health.checks"},
		{"trailing comma", minimal("[health]\nchecks = broker,"), ErrBadValue, 4, "health.checks"},
		{"empty checks", minimal("[health]\nchecks ="), ErrBadValue, 4, "health.checks"},
		{"policy", minimal("[update]\npolicy = yolo"), ErrBadValue, 4, "update.policy"},
		{"log level", minimal("[log]\nlevel = verbose"), ErrBadValue, 4, "log.level"},
		{"control character", minimal("class = a\x01b"), ErrBadValue, 3, "device.class"},
		{"not utf-8", minimal("class = \xff"), ErrSyntax, 3, ""},
		{"long line", minimal("# " + strings.Repeat("x", MaxLineLength)), ErrSyntax, 3, ""},
		{"missing id", strings.Replace(minimal(""), "id = d1", "", 1), ErrMissingKey, 0, "device.id"},
		{"missing broker", strings.Replace(minimal(""), "broker = tcp://127.0.0.1:1883", "", 1), ErrMissingKey, 0, "mqtt.broker"},
		{"missing targets", strings.Replace(minimal(""), "targets_url = http://127.0.0.1/t", "", 1), ErrMissingKey, 0, "tuf.targets_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.file), "agent.conf")
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse = %+v, %v; want %v", c, err, tt.err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %T is not *Error", err)
			}
			if e.File != "agent.conf" || e.Line != tt.line || e.Key != tt.key {
				t.Errorf("Error{File %q, Line %d, Key %q}, want agent.conf, %d, %q (%v)", e.File, e.Line, e.Key, tt.line, tt.key, err)
			}
		})
	}
}

func TestMinimalHelperIsValid(t *testing.T) {
	if _, err := Parse(strings.NewReader(minimal("")), "m.conf"); err != nil {
		t.Fatal(err)
	}
}

func TestSyntaxDetails(t *testing.T) {
	// CRLF line ends, a byte-order mark, blanks and comments are fine;
	// '#' inside a value is part of it.
	file := "\xef\xbb\xbf# comment\r\n[device]\r\n  id=d1  \r\n" +
		"[health]\nchecks = exec:echo ok # not a comment\n[ mqtt ]\nbroker = tcp://h:1\n[tuf]\nmetadata_url = file:///srv/repo/metadata\ntargets_url = file:///srv/repo/targets\n"
	c, err := Parse(strings.NewReader(file), "crlf.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.DeviceID != "d1" || c.HealthChecks[0] != "exec:echo ok # not a comment" || c.MetadataURL != "file:///srv/repo/metadata" {
		t.Errorf("got %+v", c)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrNotExist", err)
	}
}

func TestTooLarge(t *testing.T) {
	big := minimal("") + strings.Repeat("# padding padding padding\n", MaxFileSize/20)
	_, err := Parse(strings.NewReader(big), "big.conf")
	var e *Error
	if !errors.Is(err, ErrSyntax) || !errors.As(err, &e) || e.File != "big.conf" {
		t.Errorf("got %v, want a syntax error naming big.conf", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, f := range []string{"testdata/full.conf", "testdata/minimal.conf"} {
		c, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(bytes.NewReader(data), "encoded.conf")
		if err != nil {
			t.Fatalf("%s: re-reading\n%s: %v", f, data, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", f, c2, c)
		}
	}
}

func TestValidateInCode(t *testing.T) {
	c := Default()
	c.DeviceID, c.Broker = "d1", "tcp://10.0.2.2:1883"
	c.MetadataURL, c.TargetsURL = "http://10.0.2.2:8080/metadata", "http://10.0.2.2:8080/targets"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *Config)
		key    string
		err    error
	}{
		{"group with comma", func(c *Config) { c.Groups = []string{"a,b"} }, "device.groups", ErrBadValue},
		{"newline in exec", func(c *Config) { c.HealthChecks = []string{"exec:true\n[device]"} }, "health.checks", ErrBadValue},
		{"no checks", func(c *Config) { c.HealthChecks = nil }, "health.checks", ErrBadValue},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "device.data_dir", ErrBadValue},
		{"zero keepalive", func(c *Config) { c.KeepAlive = 0 }, "mqtt.keepalive", ErrBadValue},
		{"padded path", func(c *Config) { c.CAFile = "/ca.pem " }, "mqtt.ca", ErrBadValue},
		{"key only", func(c *Config) { c.KeyFile = "/k.pem" }, "mqtt.cert", ErrMissingKey},
		{"no id", func(c *Config) { c.DeviceID = "" }, "device.id", ErrMissingKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := c
			bad.HealthChecks = append([]string(nil), c.HealthChecks...)
			tt.change(&bad)
			err := bad.Validate()
			var e *Error
			if !errors.Is(err, tt.err) || !errors.As(err, &e) || e.Key != tt.key {
				t.Fatalf("Validate = %v, want %v on %s", err, tt.err, tt.key)
			}
			if _, err := bad.Encode(); err == nil {
				t.Error("Encode wrote a config that does not validate")
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(minimal("groups = a, b\n[health]\nchecks = exec:echo a,b\nchecks = tuf")))
	f.Add([]byte(minimal("[mqtt]\ncert = /c\nkey = /k\nkeepalive = 1m")))
	f.Add([]byte("[device]\nid = x\n[nope]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(bytes.NewReader(data), "fuzz.conf")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz.conf" {
				t.Fatalf("error %v is not an *Error naming the file", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		out, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := Parse(bytes.NewReader(out), "again.conf")
		if err != nil {
			t.Fatalf("re-reading %q: %v", out, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}
