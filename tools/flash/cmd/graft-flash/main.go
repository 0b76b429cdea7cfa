// Command graft-flash is graft's factory provisioning station. See
// `graft-flash --help` and docs/flash.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/graft-dev/graft/tools/flash/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
