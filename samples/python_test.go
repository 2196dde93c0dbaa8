package samples

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/malocal/malocal/e2e"
)

// hostPython is Debian's python3 with python3-numpy.
const hostPython = "/usr/bin/python3"

// needPython requires the host's python3 with numpy (fails under CI).
func needPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command(hostPython, "-c", "import numpy").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("%s with numpy (apt-get install python3-numpy): %v %s", hostPython, err, out))
}

// needData requires Debian's Fashion-MNIST.
func needData(t *testing.T) {
	t.Helper()
	missing := CheckData(FashionMNIST)
	e2e.Require(t, len(missing) == 0, fmt.Sprintf("Fashion-MNIST in %s (apt-get install dataset-fashion-mnist): missing %v", FashionMNIST, missing))
}

// scriptsDir writes the embedded samples to a temp dir and returns its
// mnist/ folder.
func scriptsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := WriteTo(dir); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "mnist")
}

// python runs a script of the samples with env, returns output and exit code.
func python(t *testing.T, ctx context.Context, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, hostPython, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "HOME=" + t.TempDir()}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("python %v: %v\n%s", args, err, out.String())
	}
	return out.String(), 0
}

// idx encodes an idx file: magic type 0x08 (ubyte), dims, data.
func idx(dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 8, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	return b.Bytes()
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeTinyMNIST writes a 12-train, 4-test data set of 28x28 images whose
// pixels are their index, labels index mod 10; train files gzipped, test
// files plain.
func writeTinyMNIST(t *testing.T, dir string) {
	t.Helper()
	mk := func(n int) (img, lab []byte) {
		for i := range n {
			img = append(img, bytes.Repeat([]byte{byte(i)}, 784)...)
			lab = append(lab, byte(i%10))
		}
		return
	}
	ti, tl := mk(12)
	si, sl := mk(4)
	files := map[string][]byte{
		"train-images-idx3-ubyte.gz": gz(t, idx([]uint32{12, 28, 28}, ti)),
		"train-labels-idx1-ubyte.gz": gz(t, idx([]uint32{12}, tl)),
		"t10k-images-idx3-ubyte":     idx([]uint32{4, 28, 28}, si),
		"t10k-labels-idx1-ubyte":     idx([]uint32{4}, sl),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoader(t *testing.T) {
	needPython(t)
	scripts := scriptsDir(t)
	data := t.TempDir()
	writeTinyMNIST(t, data)
	if m := CheckData(data); len(m) != 0 {
		t.Fatalf("CheckData of the tiny set: missing %v", m)
	}
	const probe = `
import sys, input_data
d = input_data.read_data_sets(sys.argv[1], validation_size=2)
print("train", d.train.images.shape, d.train.images.dtype, d.train.labels[:3].tolist())
print("validation", d.validation.images.shape, d.validation.labels.tolist())
print("test", d.test.images.shape, d.test.labels.tolist())
print("pixel %.6f %.6f" % (d.train.images[0, 0], d.test.images[3, 783]))
seen = set()
for _ in range(5):
    x, y = d.train.next_batch(4)
    seen.update(y.tolist())
print("batches", x.shape, sorted(seen), d.train.epochs_completed)
print("onehot", input_data.read_data_sets(sys.argv[1], validation_size=0, one_hot_labels=True).test.labels[1].tolist())
`
	out, code := python(t, context.Background(), scripts, nil, "-c", probe, data)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"train (10, 784) float32 [2, 3, 4]",
		"validation (2, 784) [0, 1]",
		"test (4, 784) [0, 1, 2, 3]",
		fmt.Sprintf("pixel %.6f %.6f", 2.0/255.0, 3.0/255.0),
		"batches (4, 784) [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] 2",
		"onehot [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("loader output lacks %q:\n%s", want, out)
		}
	}

	// Broken files fail with a message naming the file.
	bad := t.TempDir()
	writeTinyMNIST(t, bad)
	os.WriteFile(filepath.Join(bad, "t10k-labels-idx1-ubyte"), idx([]uint32{5}, []byte{1, 2}), 0o644)
	out, code = python(t, context.Background(), scripts, nil, "-c", "import sys, input_data; input_data.read_data_sets(sys.argv[1])", bad)
	if code == 0 || !strings.Contains(out, "t10k-labels-idx1-ubyte: 2 bytes of data") {
		t.Errorf("truncated labels: exit %d\n%s", code, out)
	}
	os.Remove(filepath.Join(bad, "t10k-labels-idx1-ubyte"))
	out, code = python(t, context.Background(), scripts, nil, "-c", "import sys, input_data; input_data.read_data_sets(sys.argv[1])", bad)
	if code == 0 || !strings.Contains(out, "no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz") {
		t.Errorf("missing labels: exit %d\n%s", code, out)
	}
	if m := CheckData(bad); len(m) != 1 || m[0] != "t10k-labels-idx1-ubyte" {
		t.Errorf("CheckData: missing %v", m)
	}
}

func TestLoaderFashionMNIST(t *testing.T) {
	needPython(t)
	needData(t)
	out, code := python(t, context.Background(), scriptsDir(t), nil, "-c", `
import sys, input_data
d = input_data.read_data_sets(sys.argv[1])
print(d.train.num_examples, d.validation.num_examples, d.test.num_examples, d.train.images.shape[1], int(d.test.labels.max()))`, FashionMNIST)
	if code != 0 || !strings.Contains(out, "55000 5000 10000 784 9") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestSoftmaxShort(t *testing.T) {
	needPython(t)
	needData(t)
	outDir := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	out, code := python(t, context.Background(), t.TempDir(), nil, filepath.Join(scriptsDir(t), Softmax),
		"--data_url", FashionMNIST, "--train_url", outDir, "--train_steps", "300", "--some_platform_flag=1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	acc := ParseAccuracy(out)
	t.Logf("softmax, 300 steps: test accuracy %.4f in %s", acc, time.Since(start).Round(time.Millisecond))
	if acc < 0.70 {
		t.Errorf("test accuracy %.4f after 300 steps\n%s", acc, out)
	}
	for _, want := range []string{"step 1/300: cross entropy", "step 300/300", "After 300 training step(s), validation cross entropy =", "ignoring unknown arguments: --some_platform_flag=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	checkMetrics(t, outDir, "mnist_softmax", acc)
	if _, err := os.Stat(filepath.Join(outDir, "model.npz")); err != nil {
		t.Error(err)
	}
}

func checkMetrics(t *testing.T, dir, example string, acc float64) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["example"] != example || fmt.Sprintf("%.4f", m["test_accuracy"]) != fmt.Sprintf("%.4f", acc) {
		t.Errorf("metrics.json %v, log accuracy %.4f", m, acc)
	}
	if got := metricsAccuracy(string(b)); fmt.Sprintf("%.4f", got) != fmt.Sprintf("%.4f", acc) {
		t.Errorf("metricsAccuracy %v", got)
	}
	return m
}

// freePorts returns n loopback ports that were free a moment ago, chosen
// below the kernel's ephemeral range so that outgoing connections of other
// processes do not take them meanwhile.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	used := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free loopback ports in 20000-29999")
		}
		p := 20000 + rand.IntN(10000)
		if used[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		used[p] = true
		ports = append(ports, p)
	}
	return ports
}

// runReplicas runs mnist_replica_kill.py as n tasks on loopback, as the
// platform's environment names them, and returns each task's output.
func runReplicas(t *testing.T, n int, args ...string) []string {
	t.Helper()
	scripts := scriptsDir(t)
	ports := freePorts(t, n)
	env := []string{fmt.Sprintf("DLS_TASK_NUMBER=%d", n)}
	for k, p := range ports {
		env = append(env, fmt.Sprintf("BATCH_CUSTOM%d_HOSTS=127.0.0.1:%d", k, p))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	outs := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			taskEnv := append(slices.Clip(env), fmt.Sprintf("DLS_TASK_INDEX=%d", i))
			outs[i], codes[i] = python(t, ctx, t.TempDir(), taskEnv,
				append([]string{filepath.Join(scripts, Replica), "--data_url", FashionMNIST, "--connect_timeout", "60"}, args...)...)
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 0 {
			t.Errorf("task %d exited %d:\n%s", i, codes[i], outs[i])
		}
	}
	return outs
}

func TestReplicaTwoNodes(t *testing.T) {
	needPython(t)
	needData(t)
	outDir := t.TempDir()
	start := time.Now()
	outs := runReplicas(t, 2, "--train_steps", "60", "--train_url", outDir)
	acc := ParseAccuracy(outs[1])
	t.Logf("replica, 2 nodes, 60 steps: test accuracy %.4f in %s", acc, time.Since(start).Round(time.Millisecond))
	if acc < 0.6 {
		t.Errorf("chief's test accuracy %.4f\n%s", acc, outs[1])
	}
	for _, want := range []string{
		"parameter server 0 of 1: serving parameters [0, 79510) of 79510",
		"parameter server 0: done token from worker 0 (1 of 1)",
		"parameter server 0: done tokens from all 1 worker(s), 60 updates applied, exiting",
	} {
		if !strings.Contains(outs[0], want) {
			t.Errorf("parameter server output lacks %q:\n%s", want, outs[0])
		}
	}
	for _, want := range []string{"Worker 0: training step 1 done (global step: 1)", "Worker 0: training step 60 done (global step: 60)", "Training elapsed time:", "After 60 training step(s), validation cross entropy ="} {
		if !strings.Contains(outs[1], want) {
			t.Errorf("worker output lacks %q", want)
		}
	}
	m := checkMetrics(t, outDir, "mnist_replica_kill", acc)
	if m["workers"] != 1.0 || m["parameter_servers"] != 1.0 || m["global_step"] != 60.0 {
		t.Errorf("metrics %v", m)
	}
}

func TestReplicaSixNodesAsync(t *testing.T) {
	needPython(t)
	needData(t)
	start := time.Now()
	outs := runReplicas(t, 6, "--train_steps", "60")
	t.Logf("replica, 6 nodes async, 60 steps: chief's test accuracy %.4f in %s", ParseAccuracy(outs[3]), time.Since(start).Round(time.Millisecond))
	for ps := range 3 {
		if !strings.Contains(outs[ps], fmt.Sprintf("parameter server %d: done tokens from all 3 worker(s)", ps)) {
			t.Errorf("parameter server %d:\n%s", ps, outs[ps])
		}
	}
	if !strings.Contains(outs[0], "serving parameters [0, 26504) of 79510") || !strings.Contains(outs[2], "serving parameters [53007, 79510) of 79510") {
		t.Errorf("shards:\n%s\n%s", outs[0], outs[2])
	}
	if ParseAccuracy(outs[3]) < 0 || ParseAccuracy(outs[4]) >= 0 {
		t.Errorf("only the chief (task 3) prints the test accuracy")
	}
	// A worker that starts late may find the 60 global steps already done
	// (asynchronous training, as in the original): it must still join and
	// hand in its done tokens.
	total := 0
	for w := range 3 {
		for _, want := range []string{
			fmt.Sprintf("worker %d: connected to 3 parameter server(s)", w),
			fmt.Sprintf("worker %d: done token put to parameter server 2", w),
		} {
			if !strings.Contains(outs[3+w], want) {
				t.Errorf("worker %d lacks %q:\n%s", w, want, outs[3+w])
			}
		}
		total += strings.Count(outs[3+w], fmt.Sprintf("Worker %d: training step", w))
	}
	// Asynchronous: the workers share the 60 global steps (each may finish
	// the step it started when the limit was reached).
	if total < 60 || total > 62 {
		t.Errorf("%d local steps in all for 60 global steps", total)
	}
}

func TestReplicaSync(t *testing.T) {
	needPython(t)
	needData(t)
	outs := runReplicas(t, 5, "--train_steps", "20", "--sync_replicas")
	// 2 parameter servers, 3 workers: every worker does every step.
	for w := range 3 {
		out := outs[2+w]
		if !strings.Contains(out, fmt.Sprintf("Worker %d: training step 20 done (global step: 20)", w)) || strings.Contains(out, "training step 21") {
			t.Errorf("worker %d:\n%s", w, out)
		}
	}
	for ps := range 2 {
		if !strings.Contains(outs[ps], "20 updates applied") || !strings.Contains(outs[ps], "(sync)") {
			t.Errorf("parameter server %d:\n%s", ps, outs[ps])
		}
	}
}

func TestReplicaErrors(t *testing.T) {
	needPython(t)
	scripts := scriptsDir(t)
	out, code := python(t, context.Background(), t.TempDir(), []string{"DLS_TASK_INDEX=0", "DLS_TASK_NUMBER=1", "BATCH_CUSTOM0_HOSTS=127.0.0.1:1"},
		filepath.Join(scripts, Replica), "--data_url", "/nonexistent")
	if code == 0 || !strings.Contains(out, "needs at least 2 tasks") {
		t.Errorf("one task: exit %d\n%s", code, out)
	}
	out, code = python(t, context.Background(), t.TempDir(), []string{"DLS_TASK_INDEX=1", "DLS_TASK_NUMBER=2", "BATCH_CUSTOM0_HOSTS=127.0.0.1:1"},
		filepath.Join(scripts, Replica), "--data_url", "/nonexistent")
	if code == 0 || !strings.Contains(out, "BATCH_CUSTOM1_HOSTS is ''") {
		t.Errorf("missing host: exit %d\n%s", code, out)
	}
	out, code = python(t, context.Background(), t.TempDir(), nil, filepath.Join(scripts, Replica), "--data_url", "/nonexistent")
	if code == 0 || !strings.Contains(out, "DLS_TASK_INDEX is not set") {
		t.Errorf("no environment: exit %d\n%s", code, out)
	}
}

func TestParseAccuracy(t *testing.T) {
	for in, want := range map[string]float64{
		"":                                       -1,
		"test accuracy: 0.8312\n":                0.8312,
		"x test accuracy: 0.5\ntest accuracy: 1": 1,
		"[task 1] test accuracy: .75":            0.75,
	} {
		if got := ParseAccuracy(in); got != want {
			t.Errorf("ParseAccuracy(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRunCommand(t *testing.T) {
	got := strings.Join(RunCommand(Softmax), " ")
	want := "bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/mnist_softmax.py --data_url /home/work/user-job-dir/new/mnist_data"
	if got != want {
		t.Errorf("run command\n got %s\nwant %s", got, want)
	}
	exs := Examples(0)
	if len(exs) != 2 || exs[1].Nodes != DefaultReplicaNodes || exs[1].Script != Replica {
		t.Fatalf("examples %+v", exs)
	}
	// The guide's command exactly: the output dir reaches the script as
	// DLS_TRAIN_URL.
	spec := Spec("b", "demo/mnist:1.0", exs[1])
	want = "bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/mnist_replica_kill.py --data_url /home/work/user-job-dir/new/mnist_data"
	if got := strings.Join(spec.Command, " "); got != want || spec.Nodes != 4 || spec.TrainURL != "s3://b/out/mnist_replica_kill/" {
		t.Errorf("replica spec: %d nodes, train url %s, command\n got %s\nwant %s", spec.Nodes, spec.TrainURL, got, want)
	}
	spec = Spec("b", "demo/mnist:1.0", Examples(6, "--sync_replicas")[1])
	if spec.AppURL != "s3://b/new/" || spec.TrainURL != "s3://b/out/mnist_replica_kill/" || spec.Nodes != 6 ||
		!strings.HasSuffix(strings.Join(spec.Command, " "), "mnist_replica_kill.py --data_url /home/work/user-job-dir/new/mnist_data --sync_replicas") {
		t.Errorf("spec %+v", spec)
	}
	spec = Spec("b", DefaultTorchImage, DDPExample(0))
	want = "bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/mnist_ddp.py --data_url /home/work/user-job-dir/new/mnist_data"
	if got := strings.Join(spec.Command, " "); got != want || spec.Nodes != 2 || spec.TrainURL != "s3://b/out/mnist_ddp/" {
		t.Errorf("ddp spec: %d nodes, train url %s, command\n got %s\nwant %s", spec.Nodes, spec.TrainURL, got, want)
	}
	if err := CheckEngine("tensorflow"); err == nil || !strings.Contains(err.Error(), "pytorch") {
		t.Errorf("CheckEngine(tensorflow) = %v", err)
	}
}
