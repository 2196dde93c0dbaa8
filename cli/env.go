package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

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

func newEnvCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "env",
		Short: "Print shell exports for S3 clients and the registry: eval $(malocal env)",
		Long: `Print the object store's endpoint and keys as shell exports, for any S3
client or SDK, the registry prefix to tag images with and the registry's
user name and password (for docker login). Use it as
  eval $(malocal env)
The addresses are those of the running emulator, or the defaults when none runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.dataDirPath()
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
			rt, err := dd.Running()
			switch {
			case err == nil:
				v.Running = true
				v.Endpoint, v.Registry, v.API = "http://"+rt.S3, registryPrefix(rt.Registry), rt.API
			case errors.Is(err, emulator.ErrNotRunning):
				v.Endpoint, v.Registry, v.API = "http://"+emulator.DefaultS3Addr, registryPrefix(emulator.DefaultRegistryAddr), emulator.DefaultAPIAddr
			default:
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return g.printData(out, v, nil, nil)
			}
			if !v.Running {
				fmt.Fprintln(out, "# no emulator runs on this data dir: these are the default addresses (start it with `malocal up`)")
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
