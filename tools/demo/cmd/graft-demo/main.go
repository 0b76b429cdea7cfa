// Command graft-demo is `make demo`: see package demo.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/graft-dev/graft/tools/demo"
)

func main() {
	exe, _ := os.Executable()
	binDir := flag.String("bin", filepath.Dir(exe), "`dir` holding graft-agent and graft-fleet")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := demo.Run(ctx, demo.Options{BinDir: *binDir, Out: os.Stdout, Keep: *keep}); err != nil {
		fmt.Fprintln(os.Stderr, "graft-demo:", err)
		os.Exit(1)
	}
}
