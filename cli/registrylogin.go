package cli

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/emulator"
)

// newRegistryLoginCmd is `malocal registry login`: the local Docker engine
// logs in to the emulator's registry with the emulator's credentials, as
// the platform's guide has users log in to SWR.
func newRegistryLoginCmd(g *globals) *cobra.Command {
	var dockerBin string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log the local Docker engine in to the registry (docker login with the password on stdin)",
		Long: `Log the local Docker engine in to the emulator's registry, so that docker
push and docker pull of your own images work. It runs
  docker login --username $MALOCAL_REGISTRY_USERNAME --password-stdin $MALOCAL_REGISTRY
with the credentials kept in the data dir (printed by malocal env). The
official bases (eiwizard/...) can be pulled without logging in.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.dataDirPath()
			if err != nil {
				return err
			}
			dd, err := emulator.OpenDataDir(dir)
			if err != nil {
				return err
			}
			c, err := dd.Credentials()
			if err != nil {
				return err
			}
			if c.RegistryPassword == "" {
				return fmt.Errorf("the data dir %s has no registry credentials yet: start the emulator once with `malocal up`", dd.Path)
			}
			host := registryPrefix(emulator.DefaultRegistryAddr)
			rt, err := dd.Running()
			switch {
			case err == nil:
				host = registryPrefix(rt.Registry)
			case errors.Is(err, emulator.ErrNotRunning):
				fmt.Fprintf(cmd.ErrOrStderr(), "no emulator runs on this data dir: logging in to the default address %s\n", host)
			default:
				return err
			}
			bin, err := exec.LookPath(dockerBin)
			if err != nil {
				return fmt.Errorf("the docker CLI (%s) is not on PATH: install it, or log in another client with the user name and password from `malocal env`: %w", dockerBin, err)
			}
			login := exec.CommandContext(cmd.Context(), bin, "login", "--username", c.RegistryUsername, "--password-stdin", host)
			login.Stdin = strings.NewReader(c.RegistryPassword)
			login.Stdout, login.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := login.Run(); err != nil {
				return fmt.Errorf("docker login %s: %w", host, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dockerBin, "docker", "docker", "the docker CLI to log in with")
	return cmd
}
