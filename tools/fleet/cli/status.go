package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/graft-dev/graft/tools/fleet/fleetstate"
	"github.com/graft-dev/graft/tools/fleet/store"
	"github.com/graft-dev/graft/transport"
)

// ErrNoDevice: the device asked for has never been heard of.
var ErrNoDevice = errors.New("no such device")

// message is one MQTT message handed from paho's goroutine to the
// command's.
type message struct {
	topic   string
	payload []byte
}

func statusCmd() command {
	return command{
		name:    "status",
		summary: "show every device's state from its retained status, online and telemetry messages; --follow prints events as they arrive",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			bf := addBrokerFlags(fs)
			device := fs.String("device", "", "only this device `ID`")
			waitFor := fs.Duration("wait", 2*time.Second, "how long to collect messages before printing the table")
			follow := fs.Bool("follow", false, "print events as they arrive until interrupted")
			asJSON := fs.Bool("json", false, "print JSON: an array of devices, or with --follow one event object per line")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if *waitFor <= 0 && !*follow {
					return usagef("--wait must be positive")
				}
				filters := []string{
					transport.DeviceFilter(transport.KindStatus),
					transport.DeviceFilter(transport.KindOnline),
					transport.DeviceFilter(transport.KindTelemetry),
				}
				if *device != "" {
					if err := transport.ValidID(*device); err != nil {
						return usagef("--device: %v", err)
					}
					filters = []string{transport.StatusTopic(*device), transport.OnlineTopic(*device), transport.TelemetryTopic(*device)}
				}
				return runStatus(ctx, e, bf, *device, filters, *waitFor, *follow, *asJSON)
			}
		},
	}
}

func runStatus(ctx context.Context, e *env, broker brokerFlags, device string, filters []string, waitFor time.Duration, follow, asJSON bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan message, 256)
	subErr := make(chan error, 1)
	handler := func(_ paho.Client, m paho.Message) {
		select {
		case msgs <- message{topic: m.Topic(), payload: m.Payload()}:
		case <-ctx.Done():
		}
	}
	subscribe := func(c paho.Client) {
		qos := make(map[string]byte, len(filters))
		for _, f := range filters {
			qos[f] = 1
		}
		tok := c.SubscribeMultiple(qos, handler)
		go func() {
			err := wait(ctx, tok)
			if err == nil {
				err = refused(tok)
			}
			if err != nil {
				select {
				case subErr <- fmt.Errorf("%w: subscribe: %w", ErrBroker, err):
				default:
				}
			}
		}()
	}
	c, err := connect(ctx, broker, "status", follow, subscribe)
	if err != nil {
		return err
	}
	defer c.Disconnect(250)

	var deadline <-chan time.Time
	if !follow {
		t := time.NewTimer(waitFor)
		defer t.Stop()
		deadline = t.C
	}
	table := fleetstate.New(0)
	for {
		select {
		case err := <-subErr:
			return err
		case <-deadline:
			if _, ok := table.Get(device); device != "" && !ok {
				return fmt.Errorf("%w: device %q: no status, online or telemetry message from it within %v", ErrNoDevice, device, waitFor)
			}
			return printTable(e, table.Devices(), asJSON)
		case <-ctx.Done():
			if follow && errors.Is(ctx.Err(), context.Canceled) {
				return nil // interrupted: the normal end of --follow
			}
			return ctx.Err()
		case m := <-msgs:
			ev, fresh, err := table.Apply(m.topic, m.payload)
			if err != nil {
				e.log.Warn("ignored message", "topic", m.topic, "err", err)
				continue
			}
			if !follow || !fresh {
				continue
			}
			if err := printEvent(e.stdout, e.now(), ev, asJSON); err != nil {
				return err
			}
		}
	}
}

// deviceJSON is a device row as status --json prints it.
type deviceJSON struct {
	fleetstate.Device
	AgeMS *int64 `json:"age_ms,omitempty"` // now minus Updated, when known
}

func printTable(e *env, devs []fleetstate.Device, asJSON bool) error {
	now := e.now()
	if asJSON {
		out := make([]deviceJSON, 0, len(devs))
		for _, d := range devs {
			j := deviceJSON{Device: d}
			if d.Updated > 0 {
				age := max(now.UnixMilli()-d.Updated, 0)
				j.AgeMS = &age
			}
			out = append(out, j)
		}
		return writeJSON(e.stdout, out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tONLINE\tSTATE\tRELEASE\tINSTALLED\tSLOT\tPATH\tREASON\tAGE\t"+healthHeader)
	for _, d := range devs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			d.ID, onlineText(d.Online), dash(string(d.State)), dash(d.Release), dash(d.Installed),
			dash(d.Slot), dash(d.Path), dash(truncate(d.Reason, 60)), age(now, d.Updated), healthColumns(d.Telemetry))
	}
	return tw.Flush()
}

// eventJSON is one --follow --json line.
type eventJSON struct {
	Time      string               `json:"time"` // when graft-fleet saw it, RFC 3339
	Device    string               `json:"device"`
	Kind      string               `json:"kind"`
	Status    *transport.Status    `json:"status,omitempty"`
	Online    *bool                `json:"online,omitempty"`
	Telemetry *transport.Telemetry `json:"telemetry,omitempty"`
}

func printEvent(w io.Writer, now time.Time, ev fleetstate.Event, asJSON bool) error {
	if asJSON {
		j := eventJSON{Time: now.UTC().Format(time.RFC3339Nano), Device: ev.Device, Kind: ev.Kind}
		switch ev.Kind {
		case transport.KindStatus:
			j.Status = &ev.Status
		case transport.KindOnline:
			j.Online = &ev.Online
		case transport.KindTelemetry:
			j.Telemetry = &ev.Telemetry
		}
		return writeJSON(w, j)
	}
	_, err := fmt.Fprintf(w, "%s %s %s\n", now.Format("15:04:05.000"), ev.Device, describe(ev))
	return err
}

// describe renders an event as "kind key=value ...".
func describe(ev fleetstate.Event) string {
	var b strings.Builder
	kv := func(k, v string) {
		if v != "" && v != "0" {
			fmt.Fprintf(&b, " %s=%s", k, quoteIfSpace(v))
		}
	}
	switch ev.Kind {
	case transport.KindStatus:
		s := ev.Status
		b.WriteString("status " + string(s.State))
		kv("release", s.Release)
		kv("seq", fmt.Sprint(s.Sequence))
		kv("path", s.Path)
		kv("slot", s.Slot)
		kv("installed", s.Installed)
		if s.Total > 0 {
			kv("progress", fmt.Sprintf("%d/%d", s.Done, s.Total))
		}
		kv("reason", s.Reason)
	case transport.KindOnline:
		b.WriteString("online " + onlineText(&ev.Online))
	case transport.KindTelemetry:
		t := ev.Telemetry
		b.WriteString("telemetry")
		kv("slot", t.Slot)
		kv("installed", t.Installed)
		kv("agent", t.AgentVersion)
		kv("uptime", fmt.Sprintf("%ds", t.Uptime))
		kv("seq", fmt.Sprint(t.Seq))
		if f := store.Figures(t); f.TempC != nil {
			kv("temp", fmt.Sprintf("%.1fC", *f.TempC))
		}
		if t.Dropped > 0 {
			kv("dropped", fmt.Sprint(t.Dropped))
		}
	}
	return b.String()
}

func onlineText(on *bool) string {
	switch {
	case on == nil:
		return "?"
	case *on:
		return "yes"
	default:
		return "no"
	}
}

func age(now time.Time, ms int64) string {
	if ms <= 0 {
		return "-"
	}
	d := max(now.Sub(time.UnixMilli(ms)), 0)
	switch {
	case d < time.Minute:
		return d.Truncate(time.Second).String()
	case d < time.Hour:
		return d.Truncate(time.Minute).String()
	default:
		return d.Truncate(time.Hour).String()
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	r := []rune(oneLine(s))
	if len(r) <= n {
		return string(r)
	}
	return string(r[:n-3]) + "..."
}

func quoteIfSpace(s string) string {
	if strings.ContainsAny(s, " \t\n\"") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// ErrRefused: the broker refused a subscription (SUBACK 0x80), for
// example because the operator's role may not read the topic.
var ErrRefused = errors.New("refused by the broker")

// refused reports the filters a completed subscribe token was refused.
func refused(tok paho.Token) error {
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return nil
	}
	var bad []string
	for f, code := range st.Result() {
		if code >= 0x80 {
			bad = append(bad, f)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return fmt.Errorf("%w: %s", ErrRefused, strings.Join(bad, ", "))
}
