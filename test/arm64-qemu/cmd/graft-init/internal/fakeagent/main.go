// Command fakeagent stands in for graft-agent in the rig's boot test of
// graft-init's reboot path: it exits with status 75, which is how the
// agent asks for a reboot on a board whose reboot method is to exit.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Printf("fakeagent: %s; PATH=%s; exiting with status 75\n", strings.Join(os.Args[1:], " "), os.Getenv("PATH"))
	os.Exit(75)
}
