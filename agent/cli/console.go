package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/console"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/serialtty"
)

// startConsole serves the [console] tty beside the daemon until ctx ends,
// reopening the tty when it fails (a USB gadget unplugged). Changing
// commands go to the daemon's loop through actions.
func startConsole(ctx context.Context, cfgPath string, cfg *config.Config, ring *console.Ring, log *slog.Logger, actions chan<- daemon.Action) (func(), error) {
	guard := &console.Guard{Device: cfg.DeviceID, Off: cfg.Console.GuardOff}
	if !guard.Off {
		caFile := cfg.Console.OperatorCA
		if caFile == "" {
			caFile = cfg.CAFile
		}
		if caFile == "" {
			return nil, fmt.Errorf("console: [console] guard is on but no operator CA is set ([console] operator_ca or [mqtt] ca)")
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		guard.Roots = x509.NewCertPool()
		if !guard.Roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("console: %s holds no PEM certificate", caFile)
		}
	}
	opts := console.Options{
		Device: cfg.DeviceID,
		Guard:  guard,
		Ring:   ring,
		Logger: log,
		Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return Run(ctx, withConfig(args, cfgPath), stdout, stderr)
		},
		Act: func(ctx context.Context, op, cmd string, args []string, out io.Writer) error {
			a := daemon.Action{Operator: op, Command: cmd, Args: args, Out: out}
			if cmd == "bootenv set" {
				a.Fn = func(ctx context.Context) error {
					if code := Run(ctx, withConfig(append([]string{"bootenv", "set"}, args...), cfgPath), out, out); code != 0 {
						return fmt.Errorf("bootenv set: exit %d", code)
					}
					return nil
				}
			}
			done := make(chan error, 1)
			a.Done = done
			select {
			case actions <- a:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case err := <-done:
				if errors.Is(err, daemon.ErrExitForReboot) {
					return nil // done: the board reboots
				}
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Journal: func() ([]byte, error) { return os.ReadFile(filepath.Join(cfg.DataDir, "journal.json")) },
	}
	log.Info("console: serving", "tty", cfg.Console.TTY, "baud", cfg.Console.Baud, "guard", !guard.Off)
	cctx, cancel := context.WithCancel(ctx)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for cctx.Err() == nil {
			tty, err := serialtty.Open(cfg.Console.TTY, cfg.Console.Baud)
			if err != nil {
				log.Warn("console: cannot open the tty; retrying", "tty", cfg.Console.TTY, "err", err)
			} else {
				go func() { <-cctx.Done(); tty.Close() }()
				err = console.Serve(cctx, tty, opts)
				tty.Close()
				if cctx.Err() == nil {
					log.Warn("console: line ended; reopening", "tty", cfg.Console.TTY, "err", err)
				}
			}
			select {
			case <-cctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return func() { cancel(); <-ended }, nil
}

// withConfig puts --config FILE after the command (after get/set for
// bootenv), where the command's flags are parsed.
func withConfig(args []string, cfgPath string) []string {
	n := 1
	if len(args) > 1 && args[0] == "bootenv" {
		n = 2
	}
	if len(args) < n {
		return args
	}
	return slices.Concat(args[:n], []string{"--config", cfgPath}, args[n:])
}
