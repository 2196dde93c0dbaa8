package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/runner"
)

// The ranges the API accepts (its job validation); the CLI refuses values
// outside them before it sends anything, naming the flag.
const (
	maxNodes   = 64
	maxRetries = 10
	minMemory  = 6 << 20 // Docker's minimum
)

// checkSpec validates the numbers of a job spec as the API does. flag names
// the command-line flags when the values came from them, the file's fields
// otherwise.
func checkSpec(s api.JobSpec, fromFlags func(string) bool) error {
	name := func(flag, field string) string {
		if fromFlags(flag) {
			return "--" + flag
		}
		return field
	}
	switch {
	case s.Nodes < 1 || s.Nodes > maxNodes:
		return api.Invalidf("%s: must be between 1 and %d, got %d", name("nodes", "nodes"), maxNodes, s.Nodes)
	case s.Flavor.CPUs < 0:
		return api.Invalidf("%s: must not be negative, got %g (0: no limit)", name("cpus", "flavor.cpus"), s.Flavor.CPUs)
	case s.Flavor.Memory < 0 || (s.Flavor.Memory != 0 && s.Flavor.Memory < minMemory):
		return api.Invalidf("%s: at least 6m (Docker's minimum), got %d bytes (empty: no limit)", name("memory", "flavor.memory"), s.Flavor.Memory)
	case s.Flavor.GPUs < 0:
		return api.Invalidf("%s: must not be negative, got %d", name("gpus", "flavor.gpus"), s.Flavor.GPUs)
	case s.Timeout < 0:
		return api.Invalidf("%s: must not be negative, got %s (0: none)", name("timeout", "timeout"), time.Duration(s.Timeout))
	case s.Retries < 0 || s.Retries > maxRetries:
		return api.Invalidf("%s: must be between 0 and %d, got %d", name("retries", "retries"), maxRetries, s.Retries)
	case s.Port < 1 || s.Port > 65535:
		return api.Invalidf("%s: must be between 1 and 65535, got %d", name("port", "port"), s.Port)
	}
	return nil
}

// checkRunFlags validates `malocal run`'s numeric flags.
func checkRunFlags(cmd *cobra.Command, o runner.Options) error {
	switch {
	case o.Nodes < 1 || o.Nodes > maxNodes:
		return api.Invalidf("--nodes: must be between 1 and %d, got %d", maxNodes, o.Nodes)
	case o.Timeout < 0:
		return api.Invalidf("--timeout: must not be negative, got %s (0: none)", o.Timeout)
	case o.StopGrace < 0:
		return api.Invalidf("--stop-grace: must not be negative, got %s", o.StopGrace)
	}
	return nil
}

// apiFlag returns --api when it was given on the command line, not only
// through MALOCAL_API.
func apiFlag(cmd *cobra.Command) (string, bool) {
	f := cmd.Flag("api")
	if f == nil || !f.Changed || f.Value.String() == "" {
		return "", false
	}
	return f.Value.String(), true
}

// checkParallel validates the obs commands' --parallel.
func checkParallel(n int) error {
	if n < 1 || n > 256 {
		return fmt.Errorf("--parallel: must be between 1 and 256, got %d", n)
	}
	return nil
}
