package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestApplyConfigFile(t *testing.T) {
	newFlags := func() (*pflag.FlagSet, *string, *time.Duration, *float64) {
		fs := pflag.NewFlagSet("up", pflag.ContinueOnError)
		backend := fs.String("backend", "docker", "")
		grace := fs.Duration("stop-grace", 10*time.Second, "")
		cpus := fs.Float64("capacity-cpus", 0, "")
		return fs, backend, grace, cpus
	}
	write := func(s string) string {
		p := filepath.Join(t.TempDir(), "malocal.yaml")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	fs, backend, grace, cpus := newFlags()
	if err := fs.Parse([]string{"--stop-grace", "3s"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MALOCAL_BACKEND", "docker")
	if err := applyConfigFile(fs, write("backend: kubernetes\nstop-grace: 30s\ncapacity-cpus: 4\n")); err != nil {
		t.Fatal(err)
	}
	if *grace != 3*time.Second {
		t.Errorf("stop-grace %v: the command line must win over the file", *grace)
	}
	if *backend != "docker" {
		t.Errorf("backend %q: MALOCAL_BACKEND must win over the file", *backend)
	}
	if *cpus != 4 {
		t.Errorf("capacity-cpus %v, want 4 from the file", *cpus)
	}

	for _, c := range []struct{ file, want string }{
		{"stop-grce: 3s\n", `unknown setting "stop-grce"`},
		{"stop-grace: soon\n", "stop-grace"},
		{"- backend\n", "not a YAML mapping"},
		{"config: other.yaml\n", `unknown setting "config"`},
	} {
		fs, _, _, _ := newFlags()
		err := applyConfigFile(fs, write(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one naming %s", c.file, err, c.want)
		}
	}
	if err := applyConfigFile(pflag.NewFlagSet("up", pflag.ContinueOnError), filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing file: %v", err)
	}
}
