package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
)

// A 2-node job where task 0 burns one core for 20 s and task 1 sleeps:
// the samples show task 0 near one core and task 1 near zero, memory
// within its limit; samples arrive while the job runs and survive an
// emulator restart.
func TestJobMetricsLiveSampling(t *testing.T) {
	addr := freeAddr(t)
	args := WithArgs("--api-addr", addr)
	e, img := jobEnv(t, args)
	ctx := context.Background()
	j := submit(t, e, api.JobSpec{Name: "burn", Image: img, Nodes: 2, AppURL: "s3://code/x/",
		Flavor:  api.Flavor{CPUs: 2, Memory: 256 << 20},
		Command: []string{"/bin/sh", "-c", `if [ "$DLS_TASK_INDEX" = 0 ]; then end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do :; done; else sleep 20; fi`}})
	waitStatus(t, e, j.ID, api.StatusRunning, 2*time.Minute)

	// Samples arrive while the job runs.
	live := func() int {
		m, err := e.Client().JobMetrics(ctx, j.ID, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return len(m.Samples)
	}
	first, deadline := live(), time.Now().Add(30*time.Second)
	for live() <= first && time.Now().Before(deadline) {
		time.Sleep(time.Second)
	}
	if live() <= first {
		t.Errorf("no new samples in 30 s while the job ran (%d)", first)
	}

	j = waitFinal(t, e, j.ID, 3*time.Minute)
	if j.Status != api.StatusCompleted {
		t.Fatalf("job %s: %s", j.Status, j.Reason)
	}
	m, err := e.Client().JobMetrics(ctx, j.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var n [2]int
	var cpu [2]float64
	for _, s := range m.Samples {
		n[s.Task]++
		cpu[s.Task] += s.CPU
		if s.MemoryLimit != 256<<20 || s.Memory <= 0 || s.Memory > s.MemoryLimit || s.CPULimit != 2 {
			t.Errorf("task %d sample: memory %d of %d, %v CPUs: want within the flavor's 256 MiB and 2 CPUs", s.Task, s.Memory, s.MemoryLimit, s.CPULimit)
		}
	}
	if n[0] < 4 || n[1] < 4 {
		t.Fatalf("samples per task %v over 20 s, want at least 4 each", n)
	}
	busy, idle := cpu[0]/float64(n[0]), cpu[1]/float64(n[1])
	t.Logf("task 0: %.2f cores, task 1: %.2f cores, %d samples", busy, idle, len(m.Samples))
	// Near one core on a quiet machine; a loaded one lends it less.
	if busy < 0.4 || busy > 1.2 {
		t.Errorf("task 0 burned %.2f cores on average, want near 1", busy)
	}
	if idle > 0.05 {
		t.Errorf("task 1 slept at %.2f cores, want near 0", idle)
	}
	if r := e.Run("job", "top", j.ID, "-o", "json"); r.Code != 0 || !strings.Contains(r.Stdout, `"task": 1`) {
		t.Errorf("job top -o json: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	if code := e.Signal(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("emulator stop: exit %d", code)
	}
	e = e.Restart(args)
	after, err := e.Client().JobMetrics(ctx, j.ID, time.Time{})
	if err != nil || len(after.Samples) != len(m.Samples) {
		t.Fatalf("after a restart: %v, %d samples, want %d", err, len(after.Samples), len(m.Samples))
	}
}
