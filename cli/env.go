package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/malocal/malocal/emulator"
)

// envVars is what `malocal env` prints, in order.
type envVars struct {
	Running  bool   `json:"running"`
	Endpoint string `json:"s3_endpoint"`
	Access   string `json:"access_key"`
	Secret   string `json:"secret_key"`
	Region   string `json:"region"`
	Registry string `json:"registry"`
	RegUser  string `json:"registry_username"`
	RegPass  string `json:"registry_password"`
	API      string `json:"api"`
}

// How long `malocal env` waits: for `malocal up &` started a moment ago to
// take the data dir, and for an emulator that took it to write its
// addresses.
var (
	envRaceWait  = time.Second
	envStartWait = 20 * time.Second
)

// upAddrFlags are the `malocal up` settings `malocal env` shares, so that
// with no emulator running it prints the addresses up would use.
var upAddrFlags = []string{"api-addr", "s3-addr", "registry-addr", "config"}

func newEnvCmd(g *globals) *cobra.Command {
	// The flags are up's own: same names, variables, defaults and --config.
	upFlags := newUpCmd(g).Flags()
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Print shell exports for S3 clients, the registry prefix and the API: eval \"$(malocal env)\"",
		Long: `Print the object store's endpoint and keys as shell exports, for any S3
client or SDK, the registry prefix to tag images with, the registry's user name and
password (for docker login), and the API address client commands use. Use it as
  eval "$(malocal env)"
The addresses are those of the emulator running on the data dir. One that is
starting is waited for (a note goes to stderr). With none running, they are
the addresses ` + "`malocal up`" + ` would listen on, from the same flags
(--api-addr, --s3-addr, --registry-addr), MALOCAL_* variables and --config
file; the keys are the data dir's, created here when it is new.`,
		Example: `  malocal up &
  eval "$(malocal env)"
  aws s3 ls
  docker tag my-train:1.0 $MALOCAL_REGISTRY/my-train:1.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.dataDirPath()
			if err != nil {
				return err
			}
			rt, running, err := waitRuntime(cmd.Context(), dir, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// Creating the data dir here is what `up` would do first; it lets
			// people set up their shell before the first start.
			dd, err := emulator.EnsureDataDir(dir)
			if err != nil {
				return err
			}
			c, err := dd.Credentials()
			if err != nil {
				return err
			}
			v := envVars{Access: c.AccessKey, Secret: c.SecretKey, Region: c.Region, RegUser: c.RegistryUsername, RegPass: c.RegistryPassword}
			if running {
				v.Running = true
				v.Endpoint, v.Registry, v.API = "http://"+rt.S3, registryPrefix(rt.Registry), rt.API
			} else {
				api, s3, reg, err := upAddresses(upFlags)
				if err != nil {
					return err
				}
				v.Endpoint, v.Registry, v.API = "http://"+s3, registryPrefix(reg), api
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return g.printData(out, v, nil, nil)
			}
			if !v.Running {
				fmt.Fprintln(out, "# no emulator runs on this data dir: these are the addresses `malocal up` would use (start it with `malocal up`)")
			}
			for _, kv := range [][2]string{
				{"AWS_ENDPOINT_URL", v.Endpoint},
				{"S3_ENDPOINT", v.Endpoint},
				{"AWS_ACCESS_KEY_ID", v.Access},
				{"AWS_SECRET_ACCESS_KEY", v.Secret},
				{"AWS_DEFAULT_REGION", v.Region},
				{"MALOCAL_REGISTRY", v.Registry},
				{"MALOCAL_REGISTRY_USERNAME", v.RegUser},
				{"MALOCAL_REGISTRY_PASSWORD", v.RegPass},
				{"MALOCAL_API", v.API},
			} {
				fmt.Fprintf(out, "export %s=%s\n", kv[0], shellQuote(kv[1]))
			}
			return nil
		},
	}
	for _, name := range upAddrFlags {
		cmd.Flags().AddFlag(upFlags.Lookup(name))
	}
	return cmd
}

// upAddresses are the addresses `malocal up` would listen on with the
// flags, MALOCAL_* variables and --config file given.
func upAddresses(fs *pflag.FlagSet) (api, s3, registry string, err error) {
	if p := fs.Lookup("config").Value.String(); p != "" {
		if err := applyConfigFile(fs, p); err != nil {
			return "", "", "", err
		}
	}
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	return get("api-addr"), get("s3-addr"), get("registry-addr"), nil
}

// waitRuntime returns the runtime record of the emulator on dir. It waits
// envRaceWait for one to take the data dir (`malocal up &` a moment ago)
// and envStartWait for one that holds it to write its addresses, saying so
// on errw. running is false when no emulator runs there.
func waitRuntime(ctx context.Context, dir string, errw io.Writer) (rt emulator.Runtime, running bool, err error) {
	raceEnd := time.Now().Add(envRaceWait)
	var startEnd time.Time
	for {
		dd, oerr := emulator.OpenDataDir(dir)
		starting := false
		if oerr == nil {
			rt, err = dd.Running()
			switch {
			case err == nil:
				return rt, true, nil
			case errors.Is(err, emulator.ErrNotRunning):
			case errors.Is(err, fs.ErrNotExist): // held, no runtime.json yet
				starting = true
			default:
				return rt, false, err
			}
		}
		now := time.Now()
		switch {
		case starting && startEnd.IsZero():
			startEnd = now.Add(envStartWait)
			fmt.Fprintf(errw, "malocal env: the emulator on %s is starting; waiting up to %s for its addresses\n", dir, envStartWait)
		case starting && now.After(startEnd):
			return rt, false, fmt.Errorf("the emulator on %s holds the data dir but has not written its addresses after %s: see the output of its `malocal up`", dir, envStartWait)
		case !starting && startEnd.IsZero() && now.After(raceEnd):
			return rt, false, nil
		case !starting && !startEnd.IsZero():
			// It held the data dir and let go: it failed to start.
			return rt, false, fmt.Errorf("the emulator on %s stopped while starting: see the output of its `malocal up`", dir)
		}
		select {
		case <-ctx.Done():
			return rt, false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// registryPrefix is what images are tagged with: docker treats localhost
// as an insecure registry, so no TLS set-up is needed.
func registryPrefix(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
