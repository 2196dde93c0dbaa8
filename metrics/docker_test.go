package metrics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/e2e"
	"github.com/malocal/malocal/metrics"
)

// The sampler against real containers of the Docker engine: one that
// burns a core and one that sleeps, each with a flavor's limits.
func TestDockerSamplerRealContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers")
	}
	e2e.RequireDocker(t)
	img, err := e2e.BusyboxV1Image()
	if err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("malocal-test/metrics-busybox:t%d", time.Now().UnixNano())
	e2e.LoadImage(t, ref, img)
	eng, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	label := e2e.DockerLabel(t)
	k, v, _ := strings.Cut(label, "=")
	start := func(script string) string {
		c, err := eng.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config:     &container.Config{Image: ref, Cmd: []string{"/bin/sh", "-c", script}, Labels: map[string]string{k: v}},
			HostConfig: &container.HostConfig{Resources: container.Resources{NanoCPUs: 1e9, Memory: 64 << 20}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			eng.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
		})
		if _, err := eng.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatal(err)
		}
		return c.ID
	}
	busy := start("while :; do :; done")
	idle := start("sleep 600")

	st, err := metrics.Open(t.TempDir(), metrics.WithInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	smp, err := metrics.NewDockerSampler(st, metrics.WithEngine(eng))
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithTimeout(ctx, 6*time.Second)
	defer stop()
	done := make(chan struct{}, 2)
	for i, id := range []string{busy, idle} {
		go func() { smp.TaskStarted(sctx, "job-s", i, id); done <- struct{}{} }()
	}
	<-done
	<-done // both return once the task's context ends

	m, err := st.Get("job-s", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var n [2]int
	var cpu [2]float64
	for _, s := range m.Samples {
		n[s.Task]++
		cpu[s.Task] += s.CPU
		if s.CPULimit != 1 || s.MemoryLimit != 64<<20 {
			t.Errorf("task %d: limits %v cores, %d bytes; want the flavor's 1 core, 64 MiB", s.Task, s.CPULimit, s.MemoryLimit)
		}
		if s.Memory <= 0 || s.Memory > s.MemoryLimit {
			t.Errorf("task %d: memory %d not within (0, limit]", s.Task, s.Memory)
		}
	}
	if n[0] < 3 || n[1] < 3 {
		t.Fatalf("samples per task %v in 6 s at 1 s, want at least 3 each:\n%+v", n, m.Samples)
	}
	busyCPU, idleCPU := cpu[0]/float64(n[0]), cpu[1]/float64(n[1])
	t.Logf("busy task: %.2f cores, idle task: %.2f cores", busyCPU, idleCPU)
	// On an idle machine the busy task shows about 1 core (its limit); on
	// a loaded one, less: what must hold is the limit and the contrast.
	if busyCPU > 1.15 || busyCPU < 0.02 {
		t.Errorf("busy task used %.2f cores on average, want at most its limit of 1 and clearly more than 0", busyCPU)
	}
	if idleCPU > 0.05 || idleCPU*5 > busyCPU {
		t.Errorf("sleeping task used %.2f cores on average, want about 0 (busy task: %.2f)", idleCPU, busyCPU)
	}

	// A container that is gone ends the sampler at once.
	gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
	defer gcancel()
	smp.TaskStarted(gctx, "job-s", 2, "0123456789ab-no-such-container")
	if gctx.Err() != nil {
		t.Fatal("the sampler waited on a container that does not exist")
	}
}
