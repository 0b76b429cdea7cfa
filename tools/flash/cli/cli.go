package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial/enumerator"
	"golang.org/x/term"

	"github.com/graft-dev/graft/tools/flash/initramfs"
	"github.com/graft-dev/graft/tools/flash/ledger"
	"github.com/graft-dev/graft/tools/flash/station"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

var errUsage = errors.New("usage")

type env struct {
	stdout, stderr io.Writer
}

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, e env, args []string) error
}

func commands() []command {
	return []command{
		{"ports", "[--json]", "list serial ports, with USB VID/PID and serial number", cmdPorts},
		{"initramfs", "--arch arm64|armv7 -o FILE [--agent FILE] [--board NAME] [--board-file FILE]", "build the provisioning initramfs (graft-agent in provisioning mode as /init)", cmdInitramfs},
		{"provision", "--port P... --release NAME --repo DIR --ca DIR --config TEMPLATE [--id-template T] [--slots A,B] [--force] [--json]", "provision the devices on the ports in parallel", cmdProvision},
		{"ledger", "list|export [--ledger FILE] [--json|--csv]", "the provisioning ledger", cmdLedger},
		{"console", consoleArgs, "a device's serial debug console: attach (raw, logged, reconnecting), exec one command, unlock with an operator key, or sign a token (docs/console.md)", cmdConsole},
	}
}

// Run runs graft-flash with args (without the program name) and returns
// the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := env{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, "graft-flash — factory provisioning over serial\n\nUsage:\n")
		for _, c := range commands() {
			fmt.Fprintf(stdout, "  graft-flash %s %s\n      %s\n", c.name, c.args, c.summary)
		}
		fmt.Fprintf(stdout, "\nSee docs/flash.md. Exit status: 0 ok, 1 failed (any device), 2 bad usage.\n")
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "graft-flash %s: %v\n", c.name, err)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "graft-flash %s: %v\n", c.name, err)
			return exitFail
		}
	}
	fmt.Fprintf(stderr, "graft-flash: unknown command %q (see graft-flash --help)\n", args[0])
	return exitUsage
}

func flags(e env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: graft-flash %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// multi is a repeatable flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

type portView struct {
	Name         string `json:"name"`
	USB          bool   `json:"usb"`
	VID          string `json:"vid,omitempty"`
	PID          string `json:"pid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	Product      string `json:"product,omitempty"`
}

func cmdPorts(_ context.Context, e env, args []string) error {
	fs := flags(e, "ports", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return fmt.Errorf("listing ports: %w", err)
	}
	views := []portView{}
	for _, p := range ports {
		views = append(views, portView{Name: p.Name, USB: p.IsUSB, VID: p.VID, PID: p.PID, SerialNumber: p.SerialNumber, Product: p.Product})
	}
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
	if *asJSON {
		return printJSON(e.stdout, views)
	}
	fmt.Fprintf(e.stdout, "%-20s %-9s %-16s %s\n", "PORT", "VID:PID", "SERIAL", "PRODUCT")
	for _, v := range views {
		id := "-"
		if v.USB {
			id = v.VID + ":" + v.PID
		}
		fmt.Fprintf(e.stdout, "%-20s %-9s %-16s %s\n", v.Name, id, orDash(v.SerialNumber), v.Product)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdInitramfs(_ context.Context, e env, args []string) error {
	fs := flags(e, "initramfs", "--arch arm64|armv7 -o FILE [--agent FILE] [--board NAME] [--board-file FILE]")
	arch := fs.String("arch", "", "device `arch`: arm64 or armv7")
	out := fs.String("o", "", "output `file` (gzip newc cpio)")
	agent := fs.String("agent", "", "static graft-agent for the arch (default: graft-agent in ../ARCH/ beside this program, as make cross lays out)")
	board := fs.String("board", "", "board `name` the init passes to provisioning mode (default: detect from the device tree)")
	boardFile := fs.String("board-file", "", "extra board definitions `file` to put in the image")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *arch == "" || *out == "" {
		return fmt.Errorf("%w: --arch and -o are required", errUsage)
	}
	if *agent == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*agent = filepath.Join(filepath.Dir(self), "..", *arch, "graft-agent")
	}
	spec := initramfs.Spec{Arch: *arch, Agent: *agent}
	if *board != "" {
		spec.Args = []string{"--board", *board}
	}
	if *boardFile != "" {
		b, err := os.ReadFile(*boardFile)
		if err != nil {
			return err
		}
		spec.Boards = b
	}
	if err := initramfs.Write(spec, *out); err != nil {
		return err
	}
	fi, _ := os.Stat(*out)
	fmt.Fprintf(e.stdout, "%s: provisioning initramfs for %s (%d bytes)\n", *out, *arch, fi.Size())
	return nil
}

const defaultLedger = "graft-flash-ledger.db"

func cmdProvision(ctx context.Context, e env, args []string) error {
	fs := flags(e, "provision", "--port P... --release NAME --repo DIR --ca DIR --config TEMPLATE [flags]")
	var ports multi
	fs.Var(&ports, "port", "serial `port` of a device (repeat for several; they run in parallel)")
	release := fs.String("release", "", "release `name` to write")
	repoDir := fs.String("repo", "", "TUF repository `directory` (graft-fleet repo) holding the release")
	caDir := fs.String("ca", "", "fleet CA `directory` (graft-fleet ca init)")
	tmpl := fs.String("config", "", "agent.conf template `file`: {id} {serial} {board} {mac} {repo_url}")
	idTmpl := fs.String("id-template", "{board}-{serial}", "device ID `template`")
	slots := fs.String("slots", "A", "`slots` to write, comma-separated")
	force := fs.Bool("force", false, "provision again a device (or SoC serial) that already is")
	ledgerPath := fs.String("ledger", defaultLedger, "ledger `file` (SQLite)")
	listen := fs.String("listen", "0.0.0.0:8080", "`address` the repository server listens on")
	repoURL := fs.String("repo-url", "", "repository `URL` as devices reach it (default http://LISTEN)")
	brokerCA := fs.String("broker-ca", "", "broker CA certificate `file` (default: the fleet CA's)")
	baud := fs.Int("baud", 115200, "baud rate")
	wait := fs.Duration("wait", time.Minute, "how long to wait for each device to answer")
	name := fs.String("station", "", "station name in the ledger (default: host name)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	logLevel := fs.String("log-level", "warn", "log `level` (stderr)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(ports) == 0 || *release == "" || *repoDir == "" || *caDir == "" || *tmpl == "" {
		return fmt.Errorf("%w: --port, --release, --repo, --ca and --config are required", errUsage)
	}
	conf, err := os.ReadFile(*tmpl)
	if err != nil {
		return err
	}
	var bca []byte
	if *brokerCA != "" {
		if bca, err = os.ReadFile(*brokerCA); err != nil {
			return err
		}
	}
	l, err := ledger.Open(*ledgerPath)
	if err != nil {
		return err
	}
	defer l.Close()
	var lv slog.Level
	lv.UnmarshalText([]byte(*logLevel))
	s, err := station.New(station.Config{
		Release: *release, RepoDir: *repoDir, CADir: *caDir, ConfigTmpl: conf, IDTemplate: *idTmpl,
		BrokerCA: bca, Slots: strings.Split(*slots, ","), Force: *force, Station: *name, Baud: *baud,
		Listen: *listen, RepoURL: *repoURL, HelloWait: *wait, Ledger: l,
		Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv})),
	})
	if err != nil {
		return err
	}
	defer s.Close()
	pr := newProgress(e.stderr, ports)
	res := s.Run(ctx, ports, pr.update)
	pr.finish()
	if *asJSON {
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else {
		for _, r := range res {
			line := fmt.Sprintf("%s  %s", r.Port, r.Outcome)
			if r.ID != "" {
				line += "  " + r.ID
			}
			if r.Reason != "" {
				line += "  " + r.Reason
			}
			fmt.Fprintf(e.stdout, "%s  (control %.1fs, image %.1fs)\n", line, float64(r.ControlMillis)/1000, float64(r.ImageMillis)/1000)
		}
	}
	bad := 0
	for _, r := range res {
		if !r.Good() {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d devices not provisioned", bad, len(res))
	}
	return nil
}

// progress shows one line per device: redrawn in place on a terminal, a
// line per step change otherwise.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	ports []string
	lines map[string]string
	drawn bool
}

func newProgress(w io.Writer, ports []string) *progress {
	p := &progress{w: w, ports: ports, lines: map[string]string{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && runtime.GOOS != "windows" {
		p.tty = true
	}
	return p
}

func (p *progress) update(u station.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := u.Step
	if u.Total > 0 {
		line = fmt.Sprintf("%s %3d%% (%d/%d MiB)", u.Step, u.Done*100/u.Total, u.Done>>20, u.Total>>20)
	}
	if u.Note != "" {
		line = u.Note
	}
	old := p.lines[u.Port]
	p.lines[u.Port] = line
	if !p.tty {
		if u.Total == 0 || !strings.HasPrefix(old, u.Step+" ") || u.Done == u.Total {
			fmt.Fprintf(p.w, "%s: %s\n", u.Port, line)
		}
		return
	}
	if p.drawn {
		fmt.Fprintf(p.w, "\x1b[%dA", len(p.ports))
	}
	for _, port := range p.ports {
		fmt.Fprintf(p.w, "\x1b[2K%s: %s\n", port, p.lines[port])
	}
	p.drawn = true
}

func (p *progress) finish() {}

func cmdLedger(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "export") {
		return fmt.Errorf("%w: ledger list|export [--ledger FILE] [--json|--csv]", errUsage)
	}
	sub := args[0]
	fs := flags(e, "ledger "+sub, "[--ledger FILE] [--json|--csv]")
	path := fs.String("ledger", defaultLedger, "ledger `file`")
	asJSON := fs.Bool("json", false, "JSON")
	asCSV := fs.Bool("csv", false, "CSV")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *asJSON && *asCSV {
		return fmt.Errorf("%w: --json or --csv, not both", errUsage)
	}
	if _, err := os.Stat(*path); err != nil {
		return fmt.Errorf("ledger %s: %w", *path, err)
	}
	l, err := ledger.Open(*path)
	if err != nil {
		return err
	}
	defer l.Close()
	rs, err := l.List(ctx)
	if err != nil {
		return err
	}
	if rs == nil {
		rs = []ledger.Record{}
	}
	switch {
	case *asJSON || sub == "export" && !*asCSV:
		return printJSON(e.stdout, rs)
	case *asCSV:
		w := csv.NewWriter(e.stdout)
		w.Write(ledger.Fields)
		for _, r := range rs {
			w.Write(r.Strings())
		}
		w.Flush()
		return w.Error()
	}
	fmt.Fprintf(e.stdout, "%-4s %-20s %-24s %-16s %-12s %-12s %s\n", "SEQ", "TIME", "ID", "SOC SERIAL", "RELEASE", "OUTCOME", "REASON")
	for _, r := range rs {
		fmt.Fprintf(e.stdout, "%-4d %-20s %-24s %-16s %-12s %-12s %s\n", r.Seq, r.Time.UTC().Format("2006-01-02 15:04:05"), orDash(r.ID), r.Serial, orDash(r.Release), r.Outcome, r.Reason)
	}
	return nil
}
