package samples

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/e2e"
)

// cachedRootfs returns a bookworm root filesystem with python3, pip and
// numpy made by mmdebstrap. It shares baseimage's test cache
// (os.TempDir()/malocal-test-cache, keyed by the package list), so the
// slow build runs once per machine.
func cachedRootfs(t *testing.T) string {
	t.Helper()
	pkgs := baseimage.IncludeList(BaseInclude)
	p := e2e.RootfsCachePath(BaseInclude)
	dir := filepath.Dir(p)
	if _, err := os.Stat(p); err == nil {
		t.Logf("using cached rootfs %s (%s)", p, strings.Join(pkgs, ","))
		return p
	}
	e2e.RequireTool(t, "mmdebstrap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var log bytes.Buffer
	if err := baseimage.Mmdebstrap(ctx, "bookworm", BaseInclude, p, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("mmdebstrap %s: %s", strings.Join(pkgs, ","), time.Since(start).Round(time.Second))
	return p
}

// demoRun is one `malocal demo -o json`: its summary, stderr and exit code.
type demoRun struct {
	sum    Summary
	stderr string
	code   int
}

// runDemo runs `malocal demo -o json` with the data dir in the environment;
// past the timeout it gets SIGINT, as a Ctrl-C, so that it cleans up.
func runDemo(t *testing.T, dataDir string, timeout time.Duration, args ...string) demoRun {
	t.Helper()
	cmd := exec.Command(e2e.Binary(t), append([]string{"demo", "-o", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "MALOCAL_DATA_DIR="+dataDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		cmd.Process.Signal(syscall.SIGINT)
		err = <-done
		t.Errorf("malocal demo did not end within %s; interrupted:\n%s", timeout, errb.String())
	}
	r := demoRun{stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if out.Len() > 0 {
		if err := json.Unmarshal(out.Bytes(), &r.sum); err != nil {
			t.Errorf("demo -o json: %v\n%s", err, out.String())
		}
	}
	return r
}

// checkJobs asserts that every job completed over the accuracy bar, in its
// logs and in its outputs' metrics.json.
func checkJobs(t *testing.T, r demoRun, nodes map[string]int) {
	t.Helper()
	if r.code != 0 || len(r.sum.Jobs) != len(nodes) {
		t.Fatalf("demo exit %d, %d jobs:\n%s", r.code, len(r.sum.Jobs), r.stderr)
	}
	for _, j := range r.sum.Jobs {
		t.Logf("%s: %s, %d node(s), test accuracy %.4f (metrics.json %.4f), job time %s",
			j.Example, j.Status, j.Nodes, j.Accuracy, j.Metrics, j.Duration.Round(100*time.Millisecond))
		if j.Status != api.StatusCompleted || j.Nodes != nodes[j.Example] {
			t.Errorf("%s: %s (%s), %d nodes", j.Example, j.Status, j.Reason, j.Nodes)
		}
		if j.Accuracy < 0.80 {
			t.Errorf("%s: test accuracy %.4f, want at least 0.80", j.Example, j.Accuracy)
		}
		if j.Metrics != j.Accuracy {
			t.Errorf("%s: metrics.json says %.4f, the log %.4f", j.Example, j.Metrics, j.Accuracy)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", r.stderr)
	}
}

// TestDemo runs `malocal demo` on a fresh data dir: it starts its own
// emulator, builds the base (from the cached mmdebstrap root filesystem),
// installs the samples, and both examples complete over 80% test accuracy.
// Then, against an emulator already running on that data dir, it runs again
// reusing what exists, with the distributed example on 6 nodes.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Docker jobs: not in -short (make unit), as baseimage's Docker tests")
	}
	e2e.RequireDocker(t)
	needData(t)
	rootfs := cachedRootfs(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	t.Cleanup(func() {
		// Whatever happens, no emulator or container of this data dir stays.
		if rt, _, _, err := Running(dataDir); err == nil {
			syscall.Kill(rt.PID, syscall.SIGKILL)
		}
		e2e.RemoveLabelled(t, e2e.DataDirLabel+"="+dataDir)
	})

	start := time.Now()
	r := runDemo(t, dataDir, 8*time.Minute, "--from", "rootfs:"+rootfs,
		"--up-flag=--api-addr=127.0.0.1:0", "--up-flag=--s3-addr=127.0.0.1:0", "--up-flag=--registry-addr=127.0.0.1:0")
	t.Logf("fresh demo: %s", time.Since(start).Round(time.Second))
	checkJobs(t, r, map[string]int{"mnist-softmax": 1, "mnist-replica": 4})
	for _, want := range []string{
		"starting the emulator: malocal up --data-dir " + dataDir,
		"building the base eiwizard/custom-cpu-base:1.0 from rootfs:",
		"uploaded 4 data files from " + FashionMNIST,
		"building demo/mnist:1.0 on eiwizard/custom-cpu-base:1.0",
		// The guide's exact commands, nothing appended; the replica job on
		// the guide's 4 nodes (2 parameter servers, 2 workers).
		"4 node(s): bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/mnist_replica_kill.py --data_url /home/work/user-job-dir/new/mnist_data\n",
		"1 node(s): bash -x /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/mnist_softmax.py --data_url /home/work/user-job-dir/new/mnist_data\n",
		"mnist-replica [task 2] test accuracy:",
		"stopping the emulator it started",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	var sum strings.Builder
	r.sum.WriteSummary(&sum)
	if !r.sum.Stopped || !strings.Contains(sum.String(), "malocal up --data-dir "+dataDir+", then malocal ui") {
		t.Errorf("the summary must say how to see the jobs in the console again:\n%s", sum.String())
	}
	if _, _, _, err := Running(dataDir); err == nil {
		t.Error("the emulator the demo started still runs")
	}
	for _, j := range r.sum.Jobs {
		// The guide's distributed example, asynchronous, by its own defaults.
		if j.Example == "mnist-replica" && j.Accuracy < 0.82 {
			t.Errorf("mnist-replica on 4 nodes: test accuracy %.4f, want at least 0.82", j.Accuracy)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Again, on the running emulator: base, data and image are reused; the
	// distributed example on 6 nodes (3 parameter servers, 3 workers).
	e := e2e.Start(t, e2e.WithDataDir(dataDir))
	e.CleanupJobs()
	if r := e.Run("samples", "install"); r.Code != 0 || !strings.Contains(r.Stdout, "code dir  s3://malocal-demo/new/ (mnist/: 5 scripts)") ||
		!strings.Contains(r.Stdout, "image     demo/mnist:1.0@sha256:") || !strings.Contains(r.Stderr, "data already in") {
		t.Errorf("samples install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	start = time.Now()
	r = runDemo(t, dataDir, 8*time.Minute, "--replica-nodes", "6", "--replica-arg=--sync_replicas", "--replica-arg=--train_steps=300")
	t.Logf("demo again, replica on 6 nodes: %s", time.Since(start).Round(time.Second))
	checkJobs(t, r, map[string]int{"mnist-softmax": 1, "mnist-replica": 6})
	for _, want := range []string{
		"using the emulator running on " + dataDir,
		"base eiwizard/custom-cpu-base:1.0@sha256:",
		"data already in s3://malocal-demo/new/mnist_data/",
		"is up to date",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("rerun output lacks %q", want)
		}
	}
	if r.sum.Stopped || !strings.HasPrefix(r.sum.UI, "http://127.0.0.1:") {
		t.Errorf("on a running emulator the summary names its console: stopped %v, %q", r.sum.Stopped, r.sum.UI)
	}
	for _, j := range r.sum.Jobs {
		if j.Example != "mnist-replica" {
			continue
		}
		logs := jobLogs(t, e, j.ID)
		for ps := range 3 {
			if !strings.Contains(logs, "parameter server "+strconv.Itoa(ps)+": done tokens from all 3 worker(s), 300 updates applied, exiting") {
				t.Errorf("parameter server %d did not end on the done tokens", ps)
			}
		}
		if !strings.Contains(logs, "task 3 of 6: parameter servers mnist-replica-0:2222,mnist-replica-1:2222,mnist-replica-2:2222, workers mnist-replica-3:2222,") {
			t.Errorf("task 3 did not read the cluster from BATCH_CUSTOM*_HOSTS")
		}
	}
	if r := e.Run("obs", "ls", "-r", "s3://malocal-demo/out/"); !strings.Contains(r.Stdout, "out/mnist_replica_kill/model.npz") || !strings.Contains(r.Stdout, "out/mnist_softmax/metrics.json") {
		t.Errorf("outputs: %s %s", r.Stdout, r.Stderr)
	}
	if code := e.Stop(); code != 0 {
		t.Fatalf("emulator stop: exit %d", code)
	}

	// Ctrl-C while the jobs run: the demo stops its jobs, then the
	// emulator it started; no container, network or emulator is left.
	cmd := exec.Command(e2e.Binary(t), "demo", "--up-flag=--api-addr=127.0.0.1:0", "--up-flag=--s3-addr=127.0.0.1:0", "--up-flag=--registry-addr=127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MALOCAL_DATA_DIR="+dataDir)
	stderr := &e2e.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The demo prints one training step line every 5 s, from whichever
	// worker logged it: any worker's line says training has begun.
	training := regexp.MustCompile(`mnist-replica \[task \d+\] Worker \d+: training step`)
	deadline := time.Now().Add(3 * time.Minute)
	for !training.MatchString(stderr.String()) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the replica job did not start training:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(stderr.String(), "interrupted: the demo's jobs were stopped") ||
		!strings.Contains(stderr.String(), "stopping the emulator it started") {
		t.Errorf("interrupted demo: %v\n%s", err, stderr.String())
	}
	if _, _, _, err := Running(dataDir); err == nil {
		t.Error("the emulator the demo started still runs after Ctrl-C")
	}
	for _, args := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
		out, _ := exec.Command("docker", append(args, "--filter", "label="+e2e.DataDirLabel+"="+dataDir)...).Output()
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("Ctrl-C left docker %s: %s", args[0], s)
		}
	}
}

// TestDemoWithoutMmdebstrap: without mmdebstrap, and with no base yet, the
// demo says what to install or which --from to use, and starts nothing.
func TestDemoWithoutMmdebstrap(t *testing.T) {
	needData(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	r := e2e.RunCLI(t, []string{"PATH=" + t.TempDir()}, "demo", "--data-dir", dataDir)
	if r.Code == 0 || !strings.Contains(r.Stderr, "--from docker:REF") {
		t.Errorf("exit %d\n%s", r.Code, r.Stderr)
	}
	if _, err := os.Stat("/etc/debian_version"); err == nil && !strings.Contains(r.Stderr, "sudo apt-get install mmdebstrap") {
		t.Errorf("on a Debian host the demo should name the package:\n%s", r.Stderr)
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Error("the demo created the data dir before failing")
	}
}

func jobLogs(t *testing.T, e *e2e.Emulator, id string) string {
	t.Helper()
	var b strings.Builder
	err := e.Client().JobLogs(context.Background(), id, -1, false, func(l api.LogLine) error {
		b.WriteString(l.Text + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
