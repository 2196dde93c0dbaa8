package jobs_test

// BenchmarkSamplingOverhead measures the CPU that resource sampling costs
// for 16 tasks at the default interval: malocal's sampler in this process
// against `docker stats` following the same 16 containers over the same
// window, and the emulator process's own CPU while it samples a real
// 16-node job against `docker stats` following that job's containers.
//
//	go test -run '^$' -bench SamplingOverhead -benchtime 1x ./bench/jobs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/e2e"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/metrics"
)

const (
	sampledTasks = 16
	window       = 30 * time.Second
)

func BenchmarkSamplingOverhead(b *testing.B) {
	e2e.RequireDocker(b)
	img, err := e2e.BusyboxV1Image()
	if err != nil {
		b.Fatal(err)
	}
	ref := fmt.Sprintf("malocal-bench/sampling:t%d", time.Now().UnixNano())
	e2e.LoadImage(b, ref, img)
	eng, err := client.New(client.FromEnv)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	k, v, _ := strings.Cut(e2e.DockerLabel(b), "=")
	ids := make([]string, sampledTasks)
	for i := range ids {
		c, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config:     &container.Config{Image: ref, Cmd: []string{"sleep", "3600"}, Labels: map[string]string{k: v}},
			HostConfig: &container.HostConfig{Resources: container.Resources{NanoCPUs: 1e9, Memory: 64 << 20}},
		})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = c.ID
		if _, err := eng.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
	}

	b.Run(fmt.Sprintf("malocal-sampler/N=%d", sampledTasks), func(b *testing.B) {
		for range b.N {
			st, err := metrics.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			smp, err := metrics.NewDockerSampler(st, metrics.WithEngine(eng))
			if err != nil {
				b.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, window)
			before, start := selfCPU(), time.Now()
			var wg sync.WaitGroup
			for i, id := range ids {
				wg.Go(func() { smp.TaskStarted(wctx, "bench", i, id) })
			}
			wg.Wait()
			cancel()
			used, wall := selfCPU()-before, time.Since(start)
			m, _ := st.Get("bench", time.Time{})
			reportCPU(b, used, wall, len(m.Samples))
		}
	})

	b.Run(fmt.Sprintf("docker-stats/N=%d", sampledTasks), func(b *testing.B) {
		for range b.N {
			wctx, cancel := context.WithTimeout(ctx, window)
			cmd := exec.CommandContext(wctx, "docker", append([]string{"stats", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}"}, ids...)...)
			cmd.Stdout, cmd.Stderr = nil, nil
			start := time.Now()
			cmd.Run()
			cancel()
			wall := time.Since(start)
			if cmd.ProcessState == nil {
				b.Fatal("docker stats did not run")
			}
			used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			reportCPU(b, used, wall, 0)
		}
	})

	// The product path: the emulator process's own CPU while its Docker
	// backend hands each task of a 16-node job to the sampler, next to
	// `docker stats` following that job's 16 containers over the same
	// window. The tasks sleep, so what the emulator spends is sampling
	// plus its idle upkeep (log followers, the job's watch).
	b.Run(fmt.Sprintf("malocal-emulator/N=%d", sampledTasks), func(b *testing.B) {
		e := e2e.Start(b)
		e.CleanupJobs()
		jimg := e.BusyboxImage(b, "bench/busybox", "1")
		e.MakeBucket(b, "bench")
		for range b.N {
			j, err := e.Client().SubmitJob(ctx, api.JobSpec{Name: "sampled", Image: jimg, Nodes: sampledTasks, AppURL: "s3://bench/x/",
				Command: []string{"sleep", strconv.Itoa(int(window.Seconds()) + 60)}})
			if err != nil {
				b.Fatal(err)
			}
			waitJob(b, e, j.ID, allRunning)
			jobIDs := jobContainers(ctx, b, eng, j.ID)
			time.Sleep(5 * time.Second) // past the start-up work
			wctx, cancel := context.WithTimeout(ctx, window)
			peer := exec.CommandContext(wctx, "docker", append([]string{"stats", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}"}, jobIDs...)...)
			before, start := procCPU(b, e.PID()), time.Now()
			var peerErr strings.Builder
			peer.Stderr = &peerErr
			if err := peer.Start(); err != nil {
				b.Fatalf("docker stats: %v", err)
			}
			<-wctx.Done()
			used, wall := procCPU(b, e.PID())-before, time.Since(start)
			peer.Wait() // killed at the window's end
			cancel()
			if ws, ok := peer.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				b.Fatalf("docker stats ended before the window did: %v: %s", peer.ProcessState, peerErr.String())
			}
			m, err := e.Client().JobMetrics(ctx, j.ID, start)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := e.Client().StopJob(ctx, j.ID); err != nil {
				b.Fatalf("stopping the job: %v", err)
			}
			if len(m.Samples) == 0 {
				b.Fatal("the emulator took no samples of its 16-node job")
			}
			peerUsed := peer.ProcessState.UserTime() + peer.ProcessState.SystemTime()
			reportCPU(b, used, wall, len(m.Samples))
			b.ReportMetric(100*peerUsed.Seconds()/wall.Seconds(), "%core-docker-stats")
		}
	})
}

// jobContainers lists the containers of a job by the backend's label.
func jobContainers(ctx context.Context, b *testing.B, eng *client.Client, jobID string) []string {
	b.Helper()
	list, err := eng.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", jobs.LabelJob+"="+jobID)})
	if err != nil {
		b.Fatalf("listing the job's containers: %v", err)
	}
	if len(list.Items) != sampledTasks {
		b.Fatalf("job %s: %d containers running, want %d", jobID, len(list.Items), sampledTasks)
	}
	ids := make([]string, 0, len(list.Items))
	for _, c := range list.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

// reportCPU reports CPU time over wall time as a percentage of one core.
func reportCPU(b *testing.B, used, wall time.Duration, samples int) {
	b.ReportMetric(100*used.Seconds()/wall.Seconds(), "%core")
	if samples > 0 {
		b.ReportMetric(float64(samples), "samples")
	}
	b.ReportMetric(0, "ns/op")
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user and system CPU time so far, from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		b.Fatalf("reading the emulator's CPU time: %v", err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)        // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)        // stime, field 15
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}
