// Package cli is graft-fleet's command line: it parses each subcommand's
// flags (one flag.FlagSet per subcommand), calls the packages that do the
// work (tuf/repo, tools/fleet/release, tools/fleet/fleetstate,
// tools/fleet/serve, transport) and prints their results, as text or, with
// --json, as JSON for scripts.
//
// Exit codes: 0 success, 1 failure, 2 usage error; a failure prints one
// line on stderr. It must never hold logic the packages below can own,
// never call os.Exit (main does), and never read process-global state
// beyond what Run is given, so tests can run commands in-process.
package cli
