package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/metrics"
)

// writeSamples stores n samples a task for a finished job, as the sampler
// would have: task 0 busy at about one core, task 1 idle.
func writeSamples(t *testing.T, dataDir, job string, n int, start time.Time) {
	t.Helper()
	st, err := metrics.Open(filepath.Join(dataDir, "metrics"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		for task := range 2 {
			s := api.MetricSample{Time: start.Add(time.Duration(i) * 3 * time.Second), Task: task, CPULimit: 2, MemoryLimit: 8 << 30,
				NetRx: int64(i) * 40000, NetTx: int64(i) * 10000}
			if task == 0 {
				s.CPU, s.Memory = 0.95+0.05*float64(i%2), int64(300+i)<<20
			} else {
				s.CPU, s.Memory, s.NetRx, s.NetTx = 0.01, 40<<20, int64(i)*9000, int64(i)*2500
			}
			if err := st.Add(job, s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// scrollToUsage brings the panel just below the page's sticky header.
const scrollToUsage = `window.scrollTo(0, document.querySelector('#usage').getBoundingClientRect().top + window.scrollY - 72)`

// The console and the CLI over stored samples, log download and Copy job.
// (Live samples of real tasks: TestJobMetricsLiveSampling over the API,
// TestConsoleUsagePanelLive in the page.)
func TestConsoleUsagePanelLogDownloadAndCopyJob(t *testing.T) {
	RequireChromium(t)
	e, img := jobEnv(t)
	c := e.Client()
	ctx := context.Background()
	spec := api.JobSpec{Name: "usage-demo", Description: "learning rate 0.1, batch 64", Image: img, Nodes: 2, AppURL: "s3://code/x/",
		Env: map[string]string{"EPOCHS": "3"}, Flavor: api.Flavor{CPUs: 2, Memory: 8 << 30}, Timeout: api.Duration(time.Hour), Retries: 1,
		Command: []string{"/bin/sh", "-c", `for i in 1 2 3; do echo "epoch $i of task $DLS_TASK_INDEX"; done; echo "it's done" >&2`}}
	j := submit(t, e, spec)
	j = waitFinal(t, e, j.ID, 3*time.Minute)
	if j.Status != api.StatusCompleted {
		t.Fatalf("job %s: %s", j.Status, j.Reason)
	}
	writeSamples(t, e.DataDir, j.ID, 20, j.Started)

	// API and CLI.
	m, err := c.JobMetrics(ctx, j.ID, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Samples) != 40 {
		t.Fatalf("GET metrics: %d samples, want 40", len(m.Samples))
	}
	r := e.Run("job", "top", j.ID, "-o", "json")
	var top []api.MetricSample
	if err := json.Unmarshal([]byte(r.Stdout), &top); r.Code != 0 || err != nil {
		t.Fatalf("job top -o json: exit %d, %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	if len(top) != 2 || top[0].CPU < 0.9 || top[1].CPU > 0.05 || top[0].Memory != 319<<20 {
		t.Fatalf("job top -o json: %+v", top)
	}
	if r := e.Run("job", "top", j.ID); r.Code != 0 || !strings.Contains(r.Stdout, "CPU%") || !strings.Contains(r.Stdout, "50%") {
		t.Fatalf("job top (a final job prints once): exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// Log download: the same text as `malocal job logs --task i`.
	var zipped bytes.Buffer
	name, err := c.DownloadLogs(ctx, j.ID, -1, &zipped)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zipped.Bytes()), int64(zipped.Len()))
	if err != nil || name != "usage-demo-logs.zip" || len(zr.File) != 2 {
		t.Fatalf("archive %q: %v", name, err)
	}
	for task := range 2 {
		r := e.Run("job", "logs", j.ID, "--task", fmt.Sprint(task))
		if r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("epoch 3 of task %d", task)) {
			t.Fatalf("job logs --task %d: exit %d\n%s%s", task, r.Code, r.Stdout, r.Stderr)
		}
		var one bytes.Buffer
		if _, err := c.DownloadLogs(ctx, j.ID, task, &one); err != nil {
			t.Fatal(err)
		}
		if one.String() != r.Stdout {
			t.Errorf("task %d: downloaded log differs from `malocal job logs`:\n%q\n%q", task, one.String(), r.Stdout)
		}
		f, _ := zr.File[task].Open()
		b, _ := io.ReadAll(f)
		if zr.File[task].Name != fmt.Sprintf("task-%d.log", task) || string(b) != r.Stdout {
			t.Errorf("archive's %s differs from `malocal job logs --task %d`:\n%q", zr.File[task].Name, task, b)
		}
	}

	// The panel: a chart per metric, a line per task, values on hover.
	b := e.NewBrowser(t, "en-US")
	b.Run("open the job", b.Open("#/jobs/"+j.ID), WaitJS(`!!document.querySelector('#chart-cpu[data-series="2"]')`))
	for _, id := range []string{"chart-cpu", "chart-memory", "chart-net-in", "chart-net-out"} {
		if n := Eval[int](b, fmt.Sprintf(`document.querySelectorAll('#%s path.series').length`, id)); n != 2 {
			t.Errorf("%s: %d lines, want one per task", id, n)
		}
	}
	if Eval[bool](b, `!!document.querySelector('#chart-gpu')`) {
		t.Error("a GPU chart for a job without GPUs")
	}
	tip := Eval[string](b, `(() => {
		const svg = document.querySelector('#chart-cpu svg');
		const r = svg.getBoundingClientRect();
		svg.dispatchEvent(new MouseEvent('mousemove', { clientX: r.right - 20, clientY: r.top + r.height / 2, bubbles: true }));
		const tip = document.querySelector('#chart-cpu .chart-tip');
		return tip.hidden ? "" : tip.textContent; })()`)
	if !strings.Contains(tip, "Task 0") || !strings.Contains(tip, "Task 1") || !strings.Contains(tip, "cores") || !strings.Contains(tip, "%") {
		t.Errorf("hover readout %q: want each task's cores and percent", tip)
	}
	if got := b.Text("#job-description"); got != spec.Description {
		t.Errorf("description on the job page: %q", got)
	}
	for _, sel := range []string{"#download-logs", "#download-log-0", "#download-log-1"} {
		if href := Eval[string](b, fmt.Sprintf(`document.querySelector(%q).getAttribute('href')`, sel)); !strings.Contains(href, "download=1") {
			t.Errorf("%s: href %q", sel, href)
		}
	}
	b.Run("scroll to the panel", chromedp.Evaluate[chromedp.Void](scrollToUsage))
	b.Screenshot("job-usage.png")

	// Copy job: the form filled from the job, the name suffixed.
	b.Run("copy", chromedp.Click(chromedp.CSS("#copy-job")), WaitJS(`document.querySelector('#f-name').value === "usage-demo-copy" && document.querySelector('#f-image').value !== ""`))
	b.Run("submit the copy", chromedp.Click(chromedp.CSS("#submit-job")), WaitJS(`/^#\/jobs\/(?!new)[^/]+$/.test(location.hash)`))
	id := strings.TrimPrefix(Eval[string](b, `decodeURIComponent(location.hash)`), "#/jobs/")
	cp, err := c.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := j.Spec
	want.Name = "usage-demo-copy"
	got, _ := json.Marshal(cp.Spec)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(got, wantJSON) {
		t.Errorf("copied job's spec differs beyond its name:\n got %s\nwant %s", got, wantJSON)
	}
	if j := waitFinal(t, e, id, 3*time.Minute); j.Status != api.StatusCompleted {
		t.Errorf("copied job: %s %s", j.Status, j.Reason)
	}
	b.Run("list shows the description", b.Open("#/jobs"), WaitText("#jobs-body", spec.Description))

	zh := e.NewBrowser(t, "zh-CN")
	zh.Run("打开作业", zh.Open("#/jobs/"+j.ID), WaitJS(`!!document.querySelector('#chart-cpu[data-series="2"]')`), WaitText("#usage h2", "资源占用"))
	zh.Run("滚动到资源占用", chromedp.Evaluate[chromedp.Void](scrollToUsage))
	zh.Screenshot("job-usage-zh.png")

	// Samples are kept across an emulator restart.
	if code := e.Stop(); code != 0 {
		t.Fatalf("emulator stop: exit %d", code)
	}
	e = e.Restart()
	if m, err := e.Client().JobMetrics(ctx, j.ID, time.Time{}); err != nil || len(m.Samples) != 40 {
		t.Fatalf("after a restart: %v, %d samples", err, len(m.Samples))
	}
}
