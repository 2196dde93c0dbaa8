package dockerbackend

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/jobs"
)

// Gateways opens the object store on a job network's gateway address, so
// containers reach it there and nowhere else but loopback. release closes
// it once no job uses that gateway.
type Gateways interface {
	// OpenS3 listens on gatewayIP, on port when it is not 0 (the port a
	// running job's containers were given before a restart) and free.
	OpenS3(ctx context.Context, gatewayIP string, port int) (endpoint string, release func(), err error)
}

// Config is what the Docker backend needs.
type Config struct {
	Engine   Engine
	Gateways Gateways
	// Registry is the engine's address of the registry jobs pull from (host:port).
	Registry string
	// RegistryAuth is the login for pulls; empty: anonymous.
	RegistryAuth jobs.RegistryAuth
	// AccessKey, SecretKey and Region are the emulator's object-store
	// key, for jobs that have no key of their own.
	AccessKey, SecretKey, Region string
	DataDir                      string
	// StopGrace is how long a stopped task gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// GPUs are this machine's GPU device ids; jobs get them by count.
	GPUs []string
	// PidsLimit bounds each container's processes; 0: no bound.
	PidsLimit int64
	// DefaultMemory bounds a container's memory when the job's flavor
	// gives none; 0: no bound.
	DefaultMemory int64
	// TaskStarted, when set, is called in its own goroutine once a task's
	// container runs (also after a re-attach), with a ctx canceled when
	// the task ends.
	TaskStarted func(ctx context.Context, jobID string, task int, containerID string)
}

// Backend runs each task as a container on a private bridge network.
type Backend struct {
	cfg Config

	mu       sync.Mutex
	releases map[string]func() // job id → gateway release
	gpuOwner map[string]string // device id → job id
}

var _ jobs.Backend = (*Backend)(nil)

// New returns a Docker backend.
func New(cfg Config) *Backend {
	return &Backend{cfg: cfg, releases: map[string]func(){}, gpuOwner: map[string]string{}}
}

// task is one container of a run.
type task struct {
	i     int
	id    string
	fresh bool // made by this run: to be started
	pids  pidsWatch
}

type taskExit struct {
	i    int
	exit jobs.Exit
}

// Run implements jobs.Backend.
func (b *Backend) Run(ctx context.Context, j *jobs.Job, r jobs.Reporter) error {
	if _, err := b.cfg.Engine.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("the Docker engine does not answer (is it running? DOCKER_HOST=%s): %w", dockerHost(), err)
	}
	c, err := b.prepare(ctx, j, r)
	if err != nil {
		return err
	}
	tasks, err := b.attach(ctx, j, r, c)
	if err != nil {
		b.stopAll(tasks)
		return err
	}
	if err := b.start(ctx, r, tasks); err != nil {
		b.stopAll(tasks)
		return err
	}
	b.watch(ctx, j, r, tasks)
	return nil
}

func dockerHost() string {
	if h := strings.TrimSpace(getenv("DOCKER_HOST")); h != "" {
		return h
	}
	return client.DefaultDockerHost
}

// prepare makes the job's network, opens the object store on its gateway
// and makes sure the engine has the image.
func (b *Backend) prepare(ctx context.Context, j *jobs.Job, r jobs.Reporter) (Contract, error) {
	netName := NetworkName(j)
	gw, err := b.ensureNetwork(ctx, j, netName)
	if err != nil {
		return Contract{}, err
	}
	endpoint, release, err := b.cfg.Gateways.OpenS3(ctx, gw, b.givenS3Port(ctx, j))
	if err != nil {
		return Contract{}, fmt.Errorf("opening the object store on the job network's gateway %s: %w", gw, err)
	}
	b.mu.Lock()
	if old := b.releases[j.ID]; old != nil {
		old()
	}
	b.releases[j.ID] = release
	b.mu.Unlock()

	image := b.cfg.Registry + "/" + j.ImageRepo + "@" + j.ImageDigest
	if err := b.ensureImage(ctx, image, r); err != nil {
		return Contract{}, err
	}
	return Contract{
		Contract: jobs.Contract{S3Endpoint: endpoint, AccessKey: b.cfg.AccessKey, SecretKey: b.cfg.SecretKey, Region: b.cfg.Region},
		Image:    image, Network: netName, DataDir: b.cfg.DataDir, PidsLimit: b.cfg.PidsLimit, DefaultMemory: b.cfg.DefaultMemory,
	}, nil
}

// givenS3Port is the object store's port in the environment of a
// container the job already has (made before a restart), so that the
// gateway reopens where its tasks look even if the emulator's own S3 port
// changed; 0 when the job has none yet.
func (b *Backend) givenS3Port(ctx context.Context, j *jobs.Job) int {
	for _, t := range j.Tasks {
		if t.Container == "" || t.Status.Final() {
			continue
		}
		c, err := b.cfg.Engine.ContainerInspect(ctx, t.Container, client.ContainerInspectOptions{})
		if err != nil || c.Container.Config == nil {
			continue
		}
		for _, kv := range c.Container.Config.Env {
			if v, ok := strings.CutPrefix(kv, "S3_ENDPOINT="); ok {
				if u, err := url.Parse(v); err == nil {
					if p, err := strconv.Atoi(u.Port()); err == nil {
						return p
					}
				}
			}
		}
	}
	return 0
}

func (b *Backend) ensureNetwork(ctx context.Context, j *jobs.Job, name string) (string, error) {
	eng := b.cfg.Engine
	n, err := eng.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if IsNotFound(err) {
		_, err = eng.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge",
			Labels: map[string]string{jobs.LabelJob: j.ID, jobs.LabelDataDir: b.cfg.DataDir}})
		if err != nil {
			return "", fmt.Errorf("creating the job's network %s: %w", name, err)
		}
		n, err = eng.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	}
	if err != nil {
		return "", fmt.Errorf("inspecting the job's network %s: %w", name, err)
	}
	for _, c := range n.Network.IPAM.Config {
		if c.Gateway.IsValid() {
			return c.Gateway.String(), nil
		}
	}
	return "", fmt.Errorf("the job's network %s has no gateway address", name)
}

// ensureImage pulls the job's image, with the registry login, when the
// engine lacks it.
func (b *Backend) ensureImage(ctx context.Context, image string, r jobs.Reporter) error {
	eng := b.cfg.Engine
	_, err := eng.ImageInspect(ctx, image)
	if err == nil {
		return nil
	}
	if !IsNotFound(err) {
		return fmt.Errorf("inspecting image %s: %w", image, err)
	}
	r.Event("pulling " + image + " into the Docker engine")
	start := time.Now()
	opts := client.ImagePullOptions{}
	if a := b.cfg.RegistryAuth; a.Username != "" || a.Password != "" {
		enc, err := authconfig.Encode(registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: b.cfg.Registry})
		if err != nil {
			return fmt.Errorf("encoding the registry login: %w", err)
		}
		opts.RegistryAuth = enc
	}
	resp, err := eng.ImagePull(ctx, image, opts)
	if err != nil {
		return fmt.Errorf("pulling %s: %w", image, err)
	}
	defer resp.Close()
	if err := resp.Wait(ctx); err != nil {
		return fmt.Errorf("pulling %s: %w", image, err)
	}
	r.Event(fmt.Sprintf("pulled the image in %s", time.Since(start).Round(time.Millisecond)))
	return nil
}

// attach finds each task's container: after a restart it re-attaches to
// running ones and reports those that ended or vanished while the
// emulator was down; it creates the rest.
func (b *Backend) attach(ctx context.Context, j *jobs.Job, r jobs.Reporter, c Contract) ([]*task, error) {
	eng := b.cfg.Engine
	list, err := eng.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", jobs.LabelJob+"="+j.ID)})
	if err != nil {
		return nil, fmt.Errorf("listing the job's containers: %w", err)
	}
	byTask := map[int]string{}
	for _, s := range list.Items {
		if i, err := strconv.Atoi(s.Labels[jobs.LabelTask]); err == nil {
			byTask[i] = s.ID
		}
	}
	b.claimGPUs(j)
	var tasks []*task
	var fresh []newTask
	var notes []string
	for i, t := range j.Tasks {
		if t.Status.Final() {
			continue
		}
		if id, ok := byTask[i]; ok {
			tk, note, err := b.reattach(ctx, r, i, id, t)
			if err != nil {
				return tasks, err
			}
			if note != "" {
				notes = append(notes, note)
			}
			if tk != nil {
				tasks = append(tasks, tk)
			}
			continue
		}
		if t.Container != "" {
			// Made by an earlier run of the emulator, and gone since.
			r.Exited(i, jobs.Exit{Code: -1, Reason: fmt.Sprintf("container %.12s is gone (removed while the emulator was down)", t.Container)})
			notes = append(notes, fmt.Sprintf("task %d: container %.12s was removed while the emulator was down: failed", i, t.Container))
			continue
		}
		gpus, err := b.takeGPUs(j.ID, j.Spec.Flavor.GPUs)
		if err != nil {
			return tasks, err
		}
		fresh = append(fresh, newTask{i, gpus})
	}
	if len(notes) > 0 {
		r.Event("after the restart: " + strings.Join(notes, "; "))
	}
	made, err := b.create(ctx, j, r, c, fresh)
	return append(tasks, made...), err
}

// newTask is a task whose container is yet to be made, with its GPUs.
type newTask struct {
	i    int
	gpus []string
}

// create makes the containers of fresh tasks at once, as start starts
// them: one after the other, each create's round trip to a loaded engine
// would add up. It returns those made, in task order, even on error.
func (b *Backend) create(ctx context.Context, j *jobs.Job, r jobs.Reporter, c Contract, fresh []newTask) ([]*task, error) {
	made := make([]*task, len(fresh))
	errs := make([]error, len(fresh))
	var wg sync.WaitGroup
	for k, t := range fresh {
		wg.Add(1)
		go func() {
			defer wg.Done()
			created, err := b.cfg.Engine.ContainerCreate(ctx, ContainerSpec(j, t.i, c, t.gpus))
			if err != nil {
				errs[k] = fmt.Errorf("creating task %d's container: %w", t.i, err)
				return
			}
			r.Created(t.i, created.ID, t.gpus)
			made[k] = &task{i: t.i, id: created.ID, fresh: true}
		}()
	}
	wg.Wait()
	var tasks []*task
	for _, t := range made {
		if t != nil {
			tasks = append(tasks, t)
		}
	}
	return tasks, errors.Join(errs...)
}

// reattach reads a container that existed before this run.
func (b *Backend) reattach(ctx context.Context, r jobs.Reporter, i int, id string, t jobs.Task) (*task, string, error) {
	in, err := b.cfg.Engine.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("inspecting task %d's container: %w", i, err)
	}
	st := in.Container.State
	switch {
	case st == nil || st.Status == container.StateCreated:
		return &task{i: i, id: id, fresh: true}, "", nil // made, never started
	case st.Running || st.Status == container.StatePaused || st.Status == container.StateRestarting:
		if started, err := time.Parse(time.RFC3339Nano, st.StartedAt); err == nil {
			r.Running(i, started)
		}
		return &task{i: i, id: id}, fmt.Sprintf("task %d: re-attached to its running container", i), nil
	}
	e := exitOf(st)
	r.Exited(i, e)
	note := fmt.Sprintf("task %d: exited with code %d at %s while the emulator was down", i, e.Code, e.At.UTC().Format(time.RFC3339))
	if t.Container == "" {
		note = fmt.Sprintf("task %d: exited with code %d before it was recorded", i, e.Code)
	}
	return nil, note, nil
}

// exitOf is a stopped container's exit as the engine recorded it.
func exitOf(st *container.State) jobs.Exit {
	e := jobs.Exit{Code: st.ExitCode}
	if at, err := time.Parse(time.RFC3339Nano, st.FinishedAt); err == nil && at.Year() > 1 {
		e.At = at
	}
	switch {
	case st.OOMKilled:
		e.Reason = fmt.Sprintf("container was killed for exceeding its memory limit (exit code %d)", st.ExitCode)
	case st.Error != "":
		e.Reason = "container failed: " + st.Error
	}
	return e
}

// start starts every fresh container at once: on a small machine, serial
// starts of 16 containers would cost seconds.
func (b *Backend) start(ctx context.Context, r jobs.Reporter, tasks []*task) error {
	var wg sync.WaitGroup
	errs := make([]error, len(tasks))
	for k, t := range tasks {
		if !t.fresh {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.cfg.Engine.ContainerStart(ctx, t.id, client.ContainerStartOptions{}); err != nil {
				errs[k] = fmt.Errorf("starting task %d's container: %w", t.i, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, t := range tasks {
		if t.fresh {
			r.Running(t.i, now)
		}
	}
	return nil
}

// watch follows every task's log and exit until all have exited; when ctx
// ends it stops what still runs (or, on ErrDetach, leaves it running).
func (b *Backend) watch(ctx context.Context, j *jobs.Job, r jobs.Reporter, tasks []*task) {
	// Logs are drained after a stop too, but not after a detach: the next
	// start follows them again.
	lctx, lcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer lcancel()
	var logs sync.WaitGroup
	exits := make(chan taskExit, len(tasks))
	for _, t := range tasks {
		b.follow(lctx, &logs, r, t)
		tctx, tcancel := context.WithCancel(lctx)
		if hook := b.cfg.TaskStarted; hook != nil {
			go hook(tctx, j.ID, t.i, t.id)
		}
		if b.cfg.PidsLimit > 0 {
			go t.pids.follow(tctx, b.cfg.Engine, t.id)
		}
		go func() {
			defer tcancel()
			exits <- taskExit{t.i, b.wait(lctx, t.id)}
		}()
	}
	left := map[int]*task{}
	for _, t := range tasks {
		left[t.i] = t
	}
	done := ctx.Done()
	stopping := false
	for len(left) > 0 {
		select {
		case e := <-exits:
			if t := left[e.i]; t != nil && !stopping && e.exit.Reason == "" {
				e.exit.Reason = t.pids.reason(e.exit.Code)
			}
			delete(left, e.i)
			e.exit.Stopped = stopping
			r.Exited(e.i, e.exit)
		case <-done:
			done = nil
			if errors.Is(context.Cause(ctx), jobs.ErrDetach) {
				return // lcancel ends the streams; the containers go on
			}
			stopping = true
			r.Event(fmt.Sprintf("stopping the %d tasks still running", len(left)))
			var rest []*task
			for _, t := range left {
				rest = append(rest, t)
			}
			go b.stopAll(rest)
		}
	}
	logs.Wait()
}

// follow copies a container's output into the task's log.
func (b *Backend) follow(ctx context.Context, wg *sync.WaitGroup, r jobs.Reporter, t *task) {
	l, err := r.Log(t.i)
	if err != nil {
		r.Event(fmt.Sprintf("task %d: cannot store logs: %v", t.i, err))
		return
	}
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Timestamps: true}
	if since := l.Resume(); !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rc, err := b.cfg.Engine.ContainerLogs(ctx, t.id, opts)
		if err == nil {
			_, err = stdcopy.StdCopy(l.Stdout(), l.Stderr(), rc)
			rc.Close()
		}
		if err != nil && ctx.Err() == nil {
			r.Event(fmt.Sprintf("task %d: log stream: %v", t.i, err))
		}
	}()
}

// wait blocks until a container stops and returns its exit.
func (b *Backend) wait(ctx context.Context, id string) jobs.Exit {
	w := b.cfg.Engine.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code = -1
	select {
	case res := <-w.Result:
		code = int(res.StatusCode)
	case <-w.Error:
	case <-ctx.Done():
		return jobs.Exit{Code: -1, Reason: "no longer followed"}
	}
	// The engine's record has the finish time and whether memory killed it.
	in, err := b.cfg.Engine.ContainerInspect(context.WithoutCancel(ctx), id, client.ContainerInspectOptions{})
	if err != nil || in.Container.State == nil {
		if code == -1 {
			return jobs.Exit{Code: -1, Reason: "container vanished"}
		}
		return jobs.Exit{Code: code}
	}
	e := exitOf(in.Container.State)
	if code != -1 {
		e.Code = code
	}
	return e
}

// stopAll stops containers in parallel; a background context, since it
// runs after the job's own context ended.
func (b *Backend) stopAll(tasks []*task) {
	var wg sync.WaitGroup
	grace := int(b.cfg.StopGrace.Seconds())
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), b.cfg.StopGrace+30*time.Second)
			defer cancel()
			b.cfg.Engine.ContainerStop(ctx, t.id, client.ContainerStopOptions{Timeout: &grace})
		}()
	}
	wg.Wait()
}

// Cleanup implements jobs.Backend.
func (b *Backend) Cleanup(ctx context.Context, j *jobs.Job) error {
	b.mu.Lock()
	release := b.releases[j.ID]
	delete(b.releases, j.ID)
	for d, owner := range b.gpuOwner {
		if owner == j.ID {
			delete(b.gpuOwner, d)
		}
	}
	b.mu.Unlock()
	if release != nil {
		defer release()
	}
	if j.Spec.Keep {
		return nil
	}
	eng := b.cfg.Engine
	list, err := eng.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", jobs.LabelJob+"="+j.ID)})
	if err != nil {
		return fmt.Errorf("listing the job's containers: %w", err)
	}
	// The containers go at once, then the network they were on.
	errs := make([]error, len(list.Items), len(list.Items)+1)
	var wg sync.WaitGroup
	for k, c := range list.Items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := eng.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !IsNotFound(err) {
				errs[k] = fmt.Errorf("removing container %.12s: %w", c.ID, err)
			}
		}()
	}
	wg.Wait()
	if _, err := eng.NetworkRemove(ctx, NetworkName(j), client.NetworkRemoveOptions{}); err != nil && !IsNotFound(err) {
		errs = append(errs, fmt.Errorf("removing network %s: %w", NetworkName(j), err))
	}
	return errors.Join(errs...)
}

// claimGPUs marks the devices a re-attached job's tasks hold as taken.
func (b *Backend) claimGPUs(j *jobs.Job) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range j.Tasks {
		if t.Status.Final() {
			continue
		}
		for _, d := range t.Devices {
			b.gpuOwner[d] = j.ID
		}
	}
}

// takeGPUs gives n free device ids to a task of job id; the core's count
// of GPUs in use guarantees there are enough.
func (b *Backend) takeGPUs(id string, n int) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var free []string
	for _, d := range b.cfg.GPUs {
		if _, taken := b.gpuOwner[d]; !taken {
			free = append(free, d)
		}
	}
	sort.Strings(free)
	if len(free) < n {
		return nil, fmt.Errorf("the task needs %d GPUs but %d of this machine's %d are free", n, len(free), len(b.cfg.GPUs))
	}
	for _, d := range free[:n] {
		b.gpuOwner[d] = id
	}
	return free[:n], nil
}
