package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// runEnv is the environment of one `malocal run` test: a TMPDIR of its own
// (so the throwaway emulator's temp dir can be checked for), and the code
// and data dirs.
type runEnv struct {
	t      *testing.T
	tmp    string // TMPDIR of the runs
	code   string
	data   string
	output string
	junit  string
}

func newRunEnv(t *testing.T, files map[string]string) *runEnv {
	t.Helper()
	RequireDocker(t)
	dir := t.TempDir()
	r := &runEnv{t: t, tmp: filepath.Join(dir, "tmp"), code: filepath.Join(dir, "src"), data: filepath.Join(dir, "data"),
		output: filepath.Join(dir, "out"), junit: filepath.Join(dir, "report", "junit.xml")}
	for _, d := range []string{r.tmp, r.code, r.data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, content := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The throwaway emulators' job containers and networks carry their data
	// dir, which lies under r.tmp: remove whatever a failed test left.
	t.Cleanup(func() {
		for _, dd := range r.dataDirsInDocker() {
			RemoveLabelled(t, DataDirLabel+"="+dd)
		}
	})
	return r
}

func (r *runEnv) env() []string {
	return []string{"TMPDIR=" + r.tmp, "MALOCAL_DATA_DIR=", "MALOCAL_API="}
}

// dataDirsInDocker lists the data dirs under r.tmp that label containers
// or networks.
func (r *runEnv) dataDirsInDocker() []string {
	seen := map[string]bool{}
	var out []string
	for _, args := range [][]string{
		{"ps", "-a", "--filter", "label=" + DataDirLabel, "--format", `{{.Label "` + DataDirLabel + `"}}`},
		{"network", "ls", "--filter", "label=" + DataDirLabel, "--format", `{{.Label "` + DataDirLabel + `"}}`},
	} {
		b, _ := exec.Command("docker", args...).Output()
		for _, dd := range strings.Fields(string(b)) {
			if strings.HasPrefix(dd, r.tmp+string(filepath.Separator)) && !seen[dd] {
				seen[dd] = true
				out = append(out, dd)
			}
		}
	}
	return out
}

// assertClean checks that the runs left no container, network or temp dir.
func (r *runEnv) assertClean() {
	r.t.Helper()
	if dds := r.dataDirsInDocker(); len(dds) > 0 {
		r.t.Errorf("containers or networks left behind for %v", dds)
	}
	left, _ := filepath.Glob(filepath.Join(r.tmp, "malocal-run-*"))
	if len(left) > 0 {
		r.t.Errorf("temp dirs left behind: %v", left)
	}
}

func (r *runEnv) run(args ...string) Result {
	r.t.Helper()
	start := time.Now()
	res := RunCLI(r.t, r.env(), append([]string{"run"}, args...)...)
	r.t.Logf("malocal run: exit %d in %s; its stderr:\n%s", res.Code, time.Since(start).Round(time.Millisecond), res.Stderr)
	return res
}

func TestRunPythonJobOutputsAndJUnit(t *testing.T) {
	r := newRunEnv(t, map[string]string{
		"src/train.py": `import os, sys
import moxing as mox
i = os.environ["DLS_TASK_INDEX"]
data = open("/cache/data/numbers.txt").read().split()
print("task", i, "of", os.environ["DLS_TASK_NUMBER"], "sum", sum(int(x) for x in data), "arg", sys.argv[1], "extra", os.environ["EXTRA"])
os.makedirs("/cache/out", exist_ok=True)
with open("/cache/out/task-%s.txt" % i, "w") as f:
    f.write("result of task %s\n" % i)
mox.file.copy_parallel("/cache/out", os.environ["DLS_TRAIN_URL"])
print("uploaded")
`,
		"src/lib/helper.py": "X = 1\n",
		"data/numbers.txt":  "1 2 3 4\n",
	})
	base := LoadPythonBase(t)
	cmd := `python3 -c "import moxing as mox, os; mox.file.copy_parallel(os.environ['DLS_DATA_URL'], '/cache/data')" && ` +
		`test -f /home/work/user-job-dir/src/lib/helper.py && python3 /home/work/user-job-dir/src/train.py "$@"`
	res := r.run("--code", r.code, "--image", base, "--nodes", "2", "--data", r.data, "--output", r.output,
		"--junit", r.junit, "--env", "EXTRA=yes", "--",
		"bash", "/home/work/run_train.sh", "bash", "-c", cmd, "train", "--lr=0.1")
	if res.Code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	for i := range 2 {
		for _, want := range []string{
			fmt.Sprintf("[task %d] task %d of 2 sum 10 arg --lr=0.1 extra yes", i, i),
			fmt.Sprintf("[task %d] uploaded", i),
		} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, res.Stdout)
			}
		}
		b, err := os.ReadFile(filepath.Join(r.output, fmt.Sprintf("task-%d.txt", i)))
		if err != nil || string(b) != fmt.Sprintf("result of task %d\n", i) {
			t.Errorf("output task-%d.txt: %q, %v", i, b, err)
		}
	}
	if !strings.Contains(res.Stderr, "registered base "+base) {
		t.Errorf("the base was not pushed and registered from the engine:\n%s", res.Stderr)
	}
	var rep struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(r.junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &rep); err != nil || len(rep.Suites) != 1 || rep.Suites[0].Tests != 2 || rep.Suites[0].Failures != 0 {
		t.Errorf("junit report (%v):\n%s", err, b)
	}
	r.assertClean()
}

func TestRunFailingTaskExitCodeAndJUnit(t *testing.T) {
	r := newRunEnv(t, map[string]string{"src/train.sh": "echo unused\n"})
	imgs := LoadBusyboxImages(t)
	// Task 1 fails a few seconds after its start, so that task 0 (which
	// ends at once) has ended first: a failing task stops the others, and
	// the containers start in parallel, in no set order.
	res := r.run("--code", r.code, "--image", imgs.Image, "--nodes", "2", "--junit", r.junit, "--output", r.output, "--",
		"/bin/sh", "-c", `echo "hello from $DLS_TASK_INDEX"; if [ "$DLS_TASK_INDEX" = 1 ]; then sleep 5; echo "failing now" >&2; exit 7; fi`)
	if res.Code != 7 {
		t.Fatalf("exit %d, want 7\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, want := range []string{"[task 0] hello from 0", "[task 1] hello from 1", "[task 1] failing now"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.Stdout)
		}
	}
	if !strings.Contains(res.Stderr, "failed") {
		t.Errorf("stderr does not say the job failed:\n%s", res.Stderr)
	}
	b, err := os.ReadFile(r.junit)
	if err != nil {
		t.Fatal(err)
	}
	rep := string(b)
	for _, want := range []string{`tests="2" failures="1"`, `name="task 0 (`, `<failure message="exit code 7" type="failed">`, "hello from 1", "failing now"} {
		if !strings.Contains(rep, want) {
			t.Errorf("junit report lacks %q:\n%s", want, rep)
		}
	}
	if fi, err := os.Stat(r.output); err != nil || !fi.IsDir() {
		t.Errorf("--output dir not made for a job without outputs: %v", err)
	}
	r.assertClean()
}

func TestRunTimeout(t *testing.T) {
	r := newRunEnv(t, nil)
	imgs := LoadBusyboxImages(t)
	res := r.run("--code", r.code, "--image", imgs.Image, "--timeout", "3s", "--stop-grace", "2s", "--",
		"/bin/sh", "-c", `echo started; sleep 120`)
	if res.Code != 124 {
		t.Fatalf("exit %d, want 124\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "[task 0] started") || !strings.Contains(res.Stderr, "time limit") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", res.Stdout, res.Stderr)
	}
	r.assertClean()
}

func TestRunAuditFailure(t *testing.T) {
	r := newRunEnv(t, nil)
	imgs := LoadBusyboxImages(t)
	// An image on the same base that replaces /etc/passwd: base content
	// changed, which the audit rejects.
	bad := strings.Replace(imgs.Image, "busybox-train", "busybox-rogue", 1)
	img, err := mutate.AppendLayers(imgs.BaseImg, fileLayer("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nwork:x:0:0::/home/work:/bin/sh\n"))
	if err != nil {
		t.Fatal(err)
	}
	LoadImage(t, bad, img)
	res := r.run("--code", r.code, "--image", bad, "--", "/bin/sh", "-c", "echo must not run")
	if res.Code != 3 {
		t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "audit of ") || !strings.Contains(res.Stderr, "etc/passwd") {
		t.Errorf("stderr lacks the audit report naming etc/passwd:\n%s", res.Stderr)
	}
	if strings.Contains(res.Stdout, "must not run") {
		t.Errorf("the job ran:\n%s", res.Stdout)
	}
	r.assertClean()
}

func TestRunTwoAtOnce(t *testing.T) {
	r := newRunEnv(t, nil)
	imgs := LoadBusyboxImages(t)
	var wg sync.WaitGroup
	results := make([]Result, 2)
	// Only task 1 of run 1 fails, and late: a failing task stops the others
	// (policy all), and on a loaded machine its peer may start a second or
	// more after it, so failing at once could stop the peer before it printed.
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(r.output, fmt.Sprint(i))
			results[i] = RunCLI(t, r.env(), "run", "--code", r.code, "--image", imgs.Image, "--nodes", "2", "--output", out,
				"--env", fmt.Sprintf("MARK=run%d", i), "--",
				"/bin/sh", "-c", `sleep 1; echo "mark=$MARK task=$DLS_TASK_INDEX job=$DLS_JOB_ID"; [ "$MARK" = run1 ] && [ "$DLS_TASK_INDEX" = 1 ] && { sleep 5; exit 5; }; exit 0`)
		}()
	}
	wg.Wait()
	for i, res := range results {
		want := 0
		if i == 1 {
			want = 5
		}
		if res.Code != want {
			t.Errorf("run %d: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", i, res.Code, want, res.Stdout, res.Stderr)
		}
		other := fmt.Sprintf("mark=run%d", 1-i)
		for task := range 2 {
			if w := fmt.Sprintf("[task %d] mark=run%d task=%d", task, i, task); !strings.Contains(res.Stdout, w) {
				t.Errorf("run %d: stdout lacks %q:\n%s", i, w, res.Stdout)
			}
		}
		if strings.Contains(res.Stdout, other) {
			t.Errorf("run %d saw the other run's logs:\n%s", i, res.Stdout)
		}
	}
	r.assertClean()
}

func TestRunInterruptTearsDown(t *testing.T) {
	r := newRunEnv(t, nil)
	imgs := LoadBusyboxImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), "run", "--code", r.code, "--image", imgs.Image, "--nodes", "2", "--stop-grace", "5s", "--",
		"/bin/sh", "-c", `trap 'echo got SIGTERM; exit 143' TERM; echo started; sleep 300 & wait`)
	cmd.Env = append(os.Environ(), r.env()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var out strings.Builder
	var outMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			outMu.Lock()
			out.WriteString(sc.Text() + "\n")
			outMu.Unlock()
			if strings.HasSuffix(sc.Text(), "] started") {
				if n++; n == 2 {
					close(started)
				}
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the tasks did not start\nstderr:\n%s", stderr.String())
	}
	// The job runs in containers now: the run's temp dir and containers exist.
	if left, _ := filepath.Glob(filepath.Join(r.tmp, "malocal-run-*")); len(left) != 1 || len(r.dataDirsInDocker()) != 1 {
		t.Errorf("while running: temp dirs %v, data dirs in docker %v", left, r.dataDirsInDocker())
	}
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	code := exitCode(err)
	t.Logf("exit %d, %s after SIGINT", code, time.Since(sent).Round(time.Millisecond))
	outMu.Lock()
	defer outMu.Unlock()
	if code != 130 {
		t.Errorf("exit %d, want 130\nstdout:\n%s\nstderr:\n%s", code, out.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopping job") || !strings.Contains(stderr.String(), "canceled") {
		t.Errorf("stderr does not tell the job was stopped:\n%s", stderr.String())
	}
	r.assertClean()
}

func TestRunOnRunningEmulator(t *testing.T) {
	RequireDocker(t)
	e := Start(t)
	e.CleanupJobs()
	img := e.BusyboxImage(t, "test/busybox", "1")
	code := filepath.Join(t.TempDir(), "my code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "hello.txt"), []byte("hi"), 0o644)
	start := time.Now()
	res := RunCLI(t, []string{"MALOCAL_DATA_DIR=" + e.DataDir}, "run", "--api", e.API, "--code", code, "--image", img,
		"--data-url", "s3://malocal-run/shared-data/", "--", "/bin/sh", "-c", `echo "app=$DLS_APP_URL data=$DLS_DATA_URL train=$DLS_TRAIN_URL"`)
	t.Logf("malocal run --api: exit %d in %s", res.Code, time.Since(start).Round(time.Millisecond))
	if res.Code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "/my code/ data=s3://malocal-run/shared-data/ train=s3://malocal-run/run-") {
		t.Errorf("stdout:\n%s", res.Stdout)
	}
	if strings.Contains(res.Stderr, "throwaway") || strings.Contains(res.Stderr, "pushing") {
		t.Errorf("the run did not use the running emulator and its image as they are:\n%s", res.Stderr)
	}
	js, err := e.Client().Jobs(context.Background(), "completed", "")
	if err != nil || len(js) != 1 {
		t.Errorf("jobs of the running emulator: %v, %v", js, err)
	}
}

func TestRunMissingBaseFailsClearly(t *testing.T) {
	r := newRunEnv(t, nil)
	imgs := LoadBusyboxImages(t)
	// The engine keeps the image (and so the base's layers), not the base's name.
	if out, err := exec.Command("docker", "tag", imgs.Base, imgs.Base+"-kept").CombinedOutput(); err != nil {
		t.Fatalf("docker tag: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", imgs.Base+"-kept").Run() })
	if out, err := exec.Command("docker", "rmi", imgs.Base).CombinedOutput(); err != nil {
		t.Fatalf("docker rmi: %v: %s", err, out)
	}
	res := r.run("--code", r.code, "--image", imgs.Image, "--", "/bin/sh", "-c", "echo must not run")
	if res.Code != 1 || !strings.Contains(res.Stderr, "is built on base "+imgs.Base+": the base is neither in the emulator nor in the local Docker engine") {
		t.Errorf("exit %d, want 1 and a clear error\nstderr:\n%s", res.Code, res.Stderr)
	}
	res = r.run("--code", r.code, "--image", "malocal-test/nowhere:1", "--", "true")
	if res.Code != 1 || !strings.Contains(res.Stderr, "neither in the emulator's registry nor in the local Docker engine") {
		t.Errorf("exit %d, want 1 and a clear error\nstderr:\n%s", res.Code, res.Stderr)
	}
	r.assertClean()
}
