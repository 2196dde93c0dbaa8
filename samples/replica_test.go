package samples

import (
	"context"
	"strings"
	"testing"
)

// An asynchronous shard applies a gradient with the learning rate divided
// by 1 + its staleness (the shard's updates since the worker pulled it);
// a fresh one, and every one with --sync_replicas, at the full rate.
func TestReplicaStalenessAwareRate(t *testing.T) {
	needPython(t)
	const probe = `
import numpy as np, mnist_replica_kill as m, mnist_util
args, _ = m.parse_args([])
print("defaults", args.train_steps, args.learning_rate, args.batch_size, args.hidden_units)
def first_step(staleness):
    s = m.Shard(np.zeros(4, dtype=np.float32), args, num_workers=2)
    s.step = staleness  # as if the others had pushed meanwhile
    s.push(0, np.ones(4, dtype=np.float32))
    return float(-s.params[0])
fresh, stale1, stale3 = first_step(0), first_step(1), first_step(3)
print("fresh %.6f ratio1 %.3f ratio3 %.3f mean %.2f" % (fresh, fresh / stale1, fresh / stale3, 0))
s = m.Shard(np.zeros(4, dtype=np.float32), args, num_workers=2)
s.push(0, np.ones(4, dtype=np.float32)); s.push(0, np.ones(4, dtype=np.float32))
print("staleness sum", s.staleness_sum, "steps", s.step)
`
	out, code := python(t, context.Background(), scriptsDir(t), nil, "-c", probe)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"defaults 1000 0.006 100 100",
		// Adam's first step moves by the learning rate.
		"fresh 0.006000 ratio1 2.000 ratio3 4.000",
		"staleness sum 1 steps 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
