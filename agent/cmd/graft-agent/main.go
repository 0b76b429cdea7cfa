// Command graft-agent is graft's device agent. See `graft-agent --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/graft-dev/graft/agent/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
