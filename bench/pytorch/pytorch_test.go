// Package pytorch_test measures the wall time of the PyTorch sample
// (samples/mnist/mnist_ddp.py, DistributedDataParallel over gloo) as a
// malocal job on 1, 2 and 4 nodes, next to the same script on the host under
// `python3 -m torch.distributed.run` (torchrun, Debian's python3-torch) with
// the same world size, measured in the same run: the containers' overhead in
// seconds and as a ratio.
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/pytorch
//
// Both run the same number of steps per task (-steps, default 200) with one
// CPU thread per task (OMP_NUM_THREADS=1). The job's time runs from submit
// to its final status (audit of a known image, containers, the code and
// data download by run_train.sh, training, upload); torchrun's from start
// to exit.
package pytorch_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/e2e"
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
	pkgs := baseimage.IncludeList(samples.BaseInclude)
	sum := sha256.Sum256([]byte(strings.Join(pkgs, ",")))
	dir := filepath.Join(os.TempDir(), "malocal-test-cache")
	p := filepath.Join(dir, "rootfs-bookworm-"+hex.EncodeToString(sum[:6])+".tar")
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
	if r := e.Run("samples", "install", "--engine", "pytorch"); r.Code != 0 {
		b.Fatalf("samples install --engine pytorch: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	scripts := b.TempDir()
	if err := samples.WriteTo(scripts); err != nil {
		b.Fatal(err)
	}
	args := []string{"--max_steps", strconv.Itoa(*steps)}
	ctx := context.Background()

	// Warm-up: the first job audits the image and loads it into the engine.
	warm := samples.Spec(samples.DefaultBucket, samples.DefaultTorchImage, samples.DDPExample(1, "--max_steps", "1"))
	if _, err := runJob(ctx, e, warm); err != nil {
		b.Fatal(err)
	}

	type row struct {
		n             int
		job, torchrun time.Duration
	}
	var rows []row
	for i := 0; i < b.N; i++ {
		for _, n := range sizes {
			spec := samples.Spec(samples.DefaultBucket, samples.DefaultTorchImage, samples.DDPExample(n, args...))
			spec.Name = fmt.Sprintf("bench-ddp-%d", n)
			spec.Env = map[string]string{"OMP_NUM_THREADS": "1"}
			jt, err := runJob(ctx, e, spec)
			if err != nil {
				b.Fatal(err)
			}
			tt, err := torchrun(ctx, b, filepath.Join(scripts, "mnist"), n, args)
			if err != nil {
				b.Fatal(err)
			}
			rows = append(rows, row{n: n, job: jt, torchrun: tt})
		}
	}
	fmt.Printf("\nmnist_ddp.py, %d steps per task, 1 thread per task\n", *steps)
	fmt.Printf("%-6s %12s %12s %12s %8s\n", "nodes", "malocal job", "torchrun", "overhead", "ratio")
	for _, r := range rows {
		fmt.Printf("%-6d %11.1fs %11.1fs %11.1fs %7.2fx\n", r.n, r.job.Seconds(), r.torchrun.Seconds(),
			(r.job - r.torchrun).Seconds(), r.job.Seconds()/r.torchrun.Seconds())
		b.ReportMetric(r.job.Seconds()/r.torchrun.Seconds(), fmt.Sprintf("ratio-%dnodes", r.n))
	}
}

// runJob submits spec and returns the time from submit to its final
// status; a job that does not complete is an error.
func runJob(ctx context.Context, e *e2e.Emulator, spec api.JobSpec) (time.Duration, error) {
	c := e.Client()
	start := time.Now()
	j, err := c.SubmitJob(ctx, spec)
	if err != nil {
		return 0, err
	}
	for !j.Status.Final() {
		time.Sleep(100 * time.Millisecond)
		if j, err = c.Job(ctx, j.ID); err != nil {
			return 0, err
		}
	}
	d := time.Since(start)
	if j.Status != api.StatusCompleted {
		return d, fmt.Errorf("job %s (%d nodes): %s %s", j.ID, spec.Nodes, j.Status, j.Reason)
	}
	return d, nil
}

// torchrun runs the script on the host with n processes.
func torchrun(ctx context.Context, b *testing.B, dir string, n int, args []string) (time.Duration, error) {
	port := 29500 + n
	// --redirects 1 --tee 1: the launcher of Debian's torch 1.13 under
	// Python 3.11 fails on its defaults ("0" parses to None).
	cmd := exec.CommandContext(ctx, hostPython, append([]string{"-m", "torch.distributed.run",
		"--redirects", "1", "--tee", "1", "--log_dir", b.TempDir(),
		"--nproc_per_node", strconv.Itoa(n), "--master_addr", "127.0.0.1", "--master_port", strconv.Itoa(port),
		"mnist_ddp.py", "--data_url", samples.FashionMNIST, "--train_url", b.TempDir()}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("torchrun with %d processes: %v\n%s", n, err, out)
	}
	return d, nil
}
