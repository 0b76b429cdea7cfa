package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/graft-dev/graft/agent/config"
	"github.com/graft-dev/graft/agent/daemon"
	"github.com/graft-dev/graft/agent/provision"
)

const provisionArgs = "[--port TTY|fd:N] [--baud N] [--board NAME|auto] [--board-file FILE] [--data-dir DIR] [--config-out FILE] [--soc-serial S] [--init]"

// cmdProvision is provisioning mode: answer a graft-flash station on the
// console until it tells the device to reboot.
func cmdProvision(ctx context.Context, e env, args []string) error {
	fs := flags(e, "provision", provisionArgs)
	port := fs.String("port", "", "console `tty` the station speaks on (default: the board's console), or fd:N")
	baud := fs.Int("baud", 0, "baud rate (default: the board's)")
	board := fs.String("board", config.BoardAuto, "board `name`, or auto (device tree)")
	boardFile := fs.String("board-file", "", "extra board definitions `file`")
	dataDir := fs.String("data-dir", config.Default().DataDir, "agent data `directory` (key, certificate, TUF root, journal)")
	configOut := fs.String("config-out", "", "where the agent config goes (default DATA-DIR/agent.conf)")
	serial := fs.String("soc-serial", "", "SoC serial number to report (default: read from the device tree or /proc/cpuinfo)")
	asInit := fs.Bool("init", false, "run as the provisioning initramfs's /init: mount /proc, /sys, /dev first")
	logLevel := fs.String("log-level", "info", "log `level` (logs go to stderr)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *asInit {
		if err := provision.MountInit(); err != nil {
			return err
		}
	}
	log := logger(e.stderr, *logLevel)
	cfg := config.Default()
	cfg.Board, cfg.BoardFile, cfg.DataDir = *board, *boardFile, *dataDir
	if abs, err := filepath.Abs(*dataDir); err == nil {
		cfg.DataDir = abs
	}
	b, err := daemon.LoadBoard(&cfg)
	if err != nil {
		return err
	}
	facts := provision.ReadFacts(b)
	if *serial != "" {
		facts.Serial = *serial
	}
	if facts.Serial == "" {
		return errors.New("no SoC serial number found (device tree, /proc/cpuinfo): give --soc-serial")
	}
	if *port == "" {
		if b.Console == "" {
			return fmt.Errorf("%w: board %s has no console: give --port", errUsage, b.Name)
		}
		*port = "/dev/" + b.Console
	}
	if *baud == 0 {
		*baud = b.Baud
	}
	rebooted := make(chan error, 1)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	p, err := provision.New(provision.Options{
		Board: b, BoardFile: cfg.BoardFile, DataDir: cfg.DataDir, ConfigPath: *configOut, Facts: facts, Logger: log,
		Reboot: func(context.Context) error {
			rebooted <- nil
			stop()
			return nil
		},
	})
	if err != nil {
		return err
	}
	log.Info("provisioning mode", "board", b.Name, "serial", facts.Serial, "port", *port, "data_dir", cfg.DataDir)
	if err := p.Serve(pctx, func() (provision.Line, error) { return provision.OpenLine(*port, *baud) }); err != nil {
		return err
	}
	select {
	case <-rebooted:
		log.Info("provisioned: rebooting")
		return daemon.RebootBoard(ctx, b)
	default:
		if *asInit {
			os.Exit(1) // never return from init
		}
		return ctx.Err()
	}
}

// initArgsFile holds the provisioning initramfs's extra arguments, one a
// line (graft-flash initramfs writes it).
const initArgsFile = "/etc/graft/provision-args"

// initArgs is the command line of graft-agent as the provisioning
// initramfs's /init: provision --init, the board file the initramfs
// carries, and the arguments it was built with.
func initArgs() []string {
	args := []string{"provision", "--init"}
	if _, err := os.Stat("/etc/graft/boards.json"); err == nil {
		args = append(args, "--board-file", "/etc/graft/boards.json")
	}
	if b, err := os.ReadFile(initArgsFile); err == nil {
		args = append(args, strings.Fields(string(b))...)
	}
	return args
}
