package api

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// metricsBackend is jobsBackend (job-1, 2 nodes) with two stored samples
// and one live one.
type metricsBackend struct{ jobsBackend }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (metricsBackend) Job(_ context.Context, id string) (*Job, error) {
	if id != "job-1" {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return &Job{ID: id, Spec: JobSpec{Name: "my job", Nodes: 2}}, nil
}

func (metricsBackend) JobMetrics(_ context.Context, id string, since time.Time) (*JobMetrics, error) {
	m := &JobMetrics{Job: id, Interval: Duration(3 * time.Second)}
	for _, s := range []MetricSample{{Time: t0, Task: 0, CPU: 1, CPULimit: 2}, {Time: t0, Task: 1, CPU: 0.01, CPULimit: 2}} {
		if s.Time.After(since) {
			m.Samples = append(m.Samples, s)
		}
	}
	return m, nil
}

func (metricsBackend) WatchMetrics(ctx context.Context, id string, fn func(MetricSample) error) error {
	if err := fn(MetricSample{Time: t0.Add(3 * time.Second), Task: 1, CPU: 0.5}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// JobLogs holds the log open a moment, so the metric message comes first.
func (b metricsBackend) JobLogs(ctx context.Context, id string, task int, follow bool, fn func(LogLine) error) error {
	if follow {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return b.jobsBackend.JobLogs(ctx, id, task, follow, fn)
}

func TestJobMetricsRoute(t *testing.T) {
	srv := httptest.NewServer(NewServer(metricsBackend{}, "tok"))
	defer srv.Close()
	c := NewClient(srv.URL, "tok")
	m, err := c.JobMetrics(context.Background(), "job-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Samples) != 2 || m.Samples[0].CPUPercent() != 50 || time.Duration(m.Interval) != 3*time.Second {
		t.Fatalf("metrics %+v", m)
	}
	if m, _ := c.JobMetrics(context.Background(), "job-1", t0); len(m.Samples) != 0 {
		t.Fatalf("since: %+v", m)
	}
	_, err = c.JobMetrics(context.Background(), "job-9", time.Time{})
	if err == nil || !strings.Contains(err.Error(), "job-9") {
		t.Fatalf("missing job: %v", err)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/jobs/job-1/metrics?since=yesterday", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "since") {
		t.Fatalf("bad since: %d %s", resp.StatusCode, b)
	}
}

// The log websocket with ?metrics=1 carries samples beside the lines.
func TestJobSocketCarriesMetrics(t *testing.T) {
	srv := httptest.NewServer(NewServer(metricsBackend{}, "tok"))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/api/v1/jobs/job-1/logs/ws?task=0&follow=1&metrics=1",
		http.Header{"Authorization": {"Bearer tok"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var metric MetricMessage
	if err := ws.ReadJSON(&metric); err != nil || metric.Metric.Task != 1 || metric.Metric.CPU != 0.5 {
		t.Fatalf("first message: %+v %v", metric, err)
	}
	lines := 0
	for {
		var l LogLine
		if err := ws.ReadJSON(&l); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Fatalf("after %d lines: %v", lines, err)
			}
			break
		}
		lines++
	}
	if lines != 3 {
		t.Fatalf("%d log lines, want 3", lines)
	}
}

func TestLogDownload(t *testing.T) {
	srv := httptest.NewServer(NewServer(metricsBackend{}, "tok"))
	defer srv.Close()
	c := NewClient(srv.URL, "tok")
	var buf bytes.Buffer
	name, err := c.DownloadLogs(context.Background(), "job-1", 1, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if name != "my_job-task-1.log" || buf.String() != "line 0\nline 1\nline 2\n" {
		t.Fatalf("task log %q: %q", name, buf.String())
	}
	buf.Reset()
	name, err = c.DownloadLogs(context.Background(), "job-1", -1, &buf)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("archive %q: %v", name, err)
	}
	if name != "my_job-logs.zip" || len(zr.File) != 2 || zr.File[0].Name != "task-0.log" || zr.File[1].Name != "task-1.log" {
		t.Fatalf("archive %q: %v", name, zr.File)
	}
	f, _ := zr.File[1].Open()
	b, _ := io.ReadAll(f)
	if string(b) != "line 0\nline 1\nline 2\n" {
		t.Fatalf("task-1.log: %q", b)
	}
	if _, err := c.DownloadLogs(context.Background(), "job-1", 5, io.Discard); err == nil || !strings.Contains(err.Error(), "tasks 0 to 1") {
		t.Fatalf("task 5 of 2: %v", err)
	}
}
