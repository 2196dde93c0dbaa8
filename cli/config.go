package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets the flags of fs from a YAML file whose keys are the
// flags' names (`backend: kubernetes`, `stop-grace: 30s`). A flag given on
// the command line or through its MALOCAL_* variable wins over the file.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(b, &settings); err != nil {
		return fmt.Errorf("--config %s: not a YAML mapping of setting: value: %w", path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys) // errors in a stable order
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" || k == "help" {
			return fmt.Errorf("--config %s: unknown setting %q; the settings are the flags of `malocal up --help`, without the dashes", path, k)
		}
		if f.Changed || os.Getenv(envName(k)) != "" {
			continue
		}
		v := settings[k]
		if v == nil {
			return fmt.Errorf("--config %s: setting %q has no value", path, k)
		}
		if err := fs.Set(k, fmt.Sprint(v)); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// envName is the environment variable of a flag: --stop-grace is
// MALOCAL_STOP_GRACE.
func envName(flag string) string {
	return "MALOCAL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
