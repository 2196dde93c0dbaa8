package metrics

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/api"
)

// Engine is the part of the Docker engine's client the sampler uses.
type Engine interface {
	ContainerInspect(ctx context.Context, id string, o client.ContainerInspectOptions) (client.ContainerInspectResult, error)
	ContainerStats(ctx context.Context, id string, o client.ContainerStatsOptions) (client.ContainerStatsResult, error)
	ExecCreate(ctx context.Context, id string, o client.ExecCreateOptions) (client.ExecCreateResult, error)
	ExecAttach(ctx context.Context, execID string, o client.ExecAttachOptions) (client.ExecAttachResult, error)
}

var _ Engine = (*client.Client)(nil)

// DockerSampler samples the containers of a job's tasks into a Store.
type DockerSampler struct {
	store    *Store
	engine   Engine
	interval time.Duration
	log      *slog.Logger
}

// SamplerOption configures a DockerSampler.
type SamplerOption func(*DockerSampler)

// WithEngine uses this engine client instead of one from the environment
// (DOCKER_HOST and the like).
func WithEngine(e Engine) SamplerOption { return func(d *DockerSampler) { d.engine = e } }

// WithLogger logs sampling errors there.
func WithLogger(l *slog.Logger) SamplerOption { return func(d *DockerSampler) { d.log = l } }

// NewDockerSampler returns a sampler writing to st at st's interval.
func NewDockerSampler(st *Store, opts ...SamplerOption) (*DockerSampler, error) {
	d := &DockerSampler{store: st, interval: st.Interval(), log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(d)
	}
	if d.engine == nil {
		c, err := client.New(client.FromEnv)
		if err != nil {
			return nil, fmt.Errorf("metrics: Docker engine client: %w", err)
		}
		d.engine = c
	}
	return d, nil
}

// TaskStarted samples a task's container every interval until ctx ends
// (the task ended) or the container is gone. It is the Docker backend's
// hook, called in its own goroutine once a task's container runs.
func (d *DockerSampler) TaskStarted(ctx context.Context, jobID string, task int, containerID string) {
	log := d.log.With("job", jobID, "task", task)
	in, err := d.engine.ContainerInspect(ctx, containerID, client.ContainerInspectOptions{})
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("no resource samples for this task", "err", err)
		}
		return
	}
	var cpuLimit float64
	var memLimit int64
	var gpus bool
	if hc := in.Container.HostConfig; hc != nil {
		cpuLimit = float64(hc.NanoCPUs) / 1e9
		memLimit = hc.Memory
		for _, r := range hc.DeviceRequests {
			gpus = gpus || r.Driver == "nvidia" || len(r.DeviceIDs) > 0 || r.Count != 0
		}
	}
	var prev *container.StatsResponse
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		st, err := d.stats(ctx, containerID)
		switch {
		case ctx.Err() != nil:
			return
		case errdefs.IsNotFound(err):
			return
		case err != nil:
			log.Debug("resource sample", "err", err)
		case st.Read.IsZero(): // the container is no longer running
		default:
			if prev != nil {
				m := sampleOf(prev, st, task, cpuLimit, memLimit)
				if gpus {
					m.GPUs, err = d.gpus(ctx, containerID)
					if err != nil && ctx.Err() == nil {
						log.Debug("GPU sample", "err", err)
					}
				}
				if err := d.store.Add(jobID, m); err != nil {
					log.Warn("saving a resource sample", "err", err)
				}
			}
			prev = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stats reads one sample without the engine's one-second wait.
func (d *DockerSampler) stats(ctx context.Context, id string) (*container.StatsResponse, error) {
	r, err := d.engine.ContainerStats(ctx, id, client.ContainerStatsOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("decoding container stats: %w", err)
	}
	return &st, nil
}

// sampleOf turns two engine readings into a sample: CPU is the CPU time
// used between them over the time between them.
func sampleOf(prev, cur *container.StatsResponse, task int, cpuLimit float64, memLimit int64) api.MetricSample {
	m := api.MetricSample{Time: cur.Read.UTC(), Task: task, CPULimit: cpuLimit, MemoryLimit: memLimit}
	if dt := cur.Read.Sub(prev.Read); dt > 0 && cur.CPUStats.CPUUsage.TotalUsage >= prev.CPUStats.CPUUsage.TotalUsage {
		m.CPU = float64(cur.CPUStats.CPUUsage.TotalUsage-prev.CPUStats.CPUUsage.TotalUsage) / float64(dt.Nanoseconds())
	}
	if m.CPULimit == 0 {
		m.CPULimit = float64(cur.CPUStats.OnlineCPUs)
	}
	if m.MemoryLimit == 0 {
		m.MemoryLimit = int64(cur.MemoryStats.Limit)
	}
	// As `docker stats`: usage less the page cache the kernel can drop.
	used := cur.MemoryStats.Usage
	for _, k := range []string{"inactive_file", "total_inactive_file"} {
		if v, ok := cur.MemoryStats.Stats[k]; ok && v < used {
			used -= v
			break
		}
	}
	m.Memory = int64(used)
	for _, n := range cur.Networks {
		m.NetRx += int64(n.RxBytes)
		m.NetTx += int64(n.TxBytes)
	}
	return m
}

// gpus asks nvidia-smi inside the container: the engine's stats have no
// GPU figures.
func (d *DockerSampler) gpus(ctx context.Context, id string) ([]api.GPUSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ex, err := d.engine.ExecCreate(ctx, id, client.ExecCreateOptions{
		TTY: true, AttachStdout: true, AttachStderr: true,
		Cmd: []string{"nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"},
	})
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi: %w", err)
	}
	at, err := d.engine.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{TTY: true})
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi: %w", err)
	}
	defer at.Close()
	out, err := io.ReadAll(io.LimitReader(at.Reader, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi: %w", err)
	}
	return parseNvidiaSMI(string(out))
}

// parseNvidiaSMI reads "index, util %, used MiB, total MiB" lines.
func parseNvidiaSMI(out string) ([]api.GPUSample, error) {
	r := csv.NewReader(strings.NewReader(strings.ReplaceAll(out, "\r", "")))
	r.TrimLeadingSpace = true
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("nvidia-smi output: %w", err)
	}
	var gs []api.GPUSample
	for _, rec := range recs {
		if len(rec) != 4 {
			return nil, fmt.Errorf("nvidia-smi output: %q: want index, utilization, memory used, memory total", strings.Join(rec, ","))
		}
		var v [4]float64
		for i, f := range rec {
			x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				x = 0 // "[N/A]" on GPUs that do not report it
			}
			v[i] = x
		}
		gs = append(gs, api.GPUSample{Index: int(v[0]), Util: v[1], Memory: int64(v[2]) << 20, MemoryTotal: int64(v[3]) << 20})
	}
	return gs, nil
}
