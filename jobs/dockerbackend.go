package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/docker"
)

// Gateways opens the object store on a job network's gateway address, so
// containers reach it there and nowhere else but loopback. release closes
// it once no job uses that gateway.
type Gateways interface {
	OpenS3(ctx context.Context, gatewayIP string) (endpoint string, release func(), err error)
}

// DockerBackend runs each task as a container on a private bridge network.
type DockerBackend struct {
	Engine   *docker.Client
	Gateways Gateways
	// Registry is the engine's address of malocal's registry (host:port).
	Registry string
	Creds    struct{ AccessKey, SecretKey, Region string }
	DataDir  string
	// StopGrace is how long a stopped task gets between SIGTERM and SIGKILL.
	StopGrace time.Duration

	mu       sync.Mutex
	releases map[string]func() // job id → gateway release
}

var _ Backend = (*DockerBackend)(nil)

// Run implements Backend.
func (b *DockerBackend) Run(ctx context.Context, j *api.Job, rec Recorder) Outcome {
	var ids []string
	fail := func(format string, a ...any) Outcome {
		if errors.Is(context.Cause(ctx), ErrDetach) {
			// Shutting down mid-start: leave what exists for the re-attach.
			return Outcome{Status: api.StatusRunning}
		}
		b.stopAll(ids)
		return Outcome{Status: api.StatusFailed, ExitCode: -1, Reason: fmt.Sprintf(format, a...)}
	}
	if err := b.Engine.Ping(ctx); err != nil {
		return fail("%v", err)
	}
	netName := NetworkName(j)
	gw, err := b.ensureNetwork(ctx, j, netName)
	if err != nil {
		return fail("%v", err)
	}
	endpoint, release, err := b.Gateways.OpenS3(ctx, gw)
	if err != nil {
		return fail("opening the object store on the job network's gateway %s: %v", gw, err)
	}
	b.mu.Lock()
	if b.releases == nil {
		b.releases = map[string]func(){}
	}
	if old := b.releases[j.ID]; old != nil {
		old()
	}
	b.releases[j.ID] = release
	b.mu.Unlock()

	image := b.Registry + "/" + j.ImageRepo + "@" + j.ImageDigest
	if _, err := b.Engine.ImageInspect(ctx, image); errors.Is(err, docker.ErrNotFound) {
		rec.Event("pulling " + image + " into the Docker engine")
		start := time.Now()
		if err := b.Engine.ImagePull(ctx, image, nil); err != nil {
			return fail("%v", err)
		}
		rec.Event(fmt.Sprintf("pulled the image in %s", time.Since(start).Round(time.Millisecond)))
	} else if err != nil {
		return fail("%v", err)
	}

	c := Contract{S3Endpoint: endpoint, AccessKey: b.Creds.AccessKey, SecretKey: b.Creds.SecretKey, Region: b.Creds.Region,
		Image: image, Network: netName, DataDir: b.DataDir}
	existing, err := b.Engine.ContainerList(ctx, LabelJob+"="+j.ID)
	if err != nil {
		return fail("%v", err)
	}
	byTask := map[int]docker.ContainerSummary{}
	for _, s := range existing {
		if i, err := strconv.Atoi(s.Labels[LabelTask]); err == nil {
			byTask[i] = s
		}
	}
	n := j.Spec.Nodes
	ids = make([]string, n)
	reattached := 0
	for i := range n {
		if s, ok := byTask[i]; ok {
			ids[i] = s.ID
			reattached++
			continue
		}
		if j.Tasks[i].Container != "" {
			// Created by an earlier run of the emulator, and gone since.
			return fail("task %d's container %.12s is gone (removed while the emulator was down)", i, j.Tasks[i].Container)
		}
		var gpus []string
		rec.Task(i, func(t *api.Task) { gpus = t.GPUs })
		id, err := b.Engine.ContainerCreate(ctx, ContainerName(j, i), ContainerSpec(j, i, c, gpus))
		if err != nil {
			return fail("task %d: %v", i, err)
		}
		ids[i] = id
		rec.Task(i, func(t *api.Task) { t.Container = id; t.Status = "created" })
	}
	if reattached > 0 {
		rec.Event(fmt.Sprintf("re-attached to %d running containers", reattached))
	}
	// Start every task at once: on a small machine, serial starts of 16
	// containers would cost seconds.
	var wg sync.WaitGroup
	startErrs := make([]error, n)
	for i := range n {
		if _, ok := byTask[i]; ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			startErrs[i] = b.Engine.ContainerStart(ctx, ids[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(startErrs...); err != nil {
		return fail("%v", err)
	}
	now := time.Now().UTC()
	for i := range n {
		rec.Task(i, func(t *api.Task) {
			t.Status = "running"
			if t.Started.IsZero() {
				t.Started = now
			}
		})
	}

	// Logs: one follower per task, until its container stops.
	var logs sync.WaitGroup
	for i := range n {
		w, err := rec.Log(i)
		if err != nil {
			rec.Event(fmt.Sprintf("task %d: cannot store logs: %v", i, err))
			continue
		}
		since := time.Time{}
		if tl, ok := w.(*taskLog); ok {
			since = tl.resume
		}
		logs.Add(1)
		go func() {
			defer logs.Done()
			// Not ctx: logs must be drained after a stop too.
			if err := b.Engine.ContainerLogs(context.WithoutCancel(ctx), ids[i], since, true, w); err != nil {
				rec.Event(fmt.Sprintf("task %d: log stream: %v", i, err))
			}
		}()
	}

	exits := make(chan taskExit, n)
	for i := range n {
		go func() {
			code, err := b.Engine.ContainerWait(context.WithoutCancel(ctx), ids[i])
			exits <- taskExit{i, code, err}
		}()
	}
	out := Outcome{Status: api.StatusCompleted}
	exited := 0
	record := func(e taskExit) {
		exited++
		code := e.code
		rec.Task(e.task, func(t *api.Task) {
			t.ExitCode = &code
			t.Finished = time.Now().UTC()
			if code == 0 {
				t.Status = "succeeded"
			} else {
				t.Status = "failed"
			}
		})
	}
	decided := false
	for !decided {
		select {
		case e := <-exits:
			if e.err != nil {
				e.code = -1
			}
			record(e)
			switch {
			case j.Spec.Policy == api.PolicyIndex0 && e.task == 0:
				decided = true
				if e.code != 0 {
					out = Outcome{Status: api.StatusFailed, ExitCode: e.code, Reason: fmt.Sprintf("task 0 exited with code %d", e.code)}
				}
			case j.Spec.Policy == api.PolicyAll && e.code != 0:
				decided = true
				out = Outcome{Status: api.StatusFailed, ExitCode: e.code, Reason: fmt.Sprintf("task %d exited with code %d", e.task, e.code)}
			case exited == n:
				decided = true
			}
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrDetach) {
				return Outcome{Status: api.StatusRunning}
			}
			decided = true
			out = Outcome{Status: api.StatusCanceled, ExitCode: -1, Reason: "stopped"}
		}
	}
	if exited < n {
		rec.Event(fmt.Sprintf("stopping the %d tasks still running", n-exited))
		b.stopAll(ids)
		for exited < n {
			e := <-exits
			if e.err != nil {
				e.code = b.inspectExit(ids[e.task])
			}
			record(e)
			rec.Task(e.task, func(t *api.Task) { t.Status = "stopped" })
		}
	}
	logs.Wait()
	return out
}

// taskExit is one container's end.
type taskExit struct {
	task, code int
	err        error
}

// inspectExit reads an exit code when waiting for it failed.
func (b *DockerBackend) inspectExit(id string) int {
	st, err := b.Engine.ContainerInspect(context.Background(), id)
	if err != nil {
		return -1
	}
	return st.State.ExitCode
}

func (b *DockerBackend) ensureNetwork(ctx context.Context, j *api.Job, name string) (string, error) {
	n, err := b.Engine.NetworkInspect(ctx, name)
	if errors.Is(err, docker.ErrNotFound) {
		if _, err = b.Engine.NetworkCreate(ctx, name, map[string]string{LabelJob: j.ID, LabelDataDir: b.DataDir}); err != nil {
			return "", err
		}
		n, err = b.Engine.NetworkInspect(ctx, name)
	}
	if err != nil {
		return "", err
	}
	gw := n.Gateway()
	if gw == "" {
		return "", fmt.Errorf("network %s has no gateway address", name)
	}
	return gw, nil
}

// stopAll stops containers in parallel; a background context, since it
// runs after the job's own context ended.
func (b *DockerBackend) stopAll(ids []string) {
	var wg sync.WaitGroup
	for _, id := range ids {
		if id == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), b.StopGrace+30*time.Second)
			defer cancel()
			b.Engine.ContainerStop(ctx, id, b.StopGrace)
		}()
	}
	wg.Wait()
}

// Cleanup implements Backend.
func (b *DockerBackend) Cleanup(ctx context.Context, j *api.Job) error {
	b.mu.Lock()
	release := b.releases[j.ID]
	delete(b.releases, j.ID)
	b.mu.Unlock()
	if release != nil {
		defer release()
	}
	if j.Spec.Keep {
		return nil
	}
	cs, err := b.Engine.ContainerList(ctx, LabelJob+"="+j.ID)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if err := b.Engine.ContainerRemove(ctx, c.ID); err != nil && !errors.Is(err, docker.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := b.Engine.NetworkRemove(ctx, NetworkName(j)); err != nil && !errors.Is(err, docker.ErrNotFound) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
