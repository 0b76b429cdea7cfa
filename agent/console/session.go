package console

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/graft-dev/graft/transport/serialframe"
)

// Runner runs one of graft-agent's own read-only commands (status, slots,
// patches, bootenv get) with its arguments and returns its exit code.
type Runner func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Actor carries out a command that changes the device (mark-good,
// rollback, revert, install, bootenv set, reboot) for operator, writing
// what it did to out. The agent's daemon implements it, so actions are
// serialized with updates and reported in the status history.
type Actor func(ctx context.Context, operator, command string, args []string, out io.Writer) error

// Options configure Serve.
type Options struct {
	Device  string
	Guard   *Guard
	Ring    *Ring // the agent's log; nil: log shows nothing
	Run     Runner
	Act     Actor
	Journal func() ([]byte, error) // the journal record, JSON
	// WriteTimeout bounds one write to the line (default 2s): output to a
	// terminal that does not read is dropped after it.
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Commands that need an unlock.
var Guarded = []string{"mark-good", "rollback", "revert", "install", "bootenv set", "reboot"}

// ExecRequest and ExecResult are the machine mode's "exec" request: the
// same command line a person types, and what it printed.
type ExecRequest struct {
	Args []string `cbor:"1,keyasint"`
}

type ExecResult struct {
	Exit   int    `cbor:"1,keyasint"`
	Stdout string `cbor:"2,keyasint,omitempty"`
	Stderr string `cbor:"3,keyasint,omitempty"`
}

// maxOutput bounds one command's output in machine mode (a frame's payload
// is at most serialframe.MaxPayload).
const maxOutput = 12 << 10

// Serve runs the console on rw until ctx ends or the line fails.
func Serve(ctx context.Context, rw io.ReadWriter, o Options) error {
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ln := &line{rw: rw, timeout: o.WriteTimeout}
	s := &session{o: o, out: crlf{ln}, lines: make(chan string, 4), stop: make(chan struct{}, 1)}
	peer := serialframe.NewPeer(ln, serialframe.Options{
		Handler:      s.handle,
		OnText:       s.text,
		WriteTimeout: o.WriteTimeout,
		Logger:       o.Logger,
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.worker(ctx)
	fmt.Fprintf(s.out, "\ngraft console on %s: type help\n%s", o.Device, prompt)
	return peer.Run(ctx)
}

const prompt = "graft> "

type session struct {
	o     Options
	out   io.Writer
	lines chan string
	stop  chan struct{}
}

// text takes a typed line from the reader: queued for the worker, or
// dropped when it lags (a flood), and it stops a log -f.
func (s *session) text(l []byte) {
	select {
	case s.stop <- struct{}{}:
	default:
	}
	select {
	case s.lines <- string(l):
	default:
		fmt.Fprintf(s.out, "\n(input dropped: a command is still running)\n")
	}
}

func (s *session) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-s.lines:
			select { // a stop meant for an earlier follow
			case <-s.stop:
			default:
			}
			args := strings.Fields(l)
			if len(args) > 0 {
				if code := s.exec(ctx, args, s.out, s.out, true); code != 0 {
					fmt.Fprintf(s.out, "(exit %d)\n", code)
				}
			}
			fmt.Fprint(s.out, prompt)
		}
	}
}

// handle answers the machine mode's requests.
func (s *session) handle(ctx context.Context, typ string, body []byte) (any, error) {
	if typ != "exec" {
		return nil, &serialframe.RemoteError{Code: serialframe.CodeUnsupported, Message: "console: unknown request " + typ}
	}
	var req ExecRequest
	if err := serialframe.Unmarshal(body, &req); err != nil || len(req.Args) == 0 || len(req.Args) > 64 {
		return nil, &serialframe.RemoteError{Code: "usage", Message: "console: exec needs a command line"}
	}
	var stdout, stderr bytes.Buffer
	code := s.exec(ctx, req.Args, &limited{w: &stdout, n: maxOutput}, &limited{w: &stderr, n: 2 << 10}, false)
	return ExecResult{Exit: code, Stdout: stdout.String(), Stderr: stderr.String()}, nil
}

// exec runs one command line and returns its exit code.
func (s *session) exec(ctx context.Context, args []string, stdout, stderr io.Writer, human bool) int {
	name, rest := args[0], args[1:]
	if name == "bootenv" && len(rest) > 0 && rest[0] == "set" {
		name, rest = "bootenv set", rest[1:] // the actor gets NAME=VALUE... only
	}
	switch name {
	case "help":
		fmt.Fprint(stdout, helpText)
		return 0
	case "status", "slots", "patches":
		return s.o.Run(ctx, append([]string{name}, rest...), stdout, stderr)
	case "bootenv":
		if len(rest) == 0 || rest[0] != "get" {
			fmt.Fprintln(stderr, "usage: bootenv get NAME... | bootenv set NAME=VALUE...")
			return 2
		}
		return s.o.Run(ctx, args, stdout, stderr)
	case "journal":
		if s.o.Journal == nil {
			fmt.Fprintln(stderr, "no journal")
			return 1
		}
		b, err := s.o.Journal()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		stdout.Write(append(bytes.TrimRight(b, "\n"), '\n'))
		return 0
	case "log":
		return s.log(ctx, rest, stdout, stderr, human)
	case "challenge":
		ch, err := s.o.Guard.NewChallenge()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintln(stdout, ch)
		if human {
			fmt.Fprintln(stdout, "sign it with an admin operator key: graft-flash console token --challenge '<line above>' --cert OP.crt --key OP.key; then: unlock TOKEN")
		}
		return 0
	case "unlock":
		if len(rest) != 1 {
			fmt.Fprintln(stderr, "usage: unlock TOKEN")
			return 2
		}
		op, scope, left, err := s.o.Guard.Unlock(rest[0])
		if err != nil {
			s.o.Logger.Warn("console: unlock refused", "err", err)
			fmt.Fprintln(stderr, err)
			return 1
		}
		s.o.Logger.Info("console: unlocked", "operator", op, "scope", strings.Join(scope, ","), "for", left.Round(time.Second))
		fmt.Fprintf(stdout, "unlocked for %s: %s, %v left\n", op, strings.Join(scope, ","), left.Round(time.Second))
		return 0
	case "lock":
		s.o.Guard.Lock()
		fmt.Fprintln(stdout, "locked")
		return 0
	case "mark-good", "rollback", "revert", "install", "bootenv set", "reboot":
		op, err := s.o.Guard.Allow(name)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := s.o.Act(ctx, op, name, rest, stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q: type help\n", name)
	return 2
}

func (s *session) log(ctx context.Context, args []string, stdout, stderr io.Writer, human bool) int {
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 20, "lines")
	follow := fs.Bool("f", false, "follow (until the next line typed)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if s.o.Ring == nil {
		return 0
	}
	for _, l := range s.o.Ring.Last(*n) {
		fmt.Fprintln(stdout, l)
	}
	if !*follow || !human {
		return 0
	}
	_, seq := s.o.Ring.Since(^uint64(0))
	for {
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-wctx.Done():
			}
		}()
		s.o.Ring.Wait(wctx, seq)
		stopped := wctx.Err() != nil
		cancel()
		if stopped {
			return 0
		}
		var lines []string
		lines, seq = s.o.Ring.Since(seq)
		for _, l := range lines {
			if _, err := fmt.Fprintln(stdout, l); err != nil && errors.Is(err, context.DeadlineExceeded) {
				break // a wedged terminal: drop, keep following
			}
		}
	}
}

// limited keeps the first n bytes written and marks the cut.
type limited struct {
	w   *bytes.Buffer
	n   int
	cut bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room < len(p) {
		if room > 0 {
			l.w.Write(p[:room])
		}
		if !l.cut {
			l.cut = true
			l.w.WriteString("\n(output cut at " + strconv.Itoa(l.n) + " bytes)\n")
		}
		return len(p), nil
	}
	return l.w.Write(p)
}

const helpText = `read-only:
  status [--json]          what is installed, booted and in flight
  slots [--json]           the slots and the bootloader's view of them
  patches [--json]         live patches applied
  log [-n N] [-f]          the agent's recent log (-f follows until you type a line)
  bootenv get NAME...      bootloader variables
  journal                  the agent's journal record
  challenge / unlock TOKEN / lock
needs an unlock (challenge, then unlock with a token an admin operator signed):
  mark-good                mark the booted slot good
  rollback                 boot the other slot's release (reported to the fleet)
  revert PATCH             revert a userspace live patch
  install --offline DIR    install from a TUF repository on a directory or USB stick
  bootenv set NAME=VALUE   change a bootloader variable
  reboot
`
