package samples

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/malocal/malocal/e2e"
)

// needTorch requires the host's python3 with Debian's python3-torch (fails
// under CI).
func needTorch(t *testing.T) {
	t.Helper()
	needPython(t)
	out, err := exec.Command(hostPython, "-c", "import torch.distributed as d; assert d.is_gloo_available()").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("%s with torch (apt-get install python3-torch): %v %s", hostPython, err, out))
}

// The pieces of mnist_ddp.py: the cluster from the platform's environment
// (and torchrun's), with clear errors, and the data as the CNN wants it.
func TestDDPPieces(t *testing.T) {
	needPython(t)
	scripts := scriptsDir(t)
	data := t.TempDir()
	writeTinyMNIST(t, data)
	const probe = `
import sys, mnist_ddp
env = {"DLS_TASK_INDEX": "1", "DLS_TASK_NUMBER": "3", "BATCH_CUSTOM0_HOSTS": "job-0:2222", "BATCH_CUSTOM1_HOSTS": "job-1:2222"}
print("platform", mnist_ddp.cluster_from_env(env))
print("torchrun", mnist_ddp.cluster_from_env({"RANK": "2", "WORLD_SIZE": "4", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400"}))
for bad in ({}, {"DLS_TASK_INDEX": "0"}, {"DLS_TASK_INDEX": "3", "DLS_TASK_NUMBER": "3", "BATCH_CUSTOM0_HOSTS": "a:1"},
            {"DLS_TASK_INDEX": "0", "DLS_TASK_NUMBER": "1", "BATCH_CUSTOM0_HOSTS": "nohostport"}):
    try:
        mnist_ddp.cluster_from_env(bad)
        print("accepted", bad)
    except SystemExit as e:
        print("refused:", e)
tx, ty, sx, sy = mnist_ddp.load_data(sys.argv[1], validation_size=2)
print("train", tx.shape, tx.dtype, ty.dtype, ty[:3].tolist(), "test", sx.shape, sy.tolist())
print("pixel %.6f" % tx[0, 0, 0, 0])
`
	out, code := python(t, context.Background(), scripts, nil, "-c", probe, data)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"platform (1, 3, 'job-0', 2222, 'BATCH_CUSTOM0_HOSTS')",
		"torchrun (2, 4, '10.0.0.1', 29400, 'MASTER_ADDR')",
		"refused: no cluster in the environment",
		"refused: DLS_TASK_NUMBER is not set",
		"refused: rank 3 of world size 3",
		"refused: BATCH_CUSTOM0_HOSTS is 'nohostport': want host:port",
		"train (10, 1, 28, 28) float32 int64 [2, 3, 4] test (4, 1, 28, 28) [0, 1, 2, 3]",
		fmt.Sprintf("pixel %.6f", 2.0/255.0),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "accepted") {
		t.Errorf("a bad environment was accepted:\n%s", out)
	}
}

// Two ranks of mnist_ddp.py on this host, as two tasks of a job on
// loopback: both join the gloo group at task 0's address, rank 0 saves
// model.pt and metrics.json.
func TestDDPTwoRanks(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a CNN: not in -short")
	}
	needTorch(t)
	scripts := scriptsDir(t)
	data := t.TempDir()
	writeTinyMNIST(t, data)
	outDir := t.TempDir()
	port := freePorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	outs := make([]string, 2)
	codes := make([]int, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			env := []string{fmt.Sprintf("DLS_TASK_INDEX=%d", i), "DLS_TASK_NUMBER=2",
				fmt.Sprintf("BATCH_CUSTOM0_HOSTS=127.0.0.1:%d", port), fmt.Sprintf("BATCH_CUSTOM1_HOSTS=127.0.0.1:%d", port),
				"DLS_TRAIN_URL=" + outDir, "OMP_NUM_THREADS=1"}
			outs[i], codes[i] = python(t, ctx, scripts, env, "mnist_ddp.py", "--data_url", data, "--epochs", "1", "--batch_size", "2", "--timeout", "120")
		}(i)
	}
	wg.Wait()
	for i := range 2 {
		if codes[i] != 0 {
			t.Fatalf("rank %d: exit %d\n%s", i, codes[i], outs[i])
		}
		for _, want := range []string{
			fmt.Sprintf("rank %d of 2: gloo rendezvous at tcp://127.0.0.1:%d (BATCH_CUSTOM0_HOSTS)", i, port),
			fmt.Sprintf("rank %d of 2: joined the gloo group at tcp://127.0.0.1:%d", i, port),
			fmt.Sprintf("rank %d of 2: done", i),
		} {
			if !strings.Contains(outs[i], want) {
				t.Errorf("rank %d output lacks %q:\n%s", i, want, outs[i])
			}
		}
	}
	acc := ParseAccuracy(outs[0])
	if acc < 0 || strings.Contains(outs[1], "test accuracy") {
		t.Errorf("rank 0 alone reports the test accuracy: %v\n%s", acc, outs[1])
	}
	m := checkMetrics(t, outDir, "mnist_ddp", acc)
	if m["world_size"] != 2.0 || m["backend"] != "gloo" || m["steps"] != 3.0 {
		t.Errorf("metrics %v (want world 2, gloo, 3 steps: 1 epoch of 10 examples, 5 each, batches of 2)", m)
	}
	if _, err := exec.Command("test", "-s", filepath.Join(outDir, "model.pt")).CombinedOutput(); err != nil {
		t.Errorf("no model.pt in %s", outDir)
	}
}
