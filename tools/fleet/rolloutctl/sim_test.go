package rolloutctl_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/agent/agenttest"
	"github.com/graft-dev/graft/tools/fleet/cli"
	"github.com/graft-dev/graft/tools/fleet/rollout"
	"github.com/graft-dev/graft/tools/fleet/rolloutctl"
	"github.com/graft-dev/graft/tools/fleet/serve"
	"github.com/graft-dev/graft/tools/fleet/simulate"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
	"github.com/graft-dev/graft/tuf/repo"
)

// fleet is graft-fleet serve in-process: broker, database, controller.
type fleet struct {
	skew   atomic.Int64 // added to the controller's clock, ns
	srv    *serve.Server
	db     *store.Store
	path   string
	cancel context.CancelFunc
	done   chan struct{}
}

// startFleet runs serve with its database at path and its controller,
// the broker on mqttAddr ("127.0.0.1:0" for any port).
func startFleet(t *testing.T, path, mqttAddr string) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{path: path, cancel: cancel, done: make(chan struct{})}
	ctl := rolloutctl.New(db, rolloutctl.Options{Tick: 50 * time.Millisecond,
		Now: func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }})
	srv, err := serve.Start(ctx, serve.Options{MetadataDir: t.TempDir(), TargetsDir: t.TempDir(),
		MQTTAddr: mqttAddr, HTTPAddr: "127.0.0.1:0", Store: db, Observer: ctl})
	if err != nil {
		t.Fatal(err)
	}
	ctl.SetPublisher(srv)
	f.srv, f.db = srv, db
	go func() { defer close(f.done); ctl.Run(ctx) }()
	t.Cleanup(f.stop)
	return f
}

// stop ends the fleet as a kill would: nothing is written on the way out.
func (f *fleet) stop() {
	select {
	case <-f.done:
		return
	default:
	}
	f.cancel()
	<-f.done
	f.srv.Close()
	f.db.Close()
}

// fleetCLI runs a graft-fleet command against the fleet's database.
func (f *fleet) cli(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Run(t.Context(), append(args, "--db", f.path), &out, &errb); code != cli.ExitOK {
		t.Fatalf("graft-fleet %v: exit %d: %s", args, code, errb.String())
	}
	return out.String(), errb.String()
}

// waitRollout waits until rollout id is in state want.
func (f *fleet) waitRollout(t *testing.T, id, want string, within time.Duration) store.Rollout {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r, err := f.db.Rollout(t.Context(), id)
		if err == nil && r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			out, _ := f.cli(t, "rollout", "show", id, "--members")
			t.Fatalf("rollout %s never became %s (%v):\n%s", id, want, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notices records every notice each device's topic carries, across
// broker restarts (it resubscribes on every connect).
type notices struct {
	mu  sync.Mutex
	ids map[string][]string // device → notice IDs in order
}

func watchNotices(t *testing.T, url string) *notices {
	n := &notices{ids: map[string][]string{}}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("notice-watch").SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(200 * time.Millisecond)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(transport.Prefix+"dev/+/notify", 1, func(_ paho.Client, m paho.Message) {
			dev, _, _ := transport.ParseDeviceTopic(m.Topic())
			if len(m.Payload()) == 0 {
				return
			}
			no, err := transport.DecodeNotice(m.Payload())
			if err != nil {
				t.Errorf("notice on %s: %v", m.Topic(), err)
				return
			}
			n.mu.Lock()
			n.ids[dev] = append(n.ids[dev], no.ID)
			n.mu.Unlock()
		})
	})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return n
}

// distinct returns each device's distinct notice IDs.
func (n *notices) distinct() map[string][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string][]string{}
	for d, ids := range n.ids {
		u := slices.Clone(ids)
		slices.Sort(u)
		out[d] = slices.Compact(u)
	}
	return out
}

// sim is the repository simulated devices update from, with release v2.
type sim struct {
	repo *agenttest.Repo
	wg   sync.WaitGroup
}

func newSim(t *testing.T) *sim {
	s := &sim{repo: agenttest.NewRepo(t, repo.Options{})}
	s.repo.Publish(t, agenttest.Release{Name: "v2", Sequence: 2, Image: agenttest.Image("v2", true, 64<<10)})
	return s
}

// start runs n devices PREFIX-00001… (graft-fleet simulate's engine:
// the real agent on the sim board, in this process) until ctx ends.
func (s *sim) start(t *testing.T, ctx context.Context, broker, prefix string, n int, failing, silent []string) {
	t.Helper()
	root, err := s.repo.Root()
	if err != nil {
		t.Fatal(err)
	}
	f, err := simulate.Start(ctx, simulate.Options{Devices: n, Prefix: prefix, Groups: []string{"lab"}, FailHealth: failing, Silent: silent,
		Broker: broker, RepoURL: s.repo.URL, Root: root, Dir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); f.Wait() }()
}

// testWriter logs to t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i+1)
	}
	return out
}

// waitDevices waits until the database knows n devices in group lab
// (from their inventory).
func waitDevices(t *testing.T, db *store.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ds, err := db.Devices(t.Context(), store.Filter{Group: "lab"})
		if err == nil && len(ds) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database knows %d of %d devices (%v)", len(ds), n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCanaryFailurePausesRollout: 30 real agents in group lab (the fleet
// learns it from their inventory); the 10% canary wave's
// health checks fail (three failures over --max-failures 2), so the
// rollout pauses after wave 1 with the reason
// in rollout show, and no device beyond the canaries is ever notified.
func TestCanaryFailurePausesRollout(t *testing.T) {
	s := newSim(t)
	f := startFleet(t, filepath.Join(t.TempDir(), "fleet.db"), "127.0.0.1:0")
	watch := watchNotices(t, f.srv.MQTTURL())
	devs := ids("sim", 30)
	waves, _ := rollout.ParseWaves("10%,100%")
	wave := rollout.Assign("v2", devs, waves)
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); s.wg.Wait() }()
	var canaries []string
	for _, d := range devs {
		if wave[d] == 0 {
			canaries = append(canaries, d)
		}
	}
	s.start(t, ctx, f.srv.MQTTURL(), "sim", len(devs), canaries, nil)
	if len(canaries) != 3 {
		t.Fatalf("canaries %v, want 3 of 30", canaries)
	}
	waitDevices(t, f.db, len(devs))

	f.cli(t, "rollout", "create", "--release", "v2", "--target", "group:lab", "--waves", "10%,100%", "--soak", "0s", "--timeout", "2m", "--max-failures", "2")
	f.waitRollout(t, "v2", rollout.Paused, 90*time.Second)
	time.Sleep(300 * time.Millisecond) // a few more controller steps: still nothing beyond wave 1

	got := watch.distinct()
	for d := range got {
		if !slices.Contains(canaries, d) {
			t.Errorf("device %s beyond the canaries was notified", d)
		}
	}
	for _, c := range canaries {
		if len(got[c]) != 1 {
			t.Errorf("canary %s got notice IDs %v, want one", c, got[c])
		}
	}
	out, _ := f.cli(t, "rollout", "show", "v2")
	if !strings.Contains(out, "state   paused") || !strings.Contains(out, "wave 1: 3 of 3 finished devices failed (3 rolled back") {
		t.Fatalf("rollout show does not say why it paused:\n%s", out)
	}
	t.Logf("rollout show:\n%s", out)
}

// TestSilentDeviceTimesOut: a device that is online but whose repository
// never answers (it hangs fetching the release), and one that never
// connected, both time out,
// and that counts toward the threshold; the healthy device commits.
func TestSilentDeviceTimesOut(t *testing.T) {
	s := newSim(t)
	f := startFleet(t, filepath.Join(t.TempDir(), "fleet.db"), "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); s.wg.Wait() }()
	s.start(t, ctx, f.srv.MQTTURL(), "sl", 2, nil, []string{"sl-00002"})
	waitDevices(t, f.db, 2)
	f.cli(t, "rollout", "create", "--release", "v2", "--target", "devices:sl-00001,sl-00002,ghost-1", "--waves", "100%",
		"--timeout", "8s", "--max-failures", "1")
	r := f.waitRollout(t, "v2", rollout.Paused, 60*time.Second)
	if !strings.Contains(r.Reason, "2 timed out") {
		t.Fatalf("reason %q does not count the two timeouts", r.Reason)
	}
	ms, err := f.db.Members(t.Context(), "v2")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]rollout.Outcome{"sl-00001": rollout.Committed, "sl-00002": rollout.TimedOut, "ghost-1": rollout.TimedOut}
	for _, m := range ms {
		if rollout.Outcome(m.Outcome) != want[m.Device] {
			t.Errorf("%s: %s, want %s", m.Device, m.Outcome, want[m.Device])
		}
	}
	if d, err := f.db.Device(t.Context(), "sl-00002"); err != nil || rollout.FromState(d.State).Final() || d.Online == nil || !*d.Online {
		t.Errorf("silent device: %+v %v, want it online and never final", d, err)
	}
}

// TestFleetRestartResumes: the fleet is stopped mid-rollout and started
// again on the same database and port; the rollout completes, and no
// device ever sees a second notice ID for it.
func TestFleetRestartResumes(t *testing.T) {
	s := newSim(t)
	path := filepath.Join(t.TempDir(), "fleet.db")
	f := startFleet(t, path, "127.0.0.1:0")
	addr := f.srv.MQTTAddr()
	watch := watchNotices(t, f.srv.MQTTURL())
	devs := ids("rs", 6)
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); s.wg.Wait() }()
	s.start(t, ctx, f.srv.MQTTURL(), "rs", len(devs), nil, nil)
	waitDevices(t, f.db, len(devs))
	f.cli(t, "rollout", "create", "--release", "v2", "--target", "all", "--waves", "1,100%", "--soak", "0s", "--timeout", "2m")
	// Stop the fleet as soon as the second wave has been notified,
	// before its devices finish.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r, err := f.db.Rollout(t.Context(), "v2"); err == nil && r.Wave == 1 {
			if ms, _ := f.db.Members(t.Context(), "v2"); slices.ContainsFunc(ms, func(m store.Member) bool { return m.Wave == 1 && m.NoticeID != "" }) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("wave 2 never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.stop()
	time.Sleep(200 * time.Millisecond)
	f2 := startFleet(t, path, addr)
	f2.waitRollout(t, "v2", rollout.Completed, 90*time.Second)
	for d, idsSeen := range watch.distinct() {
		if len(idsSeen) != 1 {
			t.Errorf("device %s saw notice IDs %v, want exactly one", d, idsSeen)
		}
	}
	ms, _ := f2.db.Members(t.Context(), "v2")
	for _, m := range ms {
		if m.Outcome != string(rollout.Committed) {
			t.Errorf("member %+v did not commit", m)
		}
	}
}

// TestAbortClearsNotices: aborting a rollout clears the retained notice
// of every notified device, so a device that connects later finds none.
func TestAbortClearsNotices(t *testing.T) {
	f := startFleet(t, filepath.Join(t.TempDir(), "fleet.db"), "127.0.0.1:0")
	f.cli(t, "rollout", "create", "--release", "v2", "--target", "devices:ghost-1,ghost-2", "--waves", "100%", "--timeout", "1h")
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, _ := f.db.Members(t.Context(), "v2")
		if len(ms) == 2 && ms[0].NoticeID != "" && ms[1].NoticeID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never notified: %+v", ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := retainedNotices(t, f.srv.MQTTURL()); n != 2 {
		t.Fatalf("%d retained notices before abort, want 2", n)
	}
	f.cli(t, "rollout", "abort", "v2")
	f.waitRollout(t, "v2", rollout.Aborted, 10*time.Second)
	if n := retainedNotices(t, f.srv.MQTTURL()); n != 0 {
		t.Fatalf("%d retained notices after abort, want 0", n)
	}
}

// retainedNotices counts the retained notices a new subscriber gets.
func retainedNotices(t *testing.T, url string) int {
	t.Helper()
	var mu sync.Mutex
	n := 0
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprint("probe-", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe(transport.Prefix+"dev/+/notify", 1, func(_ paho.Client, m paho.Message) {
		if m.Retained() && len(m.Payload()) > 0 {
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	return n
}

// TestClosedWindowDefers: outside its window a rollout notifies nobody and
// says so; once the window opens the wave goes out.
func TestClosedWindowDefers(t *testing.T) {
	f := startFleet(t, filepath.Join(t.TempDir(), "fleet.db"), "127.0.0.1:0")
	now := time.Now()
	window := now.Add(2*time.Hour).Format("15:04") + "-" + now.Add(3*time.Hour).Format("15:04")
	f.cli(t, "rollout", "create", "--release", "v2", "--target", "devices:ghost-1", "--waves", "100%", "--timeout", "1h", "--window", window)
	time.Sleep(300 * time.Millisecond) // several controller steps
	out, _ := f.cli(t, "rollout", "show", "v2", "--members")
	if !strings.Contains(out, "closed: 1 devices deferred") || !strings.Contains(out, "ghost-1  1     pending") {
		t.Fatalf("a closed window did not defer the wave:\n%s", out)
	}
	if n := retainedNotices(t, f.srv.MQTTURL()); n != 0 {
		t.Fatalf("%d notices sent outside the window", n)
	}
	f.skew.Store(int64(2*time.Hour + 30*time.Minute))
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, _ := f.db.Members(t.Context(), "v2")
		if len(ms) == 1 && ms[0].NoticeID != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the open window never let the wave out: %+v", ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
