package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/simboard"
	"github.com/graft-dev/graft/boards"
	"github.com/graft-dev/graft/tuf"
)

// ErrOptions marks bad options.
var ErrOptions = errors.New("simulate: bad options")

// DefaultSlotSize is each simulated slot's size.
const DefaultSlotSize = 2 << 20

// Options configure Start.
type Options struct {
	Devices    int      // how many
	Prefix     string   // device ID prefix; "" means "sim"
	Groups     []string // groups every device reports and follows
	FailHealth []string // globs over device IDs: these fail their health checks
	Silent     []string // globs over device IDs: these never finish a download
	Broker     string   // MQTT URL
	RepoURL    string   // repository base: RepoURL/metadata, RepoURL/targets
	Root       []byte   // the trusted TUF root
	Dir        string   // where devices keep their files (one directory each)
	SlotSize   int64    // 0: DefaultSlotSize
	Logger     *slog.Logger
}

// ID is device i's name (from 1).
func ID(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

// Fleet is a running set of simulated devices.
type Fleet struct {
	IDs []string
	wg  sync.WaitGroup
	ln  net.Listener // the silent devices' repository: accepts, never answers
}

// Start provisions the devices (or reuses what Dir holds from a previous
// run) and powers them on. They run until ctx ends; Wait waits for them.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	if o.SlotSize == 0 {
		o.SlotSize = DefaultSlotSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Devices < 1 || o.Broker == "" || o.RepoURL == "" || len(o.Root) == 0 || o.Dir == "" {
		return nil, fmt.Errorf("%w: need devices >= 1, a broker, a repository URL, a root and a directory", ErrOptions)
	}
	for _, g := range append(slices.Clone(o.FailHealth), o.Silent...) {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%w: glob %q: %w", ErrOptions, g, err)
		}
	}
	def, err := boards.Builtin().Lookup("sim")
	if err != nil {
		return nil, err
	}
	f := &Fleet{}
	if len(o.Silent) > 0 {
		if f.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("simulate: %w", err)
		}
		go f.blackhole(ctx)
	}
	for i := 1; i <= o.Devices; i++ {
		id := ID(o.Prefix, i)
		cfg, b, err := f.provision(o, def, id, Match(o.FailHealth, id), Match(o.Silent, id))
		if err != nil {
			return nil, err
		}
		f.IDs = append(f.IDs, id)
		log := o.Logger.With("device", id)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			err := b.Run(ctx, 0, func(ctx context.Context, _ string) (int, error) {
				err := daemon.Run(ctx, cfg, log, daemon.Hooks{})
				if errors.Is(err, daemon.ErrExitForReboot) {
					return boards.ExitReboot, nil
				}
				return 0, err
			})
			if err != nil && ctx.Err() == nil {
				log.Error("device stopped", "err", err)
			}
		}()
	}
	return f, nil
}

// Match reports whether id matches one of globs (path.Match syntax).
func Match(globs []string, id string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, id); ok {
			return true
		}
	}
	return false
}

// Wait waits until every device has stopped.
func (f *Fleet) Wait() {
	f.wg.Wait()
	if f.ln != nil {
		f.ln.Close()
	}
}

func (f *Fleet) provision(o Options, def boards.Board, id string, fail, silent bool) (*config.Config, *simboard.Board, error) {
	dir := filepath.Join(o.Dir, id)
	cfgPath := filepath.Join(dir, "agent.conf")
	factory := []byte("graft simulated factory image\n")
	var (
		b   *simboard.Board
		err error
	)
	if _, serr := os.Stat(cfgPath); serr == nil {
		b, err = simboard.Open(dir, def)
	} else {
		b, err = simboard.Provision(dir, def, o.SlotSize, factory)
		if err == nil {
			err = tuf.Init(filepath.Join(dir, "tuf"), o.Root)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("simulate: %s: %w", id, err)
	}
	c := config.Default()
	c.DeviceID, c.Board, c.DataDir, c.Groups = id, "sim", dir, o.Groups
	c.Broker, c.KeepAlive = o.Broker, 30*time.Second
	c.MetadataURL, c.TargetsURL = o.RepoURL+"/metadata", o.RepoURL+"/targets"
	c.HealthTimeout, c.LogLevel = 20*time.Second, "warn"
	if fail {
		c.HealthChecks = append(c.HealthChecks, "exec:false")
	}
	if silent {
		c.TargetsURL = "http://" + f.ln.Addr().String() + "/targets"
	}
	enc, err := c.Encode()
	if err == nil {
		err = os.WriteFile(cfgPath, enc, 0o644)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("simulate: %s: %w", id, err)
	}
	return &c, b, nil
}

// blackhole accepts connections and never answers until ctx ends.
func (f *Fleet) blackhole(ctx context.Context) {
	var conns []net.Conn
	go func() { <-ctx.Done(); f.ln.Close() }()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return
		}
		conns = append(conns, c)
	}
}
