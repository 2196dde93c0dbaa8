package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
)

// samplerWired says that the Docker backend calls the metrics sampler's
// TaskStarted for every task. Until it does, the live test below cannot
// pass and is skipped with that reason.
const samplerWired = true

// A 2-node job where task 0 burns one core for 20 s and task 1 sleeps:
// the samples show task 0 near one core and task 1 near zero, memory
// within its limit; the page's panel draws a line per task and grows while
// the job runs; the samples survive an emulator restart.
func TestJobMetricsLiveSampling(t *testing.T) {
	if !samplerWired {
		t.Skip("needs the Docker backend's TaskStarted hook calling the metrics sampler")
	}
	RequireChromium(t)
	addr := freeAddr(t)
	args := WithArgs("--api-addr", addr)
	e, img := jobEnv(t, args)
	ctx := context.Background()
	j := submit(t, e, api.JobSpec{Name: "burn", Image: img, Nodes: 2, AppURL: "s3://code/x/",
		Flavor:  api.Flavor{CPUs: 2, Memory: 256 << 20},
		Command: []string{"/bin/sh", "-c", `if [ "$DLS_TASK_INDEX" = 0 ]; then end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do :; done; else sleep 20; fi`}})
	waitStatus(t, e, j.ID, api.StatusRunning, 2*time.Minute)

	b := e.NewBrowser(t, "en-US")
	b.Run("the panel draws both tasks", b.Open("#/jobs/"+j.ID), WaitJS(`!!document.querySelector('#chart-cpu[data-series="2"]')`))
	count := func() int {
		return Eval[int](b, `(() => { const p = document.querySelector('#chart-cpu path.series'); return p ? p.getAttribute('d').split('L').length : 0; })()`)
	}
	first := count()
	b.Run("live samples extend the lines", WaitJS(fmt.Sprintf(`(() => { const p = document.querySelector('#chart-cpu path.series'); return p && p.getAttribute('d').split('L').length > %d; })()`, first+1)))

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
	b.Run("the panel after the restart", b.Open("#/jobs/"+j.ID), WaitJS(`!!document.querySelector('#chart-cpu[data-series="2"]')`))
}
