package mqtttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FreePort finds a TCP port that is free on 127.0.0.1 right now, for a
// configuration that names its listener's port.
func FreePort(t testing.TB) int { return freePort(t) }

// StartMosquittoConfig starts mosquitto with a configuration file the
// test wrote (graft-fleet broker-config, for instance) whose listener is
// 127.0.0.1:port, speaking TLS when tls is set, and stops it when the test
// ends. As root it appends "user root" to a copy of the file (mosquitto
// would otherwise drop to a user that cannot read the test's files). It
// skips the test when mosquitto is not installed.
func StartMosquittoConfig(t testing.TB, conf string, port int, tls bool) *Broker {
	t.Helper()
	if _, err := exec.LookPath(MosquittoPath); err != nil {
		t.Skipf("mosquitto not installed (%s): apt-get install mosquitto", MosquittoPath)
	}
	b := &Broker{t: t, dir: t.TempDir(), port: port, tls: tls, conf: conf}
	if os.Geteuid() == 0 {
		text, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		b.conf = filepath.Join(b.dir, "mosquitto.conf")
		if err := os.WriteFile(b.conf, append(text, "\nuser root\n"...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b.start()
	t.Cleanup(b.Stop)
	return b
}

// PID is the running broker's process ID (0 when stopped), for tests that
// watch its memory.
func (b *Broker) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}
