package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/graft-dev/graft/agent/atomicfile"
	"github.com/graft-dev/graft/tools/fleet/brokerconf"
	"github.com/graft-dev/graft/tools/fleet/ca"
	"github.com/graft-dev/graft/transport/identity"
)

// brokerCertName is the stem of the broker certificate broker-config
// issues.
const brokerCertName = "broker"

func brokerConfigMosquittoCmd() command {
	return command{
		name:    "broker-config mosquitto",
		summary: "write a mosquitto configuration enforcing the fleet's rules (mTLS, CRL, identity as user name and client ID, ACLs); run it again after issuing or revoking an operator",
		setup: func(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
			caDir := fs.String("ca", "", "fleet CA `DIR` (required)")
			out := fs.String("out", "", "output `DIR`: mosquitto.conf, acl, broker.crt, broker.key, data/ for persistence (required; mosquitto's user must be able to write data/)")
			port := fs.Int("port", 8883, "TLS listener `PORT`")
			bind := fs.String("bind", "", "listen `IP` (default all addresses)")
			var hosts stringList
			fs.Var(&hosts, "host", "name or IP `H` devices use to reach the broker, for its certificate (repeatable; default localhost, 127.0.0.1)")
			asJSON := fs.Bool("json", false, "print the written files as JSON")
			return func(ctx context.Context, args []string) error {
				if err := wantArgs(args, 0, "no arguments"); err != nil {
					return err
				}
				if err := requireFlag("ca", *caDir); err != nil {
					return err
				}
				if err := requireFlag("out", *out); err != nil {
					return err
				}
				caAbs, err := filepath.Abs(*caDir)
				if err != nil {
					return err
				}
				outAbs, err := filepath.Abs(*out)
				if err != nil {
					return err
				}
				c, err := ca.Open(caAbs, ca.Options{Now: e.now})
				if err != nil {
					return err
				}
				ops, err := c.Names(identity.Operator)
				if err != nil {
					return err
				}
				p := brokerconf.MosquittoParams{
					Bind: *bind, Port: *port,
					CAFile:   filepath.Join(caAbs, ca.CertFile),
					CRLFile:  filepath.Join(caAbs, ca.CRLFile),
					CertFile: filepath.Join(outAbs, brokerCertName+".crt"),
					KeyFile:  filepath.Join(outAbs, brokerCertName+".key"),
					ACLFile:  filepath.Join(outAbs, "acl"),
					DataDir:  filepath.Join(outAbs, "data"),
				}
				for _, o := range ops {
					p.Operators = append(p.Operators, brokerconf.Operator{Name: o.Name, Role: identity.Role(o.Role)})
				}
				files, err := brokerconf.Mosquitto(p)
				if err != nil {
					return usagef("%v", err)
				}
				if err := os.MkdirAll(p.DataDir, 0o700); err != nil {
					return err
				}
				if _, err := os.Stat(p.CertFile); errors.Is(err, os.ErrNotExist) {
					if len(hosts) == 0 {
						hosts = stringList{"localhost", "127.0.0.1"}
					}
					iss, err := c.IssueServer(brokerCertName, hosts, 0)
					if err != nil {
						return err
					}
					if _, _, err := iss.Write(outAbs); err != nil {
						return err
					}
				} else if err != nil {
					return err
				}
				conf := filepath.Join(outAbs, "mosquitto.conf")
				if err := atomicfile.WriteFile(p.ACLFile, []byte(files.ACL), 0o600); err != nil {
					return err
				}
				if err := atomicfile.WriteFile(conf, []byte(files.Conf), 0o600); err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, map[string]any{
						"conf": conf, "acl": p.ACLFile, "cert": p.CertFile, "key": p.KeyFile,
						"ca": p.CAFile, "crl": p.CRLFile, "operators": len(ops),
					})
				}
				_, err = fmt.Fprintf(e.stdout, "wrote %s and %s (%d operators); run: mosquitto -c %s\n", conf, p.ACLFile, len(ops), conf)
				return err
			}
		},
	}
}
