package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/graft-dev/graft/tools/flash/console"
)

const consoleArgs = "[--port auto|PATH|usb:VID:PID[:SERIAL]] [--baud N] [--log FILE] | exec [--port P] CMD... | unlock --cert OP.crt --key OP.key [--scope CMD,...] [--ttl 15m] [--port P] | token --challenge LINE --cert OP.crt --key OP.key [--scope CMD,...] [--ttl 15m]"

// cmdConsole is graft-flash console: attach a terminal to a device's
// serial console, or run one console command, unlock, or sign a token.
func cmdConsole(ctx context.Context, e env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "exec":
			return consoleExec(ctx, e, args[1:])
		case "unlock":
			return consoleUnlock(ctx, e, args[1:])
		case "token":
			return consoleToken(e, args[1:])
		}
	}
	fs := flags(e, "console", consoleArgs)
	port := fs.String("port", "auto", "serial `port`: auto (the only USB adapter), a path (a /dev/serial/by-id name survives replugging), or usb:VID:PID[:SERIAL]")
	baud := fs.Int("baud", 115200, "line `speed`")
	logFile := fs.String("log", "", "append everything the device sends to `FILE`, each line timestamped, with unplug/replug events")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected %q (graft-flash console exec CMD... runs one command)", errUsage, fs.Arg(0))
	}
	o := console.AttachOptions{Spec: *port, Baud: *baud}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Log = f
	}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
	}
	fmt.Fprintf(e.stderr, "graft-flash console on %s at %d baud; Ctrl-] ends\r\n", *port, *baud)
	return console.Attach(ctx, os.Stdin, e.stdout, o)
}

func openSession(ctx context.Context, port string, baud int) (*console.Session, error) {
	path, err := console.FindPort(port)
	if err != nil {
		return nil, err
	}
	return console.Open(ctx, path, baud)
}

func consoleExec(ctx context.Context, e env, args []string) error {
	fs := flags(e, "console exec", "[--port P] [--baud N] CMD... (the device's console command, e.g. status --json)")
	port := fs.String("port", "auto", "serial `port`")
	baud := fs.Int("baud", 115200, "line `speed`")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: console exec needs a command (try: help)", errUsage)
	}
	s, err := openSession(ctx, *port, *baud)
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := s.Exec(ctx, fs.Args()...)
	if err != nil {
		return err
	}
	fmt.Fprint(e.stdout, res.Stdout)
	if res.Exit != 0 {
		return fmt.Errorf("device: %s (exit %d)", strings.TrimSpace(res.Stderr), res.Exit)
	}
	fmt.Fprint(e.stderr, res.Stderr)
	return nil
}

func splitScope(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func consoleUnlock(ctx context.Context, e env, args []string) error {
	fs := flags(e, "console unlock", "--cert OP.crt --key OP.key [--scope CMD,...] [--ttl 15m] [--port P]")
	cert := fs.String("cert", "", "operator certificate `FILE` (graft-fleet ca issue --operator NAME --role admin)")
	key := fs.String("key", "", "its key `FILE`")
	scope := fs.String("scope", "*", "commands the token unlocks, comma-separated (mark-good,rollback,revert,install,bootenv set,reboot; * for all)")
	ttl := fs.Duration("ttl", 15*time.Minute, "how long the unlock lasts after the challenge (at most 1h)")
	port := fs.String("port", "auto", "serial `port`")
	baud := fs.Int("baud", 115200, "line `speed`")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return fmt.Errorf("%w: --cert and --key are required", errUsage)
	}
	op, err := console.LoadOperator(*cert, *key)
	if err != nil {
		return err
	}
	s, err := openSession(ctx, *port, *baud)
	if err != nil {
		return err
	}
	defer s.Close()
	said, err := s.Unlock(ctx, op, splitScope(*scope), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, said)
	return nil
}

func consoleToken(e env, args []string) error {
	fs := flags(e, "console token", "--challenge LINE --cert OP.crt --key OP.key [--scope CMD,...] [--ttl 15m]")
	challenge := fs.String("challenge", "", "the challenge `LINE` the device printed (graft-challenge-v1:…)")
	cert := fs.String("cert", "", "operator certificate `FILE`")
	key := fs.String("key", "", "its key `FILE`")
	scope := fs.String("scope", "*", "commands the token unlocks, comma-separated (* for all)")
	ttl := fs.Duration("ttl", 15*time.Minute, "how long the unlock lasts after the challenge (at most 1h)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *challenge == "" || *cert == "" || *key == "" {
		return fmt.Errorf("%w: --challenge, --cert and --key are required", errUsage)
	}
	op, err := console.LoadOperator(*cert, *key)
	if err != nil {
		return err
	}
	tok, err := op.Token(*challenge, splitScope(*scope), *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}
