// Package cli holds malocal's cobra commands. Commands are thin: they parse
// flags, call the API client or one library verb, and print.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/api"
)

// globals are the flags every command shares.
type globals struct {
	dataDir string
	apiAddr string
	output  string
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Execute runs the CLI and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "malocal:", err)
	if errors.Is(err, api.ErrUnauthorized) {
		fmt.Fprintln(stderr, "malocal: the API wants the token of the emulator it belongs to: set MALOCAL_TOKEN to the contents of that emulator's DATA_DIR/api-token, or pass its --data-dir")
	}
	// A job refused for its image's stored failing verdict: the report,
	// and the exit code of an audit failure.
	var re *api.RemoteError
	if errors.As(err, &re) && errors.Is(err, api.ErrAuditFailed) {
		for _, l := range re.Audit {
			fmt.Fprintln(stderr, "  "+l)
		}
		fmt.Fprintln(stderr, "malocal: no job was made; fix what the audit found, build and push the image again (a new digest is audited anew)")
		return api.ExitCodeAuditFailed
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "malocal",
		Short: "Run ModelArts custom-image training on your own machine, offline",
		Long: `malocal emulates ModelArts custom-image training on one machine: an image
registry (SWR), an S3-compatible object store (OBS), the image audit and
training jobs on Docker containers that see the platform's environment.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.dataDir, "data-dir", os.Getenv("MALOCAL_DATA_DIR"), "data dir (env MALOCAL_DATA_DIR; default $XDG_DATA_HOME/malocal or ~/.local/share/malocal)")
	pf.StringVar(&g.apiAddr, "api", os.Getenv("MALOCAL_API"), "address of a running emulator's API, for client commands (env MALOCAL_API; default: read from the data dir); its token comes from MALOCAL_TOKEN or the data dir's api-token")
	pf.StringVarP(&g.output, "output", "o", "table", "output format of commands that print data: table or json")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if g.output != "table" && g.output != "json" {
			return fmt.Errorf("--output %q: use table or json", g.output)
		}
		return nil
	}

	// Commands register here, one line each.
	root.AddCommand(
		newUpCmd(g),
		newEnvCmd(g),
		newStatusCmd(g),
		newVersionCmd(g),
		newImageCmd(g), newRegistryCmd(g),
		newObsCmd(g),
		newBaseCmd(g),
		newJobCmd(g),
		newRunCmd(g),
		newSamplesCmd(g), newDemoCmd(g),
		newUICmd(g),
	)
	attachImageAudit(root, g) // malocal image audit, in audit.go
	plainImageErrors(root)    // after every image subcommand is attached
	return root
}
