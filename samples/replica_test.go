package samples

import (
	"context"
	"strings"
	"testing"
)

// An asynchronous shard applies a gradient with the learning rate divided
// by 1 + its staleness (the shard's updates since the worker pulled it);
// a fresh one, and every one with --sync_replicas, at the full rate. The
// rate falls linearly from --learning_rate to 0 at --train_steps.
func TestReplicaStalenessAwareRate(t *testing.T) {
	needPython(t)
	const probe = `
import numpy as np, mnist_replica_kill as m, mnist_util
args, _ = m.parse_args([])
print("defaults", args.train_steps, args.learning_rate, args.batch_size, args.hidden_units)
def first_step(args, at, staleness, sync=False):
    args.sync_replicas = sync
    s = m.Shard(np.zeros(4, dtype=np.float32), args, num_workers=1 if sync else 2)
    s.step = at + staleness  # as if the others had pushed meanwhile
    s.push(at, np.ones(4, dtype=np.float32))
    return float(-s.params[0]) + 0.0  # no -0.0
long, _ = m.parse_args(["--train_steps", "1000000000"])  # no decay to speak of
fresh, stale1, stale3 = first_step(long, 0, 0), first_step(long, 0, 1), first_step(long, 0, 3)
print("fresh %.6f ratio1 %.3f ratio3 %.3f" % (fresh, fresh / stale1, fresh / stale3))
print("decayed %.6f %.6f %.6f sync %.6f" % (first_step(args, 250, 0), first_step(args, 500, 1), first_step(args, 1000, 0),
                                            first_step(args, 750, 0, sync=True)))
args.sync_replicas = False
s = m.Shard(np.zeros(4, dtype=np.float32), args, num_workers=2)
s.push(0, np.ones(4, dtype=np.float32)); s.push(0, np.ones(4, dtype=np.float32))
print("staleness sum", s.staleness_sum, "steps", s.step)
`
	out, code := python(t, context.Background(), scriptsDir(t), nil, "-c", probe)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"defaults 1000 0.01 100 100",
		// Adam's first step moves by the learning rate.
		"fresh 0.010000 ratio1 2.000 ratio3 4.000",
		// A quarter of the way, half way (with one update of staleness:
		// 0.01 × 0.499 / 2), at the end, and synchronous at three quarters.
		"decayed 0.007500 0.002495 0.000000 sync 0.002500",
		"staleness sum 1 steps 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
