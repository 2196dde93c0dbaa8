package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// MetricSample is one task's resource usage at one moment.
type MetricSample struct {
	Time time.Time `json:"time"`
	Task int       `json:"task"`
	// CPU is the cores used since the previous sample (1.0 = one core busy).
	CPU float64 `json:"cpu"`
	// CPULimit is the cores the task may use: its flavor, else the host's.
	CPULimit float64 `json:"cpu_limit,omitempty"`
	// Memory is the bytes in use (page cache that can be dropped excluded).
	Memory int64 `json:"memory"`
	// MemoryLimit is the flavor's memory, else the host's.
	MemoryLimit int64 `json:"memory_limit,omitempty"`
	// NetRx and NetTx are the bytes received and sent since the task started.
	NetRx int64 `json:"net_rx"`
	NetTx int64 `json:"net_tx"`
	// GPUs is one entry per GPU of the task, when it has any.
	GPUs []GPUSample `json:"gpus,omitempty"`
}

// GPUSample is one GPU's usage.
type GPUSample struct {
	Index       int     `json:"index"`
	Util        float64 `json:"util"` // percent
	Memory      int64   `json:"memory"`
	MemoryTotal int64   `json:"memory_total,omitempty"`
}

// JobMetrics is the answer of GET /api/v1/jobs/{id}/metrics.
type JobMetrics struct {
	Job string `json:"job"`
	// Interval is how often each task is sampled.
	Interval Duration `json:"interval"`
	// Unavailable says why there are no samples, when the job's backend
	// cannot give any (for example on Kubernetes).
	Unavailable string `json:"unavailable,omitempty"`
	// Samples are in time order, all tasks mixed; long jobs are
	// downsampled (averages of neighbouring samples).
	Samples []MetricSample `json:"samples"`
}

// MetricsBackend is the optional backend capability behind the metrics
// routes and the metrics stream of the job websocket.
type MetricsBackend interface {
	// JobMetrics returns the job's stored samples (after since, when set).
	JobMetrics(ctx context.Context, id string, since time.Time) (*JobMetrics, error)
	// WatchMetrics sends every new sample of the job to fn until ctx ends.
	WatchMetrics(ctx context.Context, id string, fn func(MetricSample) error) error
}

func (s *Server) registerMetrics() {
	b, ok := s.backend.(MetricsBackend)
	if !ok {
		return
	}
	s.handle("GET /jobs/{id}/metrics", func(r *http.Request) (any, error) {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, Invalidf("since: %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", v)
			}
			since = t
		}
		if jb, ok := s.backend.(JobBackend); ok {
			if _, err := jb.Job(r.Context(), r.PathValue("id")); err != nil {
				return nil, err
			}
		}
		return b.JobMetrics(r.Context(), r.PathValue("id"), since)
	})
}

// JobMetrics returns a job's resource samples; with a non-zero since, only
// those taken after it.
func (c *Client) JobMetrics(ctx context.Context, id string, since time.Time) (*JobMetrics, error) {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	var m JobMetrics
	return &m, c.do(ctx, http.MethodGet, "/jobs/"+url.PathEscape(id)+"/metrics?"+q.Encode(), nil, &m)
}

// Latest returns the newest sample of every task, by task index.
func (m *JobMetrics) Latest() []MetricSample {
	var out []MetricSample
	for _, s := range m.Samples {
		for len(out) <= s.Task {
			out = append(out, MetricSample{Task: len(out)})
		}
		if !s.Time.Before(out[s.Task].Time) {
			out[s.Task] = s
		}
	}
	return out
}

// CPUPercent is the cores used as a percentage of the cores allowed.
func (s MetricSample) CPUPercent() float64 {
	if s.CPULimit <= 0 {
		return 0
	}
	return 100 * s.CPU / s.CPULimit
}
