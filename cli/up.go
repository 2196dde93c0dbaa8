package cli

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/emulator"
)

func newUpCmd(g *globals) *cobra.Command {
	cfg := emulator.Config{}
	var logFormat string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the emulator: API and console, S3 API and registry, in one process",
		Long: `Start the emulator in the foreground. It serves until interrupted (Ctrl-C or
SIGTERM), then lets in-flight requests finish within --shutdown-timeout.
Every listener binds to loopback unless told otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.dataDirPath()
			if err != nil {
				return err
			}
			cfg.DataDir = dir
			cfg.Version = Version()
			var h slog.Handler
			switch logFormat {
			case "text":
				h = slog.NewTextHandler(cmd.ErrOrStderr(), nil)
			case "json":
				h = slog.NewJSONHandler(cmd.ErrOrStderr(), nil)
			default:
				return fmt.Errorf("--log-format %q: use text or json", logFormat)
			}
			cfg.Logger = slog.New(h)
			e, err := emulator.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			rt := e.Runtime()
			cfg.Logger.Info("ready", "data_dir", e.DataDir().Path, "pid", rt.PID,
				"hint", "in another shell: eval $(malocal env"+dataDirFlag(g)+")")
			return e.Wait(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.APIAddr, "api-addr", cmp.Or(os.Getenv("MALOCAL_API_ADDR"), emulator.DefaultAPIAddr), "address of the API and console (env MALOCAL_API_ADDR)")
	f.StringVar(&cfg.S3Addr, "s3-addr", cmp.Or(os.Getenv("MALOCAL_S3_ADDR"), emulator.DefaultS3Addr), "address of the S3 API (env MALOCAL_S3_ADDR)")
	f.StringVar(&cfg.RegistryAddr, "registry-addr", cmp.Or(os.Getenv("MALOCAL_REGISTRY_ADDR"), emulator.DefaultRegistryAddr), "address of the registry (env MALOCAL_REGISTRY_ADDR)")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", envDuration("MALOCAL_SHUTDOWN_TIMEOUT", 10*time.Second), "how long in-flight requests may run after SIGINT or SIGTERM (env MALOCAL_SHUTDOWN_TIMEOUT)")
	f.StringVar(&logFormat, "log-format", cmp.Or(os.Getenv("MALOCAL_LOG_FORMAT"), "text"), "log format: text or json (env MALOCAL_LOG_FORMAT)")
	return cmd
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// dataDirFlag repeats --data-dir in hints, so they work as printed.
func dataDirFlag(g *globals) string {
	if g.dataDir == "" {
		return ""
	}
	return " --data-dir " + g.dataDir
}
