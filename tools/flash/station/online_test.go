package station_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/provision"
	"github.com/graft-dev/graft/tools/flash/flashtest"
	"github.com/graft-dev/graft/tools/flash/station"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/transport"
)

// TestProvisionedDeviceComesOnline: a device provisioned by the station
// starts the agent with what it was given — its own key, the certificate
// the fleet CA signed, the broker CA — and comes online on graft-fleet
// serve's mutual-TLS listener under its new identity; the fleet sees its
// status.
func TestProvisionedDeviceComesOnline(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := serve.Start(ctx, serve.Options{
		MetadataDir: f.repo.MetadataDir(), TargetsDir: f.repo.TargetsDir(), CADir: f.caDir,
		MQTTAddr: "127.0.0.1:0", MQTTSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fleet := agenttest.Watch(t, srv.MQTTURL())

	d := flashtest.NewDevice(t, "00c0de")
	d.Start()
	tmpl := strings.Replace(configTmpl, "tcp://127.0.0.1:1", srv.MQTTSURL(), 1)
	s := f.station(t, func(c *station.Config) { c.ConfigTmpl = []byte(tmpl) })
	res := s.Run(ctx, []string{d.Port}, nil)
	checkProvisioned(t, f, d, res[0], "A")
	d.Stop()

	cfg, err := config.Load(filepath.Join(d.Dir, provision.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- daemon.Run(actx, cfg, slog.New(slog.DiscardHandler), daemon.Hooks{}) }()
	defer func() { stop(); <-done }()
	st, err := fleet.WaitFor(ctx, "sim-"+d.Serial, func(s transport.Status) bool { return s.State == transport.StateIdle })
	if err != nil {
		t.Fatal(err)
	}
	if st.Installed != f.release || st.Slot != "A" {
		t.Errorf("device reports %+v, want %s in slot A", st, f.release)
	}
}
