// Package jobs_test measures the time from submit to all N containers
// running, and to the job completed, for malocal and two peers measured in
// the same run on the same image already in the engine: (a) the raw Docker
// API creating and starting N containers in parallel on one bridge network,
// and (b) docker-compose up of an equivalent N-service file.
//
//	go test -run '^$' -bench . -benchtime 3x ./bench/jobs
package jobs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

var sizes = []int{1, 4, 16}

// taskCommand runs long enough to see every container running at once.
var taskCommand = []string{"sleep", "1"}

func BenchmarkJobStart(b *testing.B) {
	e2e.RequireDocker(b)
	e := e2e.Start(b)
	e.CleanupJobs()
	img := e.BusyboxImage(b, "bench/busybox", "1")
	e.MakeBucket(b, "bench")
	ctx := context.Background()
	// Warm up: the first job pulls the image into the engine.
	warm, err := e.Client().SubmitJob(ctx, api.JobSpec{Name: "warm", Image: img, AppURL: "s3://bench/x/", Command: []string{"true"}})
	if err != nil {
		b.Fatal(err)
	}
	final := waitJob(b, e, warm.ID, func(j *api.Job) bool { return j.Status.Final() })
	engineRef := e.Registry + "/" + final.ImageRepo + "@" + final.ImageDigest

	for _, n := range sizes {
		b.Run(fmt.Sprintf("malocal/N=%d", n), func(b *testing.B) {
			var running, done time.Duration
			for range b.N {
				start := time.Now()
				j, err := e.Client().SubmitJob(ctx, api.JobSpec{Name: "bench", Image: img, Nodes: n, AppURL: "s3://bench/x/", Command: taskCommand})
				if err != nil {
					b.Fatal(err)
				}
				waitJob(b, e, j.ID, allRunning)
				running += time.Since(start)
				if j = waitJob(b, e, j.ID, func(j *api.Job) bool { return j.Status.Final() }); j.Status != api.StatusCompleted {
					b.Fatalf("job %s: %s %s", j.ID, j.Status, j.Reason)
				}
				done += time.Since(start)
			}
			report(b, running, done)
		})
		b.Run(fmt.Sprintf("docker-api/N=%d", n), func(b *testing.B) {
			eng, err := client.New(client.FromEnv)
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			label := e2e.DockerLabel(b)
			k, v, _ := strings.Cut(label, "=")
			var running, done time.Duration
			for i := range b.N {
				start := time.Now()
				net := fmt.Sprintf("bench-raw-%d-%d", n, i)
				if _, err := eng.NetworkCreate(ctx, net, client.NetworkCreateOptions{Driver: "bridge", Labels: map[string]string{k: v}}); err != nil {
					b.Fatal(err)
				}
				ids := make([]string, n)
				var wg sync.WaitGroup
				errs := make([]error, n)
				for t := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{Name: fmt.Sprintf("%s-%d", net, t),
							Config:     &container.Config{Image: engineRef, Hostname: fmt.Sprintf("bench-%d", t), Cmd: taskCommand, Labels: map[string]string{k: v}},
							HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(net)}})
						ids[t], errs[t] = c.ID, err
						if err == nil {
							_, errs[t] = eng.ContainerStart(ctx, ids[t], client.ContainerStartOptions{})
						}
					}()
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
				running += time.Since(start)
				for _, id := range ids {
					wg.Add(1)
					go func() {
						defer wg.Done()
						w := eng.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
						select {
						case <-w.Result:
						case <-w.Error:
						}
					}()
				}
				wg.Wait()
				done += time.Since(start)
				for _, id := range ids {
					eng.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
				}
				eng.NetworkRemove(ctx, net, client.NetworkRemoveOptions{})
			}
			report(b, running, done)
		})
		b.Run(fmt.Sprintf("docker-compose/N=%d", n), func(b *testing.B) {
			e2e.RequireTool(b, "docker-compose")
			dir := b.TempDir()
			var yml strings.Builder
			yml.WriteString("version: \"2.4\"\nservices:\n")
			for t := range n {
				fmt.Fprintf(&yml, "  task%d:\n    image: %s\n    hostname: bench-%d\n    command: [%q, %q]\n", t, engineRef, t, taskCommand[0], taskCommand[1])
			}
			file := filepath.Join(dir, "docker-compose.yml")
			if err := os.WriteFile(file, []byte(yml.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			var running, done time.Duration
			for i := range b.N {
				project := fmt.Sprintf("malocalbench%d%d", n, i)
				start := time.Now()
				if out, err := exec.Command("docker-compose", "-f", file, "-p", project, "up", "-d").CombinedOutput(); err != nil {
					b.Fatalf("docker-compose up: %v\n%s", err, out)
				}
				running += time.Since(start)
				ids, _ := exec.Command("docker-compose", "-f", file, "-p", project, "ps", "-q").Output()
				exec.Command("docker", append([]string{"wait"}, strings.Fields(string(ids))...)...).Run()
				done += time.Since(start)
				exec.Command("docker-compose", "-f", file, "-p", project, "down", "-t", "0").Run()
			}
			report(b, running, done)
		})
	}
}

func allRunning(j *api.Job) bool {
	if j.Status.Final() {
		return true
	}
	for _, t := range j.Tasks {
		if t.Status != "running" && t.ExitCode == nil {
			return false
		}
	}
	return true
}

func waitJob(b *testing.B, e *e2e.Emulator, id string, cond func(*api.Job) bool) *api.Job {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := e.Client().Job(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if cond(j) {
			return j
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("job %s: condition not met in time", id)
	return nil
}

func report(b *testing.B, running, done time.Duration) {
	b.ReportMetric(running.Seconds()/float64(b.N), "s-to-running")
	b.ReportMetric(done.Seconds()/float64(b.N), "s-to-done")
	b.ReportMetric(0, "ns/op")
}
