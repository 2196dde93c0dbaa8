package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/jobs"
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
	// Near one core on a quiet machine; a loaded one (a CI run's parallel
	// packages) lends it much less, so what is asserted is that the busy
	// task stands out. TestConsoleUsagePanelLive holds the figure against
	// the task's own cgroup counter.
	if busy < 0.1 || busy > 1.2 || busy < 5*idle {
		t.Errorf("task 0 burned %.2f cores on average (task 1: %.2f), want near 1 and far above task 1", busy, idle)
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

// cpuReadout hovers over the CPU chart at frac of its plot's width and
// returns the readout's cores per task label, as a user reads them.
const cpuReadout = `((frac) => {
	const svg = document.querySelector('#chart-cpu svg');
	const r = svg.getBoundingClientRect();
	const left = r.left + r.width * 62 / 400, right = r.right - r.width * 8 / 400;
	svg.dispatchEvent(new MouseEvent('mousemove', { clientX: left + (right - left) * frac, clientY: r.top + r.height / 2, bubbles: true }));
	const out = {};
	for (const row of document.querySelectorAll('#chart-cpu .chart-tip .tip-row'))
		out[row.children[1].textContent] = parseFloat(row.children[2].textContent);
	return out; })`

// seriesPoints is the number of points of each line of the CPU chart.
const seriesPoints = `[...document.querySelectorAll('#chart-cpu path.series')].map((p) => p.getAttribute('d').split('L').length)`

// The job page's panel during a real run, not stored samples: a line per
// task, lines that grow while the job runs, and a readout that shows the
// busy task at what its cgroup used (near one core) and the sleeping one
// near zero. The tasks would run 60 s; the test stops the job once it has
// seen enough.
func TestConsoleUsagePanelLive(t *testing.T) {
	RequireChromium(t)
	e, img := jobEnv(t)
	ctx := context.Background()
	j := submit(t, e, api.JobSpec{Name: "burn-live", Image: img, Nodes: 2, AppURL: "s3://code/x/",
		Flavor:  api.Flavor{CPUs: 2, Memory: 256 << 20},
		Command: []string{"/bin/sh", "-c", `if [ "$DLS_TASK_INDEX" = 0 ]; then end=$(( $(date +%s) + 60 )); while [ $(date +%s) -lt $end ]; do :; done; else sleep 60; fi`}})
	waitStatus(t, e, j.ID, api.StatusRunning, 2*time.Minute)

	b := e.NewBrowser(t, "en-US")
	b.Run("the panel draws a line per task", b.Open("#/jobs/"+j.ID), WaitJS(`!!document.querySelector('#chart-cpu[data-series="2"]')`))
	for _, id := range []string{"chart-cpu", "chart-memory"} {
		if n := Eval[int](b, fmt.Sprintf(`document.querySelectorAll('#%s path.series').length`, id)); n != 2 {
			t.Errorf("%s: %d lines, want one per task", id, n)
		}
	}
	first := Eval[[]int](b, seriesPoints)
	firstPath := Eval[string](b, `document.querySelector('#chart-cpu path.series').getAttribute('d')`)
	// Two more samples a task, from the job's websocket, without a reload.
	b.Run("the lines grow while the job runs", WaitJS(fmt.Sprintf(`(() => { const n = %s; return n.length === 2 && n[0] >= %d && n[1] >= %d; })()`, seriesPoints, first[0]+2, first[1]+2)))
	grown := Eval[[]int](b, seriesPoints)
	if got, err := e.Client().Job(ctx, j.ID); err != nil || got.Status != api.StatusRunning {
		t.Fatalf("the chart grew from %v to %v points, but not during the run: %v %v", first, grown, got, err)
	}
	if Eval[string](b, `document.querySelector('#chart-cpu path.series').getAttribute('d')`) == firstPath {
		t.Error("task 0's line kept its path while points were added")
	}
	t.Logf("points per task: %v, then %v while the job ran", first, grown)

	// What the page reads out, against what task 0's cgroup counted over
	// the same stretch: near one core on a quiet machine, less on a busy
	// one, so the truth is measured rather than assumed.
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	busy := dockerIDs(tctx, "ps", "-q", "--filter", "label="+jobs.LabelJob+"="+j.ID, "--filter", "label="+jobs.LabelTask+"=0")
	if len(busy) != 1 {
		t.Fatalf("task 0's container: %v", busy)
	}
	used0, at0 := cgroupCPU(tctx, t, busy[0]), time.Now()
	b.Run("two more samples", WaitJS(fmt.Sprintf(`%s[0] >= %d`, seriesPoints, grown[0]+2)))
	used1, at1 := cgroupCPU(tctx, t, busy[0]), time.Now()
	truth := (used1 - used0).Seconds() / at1.Sub(at0).Seconds()
	var cpu [2]float64
	const reads = 3 // the last samples, taken within the stretch measured
	for k := range reads {
		r := Eval[map[string]float64](b, fmt.Sprintf("%s(%v)", cpuReadout, 1-0.1*float64(k)))
		t.Logf("readout: %v", r)
		cpu[0] += r["Task 0"] / reads
		cpu[1] += r["Task 1"] / reads
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("page: task 0 %.2f cores, task 1 %.2f; task 0's cgroup: %.2f cores; load %s", cpu[0], cpu[1], truth, load)
	if d := cpu[0] - truth; d > 0.15+0.3*truth || d < -(0.15+0.3*truth) {
		t.Errorf("task 0 shown at %.2f cores, its cgroup used %.2f", cpu[0], truth)
	}
	if cpu[1] > 0.05 || cpu[0] < 5*cpu[1] {
		t.Errorf("task 1 (asleep) shown at %.2f cores, task 0 (busy) at %.2f", cpu[1], cpu[0])
	}
	b.Run("scroll to the panel", chromedp.Evaluate[chromedp.Void](scrollToUsage))
	b.Screenshot("job-usage-live.png")
	if _, err := e.Client().StopJob(ctx, j.ID); err != nil {
		t.Fatalf("stopping the job: %v", err)
	}
}

// cgroupCPU is the CPU time a container's cgroup has used, read inside it
// (cgroup v2's cpu.stat or v1's cpuacct.usage), so that the test's truth
// does not come from the engine's stats that the sampler reads.
func cgroupCPU(ctx context.Context, t *testing.T, id string) time.Duration {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "exec", id, "/bin/sh", "-c",
		"cat /sys/fs/cgroup/cpu.stat 2>/dev/null || cat /sys/fs/cgroup/cpuacct/cpuacct.usage").Output()
	if err != nil {
		t.Fatalf("reading %s's cgroup CPU: %v", id, err)
	}
	s := strings.TrimSpace(string(out))
	if v, ok := strings.CutPrefix(s, "usage_usec "); ok {
		s, _, _ = strings.Cut(v, "\n")
		us, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("cpu.stat of %s: %q", id, out)
		}
		return time.Duration(us) * time.Microsecond
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("cpuacct.usage of %s: %q", id, out)
	}
	return time.Duration(ns)
}
