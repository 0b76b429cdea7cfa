// Command graft-fleet publishes releases, notifies devices, shows their
// state and serves a bench broker and repository. See docs/fleet.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/graft-dev/graft/tools/fleet/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
