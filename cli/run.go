package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/runner"
)

func newRunCmd(g *globals) *cobra.Command {
	var (
		o   runner.Options
		env []string
	)
	cmd := &cobra.Command{
		Use:   "run --code DIR --image IMAGE [flags] -- COMMAND...",
		Short: "Run a training script in a fresh emulator and exit with its result (for CI)",
		Long: `Run one training job end to end, as CI wants it: start a throwaway emulator
(or use a running one with --api on the command line; an exported
MALOCAL_API alone does not switch it), upload the code dir (the job finds it in
/home/work/user-job-dir/<basename of --code>/) and the data dir, push the
image (and the official base it was built on) from the local Docker engine
when the emulator lacks it, audit it, run the job on --nodes containers
while streaming their logs, download the job's output dir (DLS_TRAIN_URL)
to --output, and tear everything down, also on Ctrl-C.

Exit code: 0 when the job completed, the failing task's exit code, 124 on
timeout, 3 when the image failed the audit, 130 on Ctrl-C, 1 on other errors.`,
		Example: `  malocal run --code ./src --image my-train:1.0 --nodes 2 --data ./data --output ./out \
    --junit report.xml -- bash /home/work/run_train.sh python3 /home/work/user-job-dir/src/train.py --epochs 1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Command = args
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return api.Invalidf("--env %q: want KEY=VALUE", kv)
				}
				if o.Env == nil {
					o.Env = map[string]string{}
				}
				o.Env[k] = v
			}
			if err := checkRunFlags(cmd, o); err != nil {
				return err
			}
			// Only --api on the command line switches to a running emulator:
			// MALOCAL_API, exported by `eval "$(malocal env)"`, does not.
			if apiAddr, ok := apiFlag(cmd); ok {
				dd, err := g.openDataDir()
				if err != nil {
					return err
				}
				token := os.Getenv("MALOCAL_TOKEN")
				if token == "" {
					if token, err = dd.Token(); err != nil {
						return err
					}
				}
				o.Remote = &runner.Remote{API: apiAddr, Token: token, DataDir: dd.Path}
			}
			o.Stdout, o.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
			res, err := runner.Run(cmd.Context(), o)
			if err != nil {
				return &exitError{code: res.ExitCode, err: err}
			}
			if res.ExitCode != 0 {
				return &exitError{code: res.ExitCode, err: errors.New("the job did not complete")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Code, "code", "", "local code dir, uploaded as the job's code dir (required)")
	f.StringVar(&o.Image, "image", "", "image, in the emulator's registry or the local Docker engine (required)")
	f.IntVar(&o.Nodes, "nodes", 1, fmt.Sprintf("number of nodes (containers), %d to %d", 1, maxNodes))
	f.StringVar(&o.Data, "data", "", "local data dir, uploaded as the job's data dir (DLS_DATA_URL)")
	f.StringVar(&o.DataURL, "data-url", "", "data dir already in the object store (s3:// or obs://; useful with --api), instead of --data")
	f.StringVar(&o.Output, "output", "", "local dir the job's output dir (DLS_TRAIN_URL) is downloaded to")
	f.DurationVar(&o.Timeout, "timeout", 0, "time limit of the job, e.g. 30m; reaching it exits 124 (0: none)")
	f.StringArrayVar(&env, "env", nil, "extra environment variable KEY=VALUE (repeatable)")
	f.StringVar(&o.JUnit, "junit", "", "write a JUnit XML report here: one test case per task")
	f.StringVar(&o.Name, "name", "", "job name (default: the code dir's basename)")
	f.DurationVar(&o.StopGrace, "stop-grace", 10*time.Second, "throwaway emulator: time a stopped task gets between SIGTERM and SIGKILL")
	return cmd
}
