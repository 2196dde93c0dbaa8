// Package pytorch_test measures the wall time of the PyTorch sample
// (samples/mnist/mnist_ddp.py, DistributedDataParallel over gloo) as a
// malocal job on 1, 2 and 4 nodes, next to the same script on the host under
// `python3 -m torch.distributed.run` (torchrun, Debian's python3-torch) with
// the same world size, measured in the same run: the containers' overhead in
// seconds and as a ratio. A third side runs the same image on N containers
// started by hand with the docker CLI (what a hand-written compose file
// does: a bridge network, the scripts and data bind-mounted, the same
// environment variables), so that the engine's own cost of containers is
// told apart from malocal's.
//
//	go test -run '^$' -bench . -benchtime 3x -timeout 90m ./bench/pytorch
//
// Both run the same number of steps per task (-steps, default 200) with one
// CPU thread per task (OMP_NUM_THREADS=1). The job's time runs from submit
// to its final status (audit of a known image, containers, the code and
// data download by run_train.sh, training, upload); torchrun's from start
// to exit. A second table says when each phase ended on each side (the
// last task's or rank's time, from the job's events, tasks and log lines,
// and the stamps mnist_ddp.py puts on its lines), so that the overhead is
// placed, not guessed.
package pytorch_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/bench/benchstat"
	"github.com/malocal/malocal/e2e"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/samples"
)

func TestMain(m *testing.M) { e2e.Main(m) }

var (
	steps = flag.Int("steps", 200, "training steps of each task")
	sizes = []int{1, 2, 4}
)

const hostPython = "/usr/bin/python3"

// rootfs is the Debian root filesystem of the base, cached as the samples'
// tests cache it (same file name: the package list's hash).
func rootfs(b *testing.B) string {
	p := e2e.RootfsCachePath(samples.BaseInclude)
	dir := filepath.Dir(p)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	e2e.RequireTool(b, "mmdebstrap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := baseimage.Mmdebstrap(ctx, "bookworm", samples.BaseInclude, p, io.Discard); err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkPyTorchJobVsTorchrun(b *testing.B) {
	e2e.RequireDocker(b)
	out, err := exec.Command(hostPython, "-c", "import torch").CombinedOutput()
	e2e.Require(b, err == nil, fmt.Sprintf("%s with torch (apt-get install python3-torch): %v %s", hostPython, err, out))
	e2e.Require(b, len(samples.CheckData(samples.FashionMNIST)) == 0, "Fashion-MNIST (apt-get install dataset-fashion-mnist)")

	e := e2e.Start(b)
	e.CleanupJobs()
	if r := e.Run("base", "build", "--from", "rootfs:"+rootfs(b)); r.Code != 0 {
		b.Fatalf("base build: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// The image the samples' and the guide's tests built on this same
	// base, when they left it in the test cache; else it is built here
	// (minutes) and left there for them.
	base := baseimage.DefaultCPUName + ":" + baseimage.DefaultTag
	key := e.TorchImageKey(b, base)
	restored := e.RestoreImage(b, key, samples.DefaultTorchImage)
	if r := e.RunLong(30*time.Minute, "samples", "install", "--engine", "pytorch"); r.Code != 0 {
		b.Fatalf("samples install --engine pytorch: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if !restored {
		e.CacheImage(b, key, e2e.TorchImagePrefix, samples.DefaultTorchImage)
	}
	scripts := b.TempDir()
	if err := samples.WriteTo(scripts); err != nil {
		b.Fatal(err)
	}
	args := []string{"--max_steps", strconv.Itoa(*steps)}
	ctx := context.Background()

	// Warm-up: the first job audits the image and loads it into the engine.
	warm := samples.Spec(samples.DefaultBucket, samples.DefaultTorchImage, samples.DDPExample(1, "--max_steps", "1"))
	_, wj, _, err := runJob(ctx, e, warm)
	if err != nil {
		b.Fatal(err)
	}
	engineImage := engineRef(b, wj.ImageDigest)

	type row struct {
		n                     int
		job, docker, torchrun time.Duration
		// the slowest rank's "Training elapsed time" on each side
		jobTrain, dockerTrain, torchrunTrain float64
		// when each phase ended, from the start of each side
		jobPhases, dockerPhases, torchrunPhases phases
	}
	var rows []row
	for i := 0; i < b.N; i++ {
		for _, n := range sizes {
			spec := samples.Spec(samples.DefaultBucket, samples.DefaultTorchImage, samples.DDPExample(n, args...))
			spec.Name = fmt.Sprintf("bench-ddp-%d", n)
			spec.Env = map[string]string{"OMP_NUM_THREADS": "1"}
			jt, j, jlog, err := runJob(ctx, e, spec)
			if err != nil {
				b.Fatal(err)
			}
			dt, dlog, dphases, err := plainDocker(ctx, b, engineImage, filepath.Join(scripts, "mnist"), n, args)
			if err != nil {
				b.Fatal(err)
			}
			ts := time.Now()
			tt, tlog, err := torchrun(ctx, b, filepath.Join(scripts, "mnist"), n, args)
			if err != nil {
				b.Fatal(err)
			}
			rows = append(rows, row{n: n, job: jt, docker: dt, torchrun: tt,
				jobTrain: trainingSeconds(logText(jlog)), dockerTrain: trainingSeconds(dlog), torchrunTrain: trainingSeconds(tlog),
				jobPhases: jobPhases(j, jlog), dockerPhases: dphases, torchrunPhases: stampedPhases(ts, tt, tlog)})
		}
	}
	fmt.Printf("\nmnist_ddp.py, %d steps per task, 1 thread per task (OMP_NUM_THREADS=1 on both sides)\n", *steps)
	fmt.Printf("%-6s %12s %12s %12s %12s %9s %9s %14s %14s %14s\n", "nodes", "malocal job", "docker run", "torchrun", "overhead",
		"job/trun", "dock/trun", "job training", "dock training", "host training")
	for _, r := range rows {
		fmt.Printf("%-6d %11.1fs %11.1fs %11.1fs %11.1fs %8.2fx %8.2fx %13.1fs %13.1fs %13.1fs\n", r.n, r.job.Seconds(), r.docker.Seconds(),
			r.torchrun.Seconds(), (r.job - r.torchrun).Seconds(), r.job.Seconds()/r.torchrun.Seconds(), r.docker.Seconds()/r.torchrun.Seconds(),
			r.jobTrain, r.dockerTrain, r.torchrunTrain)
	}
	// One run's ratio moves by more than the overhead itself on this kind
	// of machine (torchrun's own time varies by seconds): with several
	// rounds (-benchtime Nx) the medians are what to read.
	fmt.Printf("\nmedians over %d round(s)\n", b.N)
	fmt.Printf("%-6s %12s %12s %12s %9s %9s %9s\n", "nodes", "malocal job", "docker run", "torchrun", "job/trun", "dock/trun", "job/dock")
	for _, n := range sizes {
		var job, dock, trun, jr, dr, jd []float64
		for _, r := range rows {
			if r.n != n {
				continue
			}
			job, dock, trun = append(job, r.job.Seconds()), append(dock, r.docker.Seconds()), append(trun, r.torchrun.Seconds())
			jr = append(jr, r.job.Seconds()/r.torchrun.Seconds())
			dr = append(dr, r.docker.Seconds()/r.torchrun.Seconds())
			jd = append(jd, r.job.Seconds()/r.docker.Seconds())
		}
		fmt.Printf("%-6d %11.1fs %11.1fs %11.1fs %8.2fx %8.2fx %8.2fx\n", n, benchstat.Median(job), benchstat.Median(dock), benchstat.Median(trun), benchstat.Median(jr), benchstat.Median(dr), benchstat.Median(jd))
		b.ReportMetric(benchstat.Median(jr), fmt.Sprintf("ratio-%dnodes", n))
		b.ReportMetric(benchstat.Median(dr), fmt.Sprintf("docker-ratio-%dnodes", n))
	}
	fmt.Printf("\nwhen each phase ended, seconds from submit (job) or start (torchrun); the last task's or rank's time:\n")
	for _, p := range phaseNames {
		fmt.Printf("  %-8s %s\n", p.name, p.about)
	}
	fmt.Printf("%-6s %-9s", "nodes", "side")
	for _, p := range phaseNames {
		fmt.Printf(" %8s", p.name)
	}
	fmt.Println()
	for _, r := range rows {
		for _, side := range []struct {
			name string
			p    phases
		}{{"job", r.jobPhases}, {"docker", r.dockerPhases}, {"torchrun", r.torchrunPhases}} {
			fmt.Printf("%-6d %-9s", r.n, side.name)
			for k := range phaseNames {
				if d, ok := side.p[k]; ok {
					fmt.Printf(" %7.1fs", d.Seconds())
				} else {
					fmt.Printf(" %8s", "-")
				}
			}
			fmt.Println()
		}
	}
}

// runJob submits spec and returns the time from submit to its final
// status, the job as it ended and the logs of its tasks; a job that does
// not complete is an error.
func runJob(ctx context.Context, e *e2e.Emulator, spec api.JobSpec) (time.Duration, *api.Job, []api.LogLine, error) {
	c := e.Client()
	start := time.Now()
	j, err := c.SubmitJob(ctx, spec)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("submitting %s: %w", spec.Name, err)
	}
	for !j.Status.Final() {
		select {
		case <-ctx.Done():
			return 0, nil, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if j, err = c.Job(ctx, j.ID); err != nil {
			return 0, nil, nil, fmt.Errorf("job %s: %w", spec.Name, err)
		}
	}
	d := time.Since(start)
	var logs []api.LogLine
	err = c.JobLogs(ctx, j.ID, -1, false, func(l api.LogLine) error {
		logs = append(logs, l)
		return nil
	})
	if err != nil {
		return d, j, nil, fmt.Errorf("the logs of job %s: %w", j.ID, err)
	}
	if j.Status != api.StatusCompleted {
		return d, j, logs, fmt.Errorf("job %s (%d nodes): %s %s\n%s", j.ID, spec.Nodes, j.Status, j.Reason, logText(logs))
	}
	return d, j, logs, nil
}

// logText is a job's log lines as text, each marked with its task.
func logText(lines []api.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "[task %d] %s\n", l.Task, l.Text)
	}
	return b.String()
}

// phases holds when each phase of phaseNames ended (by index), counted
// from the start of the run.
type phases map[int]time.Duration

// phaseNames are the phases of a run, in order, and the log line that
// ends each (the last task's or rank's); nil: not a log line.
var phaseNames = []struct {
	name, about string
	re          *regexp.Regexp
}{
	{"queued", "the job's image audited (from the cache) and the job queued", nil},
	{"running", "the job's network and containers created and started", nil},
	{"shell", "run_train.sh's first line (the container's process runs)", regexp.MustCompile(`^user: `)},
	{"code", "run_train.sh downloaded the code dir (with the 30 MB of idx files)", regexp.MustCompile(`^downloaded \d+ files from`)},
	{"data", "python started, torch imported, the data read", regexp.MustCompile(`training, \d+ test examples on`)},
	{"joined", "the rendezvous: every rank joined the gloo group", regexp.MustCompile(`joined the \w+ group`)},
	{"trained", "the training loop ended", regexp.MustCompile(`Training ends @`)},
	{"saved", "rank 0 evaluated the test set and saved the model and metrics", regexp.MustCompile(`saved .* to `)},
	{"done", "every rank left the group (after the last barrier)", regexp.MustCompile(`rank \d+ of \d+: done`)},
	{"logged", "run_train.sh uploaded its log file", regexp.MustCompile(`^uploaded log to `)},
	{"exited", "the last container (or torchrun) exited", nil},
	{"final", "the job's final status", nil},
}

// phaseIndex is the index of the phase called name in phaseNames.
func phaseIndex(name string) int {
	for i, p := range phaseNames {
		if p.name == name {
			return i
		}
	}
	panic("no phase " + name)
}

// markLine records in p the phase that a log line stamped at, since
// start, ends: the latest of the tasks' or ranks' lines.
func (p phases) markLine(text string, at time.Duration) {
	for k, ph := range phaseNames {
		if ph.re != nil && ph.re.MatchString(text) && at > p[k] {
			p[k] = at
		}
	}
}

// jobPhases reads a job's phases from its events, tasks and log lines
// (stamped by the engine as they came).
func jobPhases(j *api.Job, logs []api.LogLine) phases {
	p := phases{}
	t0 := j.Created
	for _, ev := range j.Events {
		if ev.Status == api.StatusPending {
			p[phaseIndex("queued")] = ev.Time.Sub(t0)
		}
	}
	var running, exited time.Time
	for _, t := range j.Tasks {
		if t.Started.After(running) {
			running = t.Started
		}
		if t.Finished.After(exited) {
			exited = t.Finished
		}
	}
	if !running.IsZero() {
		p[phaseIndex("running")] = running.Sub(t0)
	}
	for _, l := range logs {
		p.markLine(l.Text, l.Time.Sub(t0))
	}
	if !exited.IsZero() {
		p[phaseIndex("exited")] = exited.Sub(t0)
	}
	p[phaseIndex("final")] = j.Finished.Sub(t0)
	return p
}

// stampRE is the time.time() stamp that mnist_ddp.py's log() puts at the
// start of its lines (after torchrun's "[default0]:" prefix).
var stampRE = regexp.MustCompile(`^(?:\[[^\]]*\]:)?(\d{9,}\.\d+): (.*)$`)

// stampedPhases reads a run's phases from the stamps of the script's lines
// (torchrun's, or the hand-started containers'); the run started at t0 and
// took d, and ended when its last process did unless the caller knows
// better.
func stampedPhases(t0 time.Time, d time.Duration, out string) phases {
	p := phases{}
	for _, line := range strings.Split(out, "\n") {
		m := stampRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		s, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		at := time.Unix(0, int64(s*1e9))
		p.markLine(m[2], at.Sub(t0))
	}
	p[phaseIndex("exited")] = d
	p[phaseIndex("final")] = d
	return p
}

var trainingRE = regexp.MustCompile(`Training elapsed time: ([0-9.]+) s`)

// trainingSeconds is the longest "Training elapsed time" that the ranks
// of mnist_ddp.py printed in log: the training loop alone, without the
// start, the data, the rendezvous and the evaluation.
func trainingSeconds(log string) float64 {
	var longest float64
	for _, m := range trainingRE.FindAllStringSubmatch(log, -1) {
		if s, err := strconv.ParseFloat(m[1], 64); err == nil && s > longest {
			longest = s
		}
	}
	return longest
}

// torchrun runs the script on the host with n processes and returns its
// time and output.
func torchrun(ctx context.Context, b *testing.B, dir string, n int, args []string) (time.Duration, string, error) {
	port := 29500 + n
	// --redirects 1 --tee 1: the launcher of Debian's torch 1.13 under
	// Python 3.11 fails on its defaults ("0" parses to None).
	// --monitor_interval 0.1: by default the launcher looks at its workers
	// every 5 s, so it would exit up to 5 s after them; the job's side is
	// polled every 100 ms (runJob).
	cmd := exec.CommandContext(ctx, hostPython, append([]string{"-m", "torch.distributed.run",
		"--redirects", "1", "--tee", "1", "--monitor_interval", "0.1", "--log_dir", b.TempDir(),
		"--nproc_per_node", strconv.Itoa(n), "--master_addr", "127.0.0.1", "--master_port", strconv.Itoa(port),
		"mnist_ddp.py", "--data_url", samples.FashionMNIST, "--train_url", b.TempDir()}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, string(out), fmt.Errorf("torchrun with %d processes: %w\n%s", n, err, out)
	}
	return d, string(out), nil
}

// engineRef is the engine's name of the job image with manifest digest,
// which the warm-up job pulled: the registry address the engine knows it
// by is malocal's business, so it is read back from the engine.
func engineRef(b *testing.B, digest string) string {
	out, err := exec.Command("docker", "image", "ls", "--format", "{{.Repository}}").Output()
	if err != nil {
		b.Fatalf("docker image ls: %v", err)
	}
	repo := strings.SplitN(samples.DefaultTorchImage, ":", 2)[0]
	for _, r := range strings.Fields(string(out)) {
		if !strings.HasSuffix(r, "/"+repo) {
			continue
		}
		ref := r + "@" + digest
		if exec.Command("docker", "image", "inspect", ref).Run() == nil {
			return ref
		}
	}
	b.Fatalf("the engine has no image %s@%s after the warm-up job", repo, digest)
	return ""
}

// plainDocker runs the script on n containers of image started by hand
// with the docker CLI, as a hand-written compose file would: a bridge
// network, the scripts and the host's data bind-mounted, the platform's
// cluster variables set by hand, all containers created and started at
// once. Its time runs from the network's creation to the removal of the
// containers and the network (the job's time includes its cleanup too).
func plainDocker(ctx context.Context, b *testing.B, image, dir string, n int, args []string) (time.Duration, string, phases, error) {
	prefix := fmt.Sprintf("bench-plain-%d-%d", n, time.Now().UnixNano()%1e6)
	docker := func(a ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "docker", a...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("docker %s: %w\n%s", strings.Join(a, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	b.Cleanup(func() {
		exec.Command("docker", append([]string{"rm", "-f"}, names...)...).Run()
		exec.Command("docker", "network", "rm", prefix).Run()
	})
	start := time.Now()
	if _, err := docker("network", "create", prefix); err != nil {
		return 0, "", nil, err
	}
	errs := make(chan error, n)
	for i, name := range names {
		go func() {
			_, err := docker(append([]string{"run", "-d", "--name", name, "--hostname", name, "--network", prefix,
				"-e", "DLS_TASK_INDEX=" + strconv.Itoa(i), "-e", "DLS_TASK_NUMBER=" + strconv.Itoa(n),
				"-e", fmt.Sprintf("BATCH_CUSTOM0_HOSTS=%s:%d", names[0], jobs.DefaultPort), "-e", "OMP_NUM_THREADS=1",
				"-v", dir + ":/code:ro", "-v", samples.FashionMNIST + ":/data:ro", "--tmpfs", "/out",
				image, "python", "/code/mnist_ddp.py", "--data_url", "/data", "--train_url", "/out"}, args...)...)
			errs <- err
		}()
	}
	for range names {
		if err := <-errs; err != nil {
			return 0, "", nil, err
		}
	}
	codes, err := docker(append([]string{"wait"}, names...)...)
	if err != nil {
		return 0, "", nil, err
	}
	var logs strings.Builder
	var running, exited time.Time
	for _, name := range names {
		out, err := docker("logs", name)
		if err != nil {
			return 0, "", nil, err
		}
		logs.WriteString(out + "\n")
		st, err := docker("inspect", "--format", "{{.State.StartedAt}} {{.State.FinishedAt}}", name)
		if err != nil {
			return 0, "", nil, err
		}
		var s, f time.Time
		if fs := strings.Fields(st); len(fs) == 2 {
			s, _ = time.Parse(time.RFC3339Nano, fs[0])
			f, _ = time.Parse(time.RFC3339Nano, fs[1])
		}
		if s.After(running) {
			running = s
		}
		if f.After(exited) {
			exited = f
		}
	}
	for _, c := range strings.Fields(codes) {
		if c != "0" {
			return 0, logs.String(), nil, fmt.Errorf("plain docker, %d containers: exit codes %s\n%s", n, strings.Join(strings.Fields(codes), " "), logs.String())
		}
	}
	if _, err := docker(append([]string{"rm"}, names...)...); err != nil {
		return 0, "", nil, err
	}
	if _, err := docker("network", "rm", prefix); err != nil {
		return 0, "", nil, err
	}
	d := time.Since(start)
	p := stampedPhases(start, d, logs.String())
	if !running.IsZero() {
		p[phaseIndex("running")] = running.Sub(start)
	}
	if !exited.IsZero() {
		p[phaseIndex("exited")] = exited.Sub(start)
	}
	return d, logs.String(), p, nil
}
