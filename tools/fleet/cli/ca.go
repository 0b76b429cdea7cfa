package cli

import (
	"context"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
)

func caInitCmd() command {
	return command{
		name:    "ca init",
		summary: "create the fleet CA in DIR: DIR/ca.crt is public (brokers and devices trust it), DIR/ca.key stays private (0600)",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "CA `DIR` (created 0700; required)")
			name := fs.String("name", "", "CA common `NAME` (default \"graft fleet CA\")")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("dir", *dir); err != nil {
					return err
				}
				c, err := ca.Init(*dir, ca.Options{Name: *name, Now: e.now})
				if err != nil {
					return err
				}
				crt := filepath.Join(*dir, ca.CertFile)
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{
						"ca": crt, "crl": filepath.Join(*dir, ca.CRLFile), "not_after": c.Certificate().NotAfter.UTC(),
					})
				}
				_, err = fmt.Fprintf(e.stdout, "CA %s (valid until %s); revocation list %s\n", crt,
					c.Certificate().NotAfter.UTC().Format(time.DateOnly), filepath.Join(*dir, ca.CRLFile))
				return err
			}
		},
	}
}

func caIssueCmd() command {
	return command{
		name:    "ca issue",
		summary: "issue a device, operator or broker certificate: OUT/NAME.crt, and OUT/NAME.key (0600) unless --csr gives the holder's own key",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "CA `DIR` (required)")
			device := fs.String("device", "", "a device certificate for device `ID`")
			operator := fs.String("operator", "", "an operator certificate for `NAME`")
			role := fs.String("role", string(identity.RoleAdmin), "operator `ROLE`: admin (notify, read everything) or viewer (read device status)")
			server := fs.String("server", "", "a broker (TLS server) certificate named `NAME`")
			var hosts stringList
			fs.Var(&hosts, "host", "broker host name or IP `H` (repeatable; with --server; default localhost and 127.0.0.1)")
			csrFile := fs.String("csr", "", "certificate request `FILE` (PEM or DER) holding the key to certify; no key is written")
			days := fs.Int("days", 0, "validity in `DAYS` (default: device 3650, operator 365, broker 730)")
			out := fs.String("out", "", "output `DIR` (required)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("dir", *dir); err != nil {
					return err
				}
				if err := requireFlag("out", *out); err != nil {
					return err
				}
				if err := exactlyOne("--device, --operator or --server", *device, *operator, *server); err != nil {
					return err
				}
				if *days < 0 {
					return usagef("--days must not be negative")
				}
				if len(hosts) > 0 && *server == "" {
					return usagef("--host goes with --server")
				}
				validity := time.Duration(*days) * 24 * time.Hour
				var csr []byte
				if *csrFile != "" {
					if *server != "" {
						return usagef("--csr is for device and operator certificates")
					}
					var err error
					if csr, err = os.ReadFile(*csrFile); err != nil {
						return err
					}
				}
				var id identity.Identity
				var err error
				switch {
				case *device != "":
					id, err = identity.NewDevice(*device)
				case *operator != "":
					id, err = identity.NewOperator(*operator, identity.Role(*role))
				default:
					if err := validName(*server); err != nil {
						return usagef("--server: %v", err)
					}
				}
				if err != nil {
					return usagef("%v", err)
				}
				c, err := ca.Open(*dir, ca.Options{Now: e.now})
				if err != nil {
					return err
				}
				var iss *ca.Issued
				switch {
				case *server != "":
					if len(hosts) == 0 {
						hosts = stringList{"localhost", "127.0.0.1"}
					}
					iss, err = c.IssueServer(*server, hosts, validity)
				case csr != nil:
					iss, err = c.IssueCSR(id, csr, validity)
				default:
					iss, err = c.IssueNewKey(id, validity)
				}
				if err != nil {
					return err
				}
				crt, key, err := iss.Write(*out)
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{
						"kind": iss.Kind, "name": iss.Name, "identity": iss.Cert.Subject.CommonName,
						"serial": iss.Cert.SerialNumber.String(), "not_after": iss.Cert.NotAfter.UTC(),
						"cert": crt, "key": key,
					})
				}
				fmt.Fprintf(e.stdout, "%s %s: %s (serial %s, valid until %s)\n", iss.Kind, iss.Cert.Subject.CommonName, crt,
					iss.Cert.SerialNumber, iss.Cert.NotAfter.UTC().Format(time.DateOnly))
				if key != "" {
					_, err = fmt.Fprintf(e.stdout, "key %s (keep it private)\n", key)
				}
				return err
			}
		},
	}
}

func caRevokeCmd() command {
	return command{
		name:    "ca revoke",
		summary: "revoke a device's or operator's certificates, or one serial, and rewrite DIR/crl.pem (reload external brokers afterwards)",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			dir := fs.String("dir", "", "CA `DIR` (required)")
			device := fs.String("device", "", "revoke every certificate of device `ID`")
			operator := fs.String("operator", "", "revoke every certificate of operator `NAME`")
			serial := fs.String("serial", "", "revoke the certificate with serial `N` (decimal, or hex with 0x)")
			asJSON := fs.Bool("json", false, "print the result as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("dir", *dir); err != nil {
					return err
				}
				if err := exactlyOne("--device, --operator or --serial", *device, *operator, *serial); err != nil {
					return err
				}
				var (
					sn   *big.Int
					kind identity.Kind
					name string
				)
				switch {
				case *serial != "":
					var ok bool
					if sn, ok = new(big.Int).SetString(*serial, 0); !ok || sn.Sign() <= 0 {
						return usagef("--serial %q is not a positive number", *serial)
					}
				case *device != "":
					kind, name = identity.Device, *device
				default:
					kind, name = identity.Operator, *operator
				}
				c, err := ca.Open(*dir, ca.Options{Now: e.now})
				if err != nil {
					return err
				}
				revoked, err := c.Revoke(sn, kind, name)
				if err != nil {
					return err
				}
				list := make([]string, len(revoked))
				for i, s := range revoked {
					list[i] = s.String()
				}
				crl := filepath.Join(*dir, ca.CRLFile)
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{"revoked": list, "crl": crl})
				}
				if len(list) == 0 {
					_, err = fmt.Fprintln(e.stdout, "already revoked")
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "revoked %s; %s rewritten\n", strings.Join(list, ", "), crl)
				return err
			}
		},
	}
}

// validName checks a broker certificate's name, used as a file name.
func validName(s string) error {
	_, err := identity.NewDevice(s) // same character set as device IDs
	return err
}

// exactlyOne refuses a command line that does not give exactly one of
// some alternative flags (named in what).
func exactlyOne(what string, values ...string) error {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return usagef("exactly one of %s is required", what)
	}
	return nil
}
