package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestLabel is the Docker label key that marks what a test made.
const TestLabel = "malocal.test"

// DataDirLabel is the Docker label key the emulator puts on the containers
// and networks of its jobs, with its data dir as value.
const DataDirLabel = "malocal.data-dir"

// DockerLabel returns a label (key=value) unique to this test, and removes
// every container and network carrying it when the test ends.
func DockerLabel(t testing.TB) string {
	t.Helper()
	label := fmt.Sprintf("%s=%s-%d", TestLabel, sanitize(t.Name()), time.Now().UnixNano())
	t.Cleanup(func() { RemoveLabelled(t, label) })
	return label
}

// CleanupJobs removes, when the test ends, every container and network the
// emulator labelled with this data dir.
func (e *Emulator) CleanupJobs() {
	e.t.Cleanup(func() { RemoveLabelled(e.t, DataDirLabel+"="+e.DataDir) })
}

// RemoveLabelled force-removes containers, then networks, with the label.
func RemoveLabelled(t testing.TB, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ids := dockerIDs(ctx, "ps", "-aq", "--filter", "label="+label)
	if len(ids) > 0 {
		if out, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f"}, ids...)...).CombinedOutput(); err != nil {
			t.Logf("removing test containers: %v: %s", err, out)
		}
	}
	nets := dockerIDs(ctx, "network", "ls", "-q", "--filter", "label="+label)
	if len(nets) > 0 {
		if out, err := exec.CommandContext(ctx, "docker", append([]string{"network", "rm"}, nets...)...).CombinedOutput(); err != nil {
			t.Logf("removing test networks: %v: %s", err, out)
		}
	}
}

func dockerIDs(ctx context.Context, args ...string) []string {
	out, err := exec.CommandContext(ctx, "docker", args...).Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}
