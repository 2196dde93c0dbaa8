package cli

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/emulator"
	"github.com/malocal/malocal/netguard"
)

func newUpCmd(g *globals) *cobra.Command {
	cfg := emulator.Config{}
	var logFormat, capMemory, defMemory, gpus, quota, configFile string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the emulator: API and console, S3 API and registry, in one process",
		Long: `Start the emulator in the foreground. It serves until interrupted (Ctrl-C or
SIGTERM), then lets in-flight requests finish within --shutdown-timeout.
Every listener binds to loopback unless told otherwise.

Settings come from flags, then MALOCAL_* environment variables, then the
--config file: YAML whose keys are the flags' names, for example

  backend: kubernetes
  kubeconfig: /etc/malocal/kubeconfig
  advertise-obs: http://10.0.0.5:7081
  stop-grace: 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := applyConfigFile(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			dir, err := g.dataDirPath()
			if err != nil {
				return err
			}
			cfg.DataDir = dir
			// Keys only from the environment: flag values show in ps.
			cfg.ExternalOBSKeys = emulator.ExternalKeys{AccessKey: os.Getenv(emulator.EnvExternalAccessKey),
				SecretKey: os.Getenv(emulator.EnvExternalSecretKey), Region: os.Getenv(emulator.EnvExternalRegion)}
			cfg.Version = Version()
			if capMemory != "" {
				m, err := api.ParseByteSize(capMemory)
				if err != nil {
					return fmt.Errorf("--capacity-memory: %w", err)
				}
				cfg.CapacityMemory = int64(m)
			}
			switch defMemory {
			case "host":
				cfg.DefaultMemory = emulator.HostMemory()
			default:
				m, err := api.ParseByteSize(defMemory)
				if err != nil {
					return fmt.Errorf("--default-memory: %w (or host: this machine's memory)", err)
				}
				cfg.DefaultMemory = int64(m)
			}
			if quota != "" {
				q, err := api.ParseByteSize(quota)
				if err != nil {
					return fmt.Errorf("--registry-quota: %w", err)
				}
				cfg.RegistryQuota = int64(q)
			}
			switch gpus {
			case "":
			case "none":
				cfg.GPUs = []string{}
			default:
				cfg.GPUs = strings.Split(gpus, ",")
			}
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
	f.Float64Var(&cfg.CapacityCPUs, "capacity-cpus", envFloat("MALOCAL_CAPACITY_CPUS", 0), "CPUs that running jobs may ask for together; later jobs queue (env MALOCAL_CAPACITY_CPUS; 0: no bound)")
	f.StringVar(&capMemory, "capacity-memory", os.Getenv("MALOCAL_CAPACITY_MEMORY"), "memory that running jobs may ask for together, e.g. 16g (env MALOCAL_CAPACITY_MEMORY; empty: no bound)")
	f.StringVar(&gpus, "gpus", os.Getenv("MALOCAL_GPUS"), "GPU ids jobs may use, e.g. 0,1 (env MALOCAL_GPUS; default: from nvidia-smi -L; none: no GPUs)")
	f.StringVar(&quota, "registry-quota", os.Getenv("MALOCAL_REGISTRY_QUOTA"), "disk the registry may use, e.g. 50g (env MALOCAL_REGISTRY_QUOTA; empty: no bound)")
	f.Int64Var(&cfg.PidsLimit, "pids-limit", int64(envFloat("MALOCAL_PIDS_LIMIT", 4096)), "processes each job container may run; a task that hits it fails saying so (env MALOCAL_PIDS_LIMIT; 0: no bound)")
	f.StringVar(&defMemory, "default-memory", cmp.Or(os.Getenv("MALOCAL_DEFAULT_MEMORY"), "host"), "memory bound of a job container whose flavor gives none, e.g. 8g (env MALOCAL_DEFAULT_MEMORY; host: this machine's memory; 0: no bound)")
	f.DurationVar(&cfg.StopGrace, "stop-grace", envDuration("MALOCAL_STOP_GRACE", 10*time.Second), "time a stopped task gets between SIGTERM and SIGKILL (env MALOCAL_STOP_GRACE)")
	f.StringVar(&cfg.Backend, "backend", cmp.Or(os.Getenv("MALOCAL_BACKEND"), emulator.BackendDocker), "where jobs run: docker (this machine) or kubernetes (env MALOCAL_BACKEND)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", os.Getenv("MALOCAL_KUBECONFIG"), "kubeconfig of the cluster for --backend kubernetes (env MALOCAL_KUBECONFIG; default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&cfg.Namespace, "namespace", os.Getenv("MALOCAL_NAMESPACE"), "namespace the jobs run in for --backend kubernetes (env MALOCAL_NAMESPACE; default: the kubeconfig's)")
	f.StringVar(&cfg.AdvertiseOBS, "advertise-obs", os.Getenv("MALOCAL_ADVERTISE_OBS"), "URL at which the cluster's nodes reach the S3 API, e.g. http://10.0.0.5:7081 (env MALOCAL_ADVERTISE_OBS)")
	f.StringVar(&cfg.AdvertiseRegistry, "advertise-registry", os.Getenv("MALOCAL_ADVERTISE_REGISTRY"), "HOST:PORT at which the cluster's nodes pull from the registry (env MALOCAL_ADVERTISE_REGISTRY)")
	f.StringVar(&cfg.ExternalOBS, "external-obs", os.Getenv("MALOCAL_EXTERNAL_OBS"), "URL of an existing S3 store that jobs use instead of ours, with --backend kubernetes; keys from MALOCAL_EXTERNAL_OBS_ACCESS_KEY, MALOCAL_EXTERNAL_OBS_SECRET_KEY, MALOCAL_EXTERNAL_OBS_REGION (env MALOCAL_EXTERNAL_OBS)")
	f.StringVar(&cfg.ExternalRegistry, "external-registry", os.Getenv("MALOCAL_EXTERNAL_REGISTRY"), "HOST:PORT of an existing registry that jobs' images are resolved in, audited from and pulled from instead of ours, with --backend kubernetes (env MALOCAL_EXTERNAL_REGISTRY)")
	f.StringVar(&cfg.ExternalRegistryUsername, "external-registry-username", os.Getenv("MALOCAL_EXTERNAL_REGISTRY_USERNAME"), "user name at --external-registry, for the audit's reads and the pods' pulls (env MALOCAL_EXTERNAL_REGISTRY_USERNAME)")
	cfg.ExternalRegistryPassword = os.Getenv("MALOCAL_EXTERNAL_REGISTRY_PASSWORD") // a password never goes on a command line
	f.BoolVar(&cfg.ExternalRegistryInsecure, "external-registry-insecure", envBool("MALOCAL_EXTERNAL_REGISTRY_INSECURE"), "reach --external-registry over plain HTTP (env MALOCAL_EXTERNAL_REGISTRY_INSECURE)")
	f.DurationVar(&cfg.PendingLimit, "pending-limit", envDuration("MALOCAL_PENDING_LIMIT", 5*time.Minute), "how long a job's pods may wait to be scheduled before the job fails, with --backend kubernetes (env MALOCAL_PENDING_LIMIT)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", envDuration("MALOCAL_IDLE_TIMEOUT", netguard.DefaultIdleTimeout), "how long every listener keeps a connection that sends no request (env MALOCAL_IDLE_TIMEOUT)")
	f.IntVar(&cfg.MaxConns, "max-conns", envInt("MALOCAL_MAX_CONNS", 0), "connections each listener holds at most; more are refused at accept (env MALOCAL_MAX_CONNS; 0: a share of the open-file limit, at most 8192)")
	f.StringVar(&configFile, "config", os.Getenv("MALOCAL_CONFIG"), "YAML file of settings named like these flags (env MALOCAL_CONFIG); flags and MALOCAL_* variables win over it")
	f.StringVar(&logFormat, "log-format", cmp.Or(os.Getenv("MALOCAL_LOG_FORMAT"), "text"), "log format: text or json (env MALOCAL_LOG_FORMAT)")
	return cmd
}

func envFloat(name string, def float64) float64 {
	if v := os.Getenv(name); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return def
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
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
