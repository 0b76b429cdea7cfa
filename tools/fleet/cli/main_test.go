package cli_test

import (
	"os"
	"testing"

	"github.com/graft-dev/graft/tools/fleet/cli"
)

// TestMain gives every command the key passphrase through the
// environment, as a CI job would.
func TestMain(m *testing.M) {
	os.Setenv(cli.PassphraseEnv, "test passphrase")
	os.Exit(m.Run())
}
