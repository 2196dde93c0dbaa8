package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/docker"
)

// Images resolves a user's image reference to a repository and manifest
// digest in malocal's registry.
type Images interface {
	Resolve(ctx context.Context, image string) (repo, digest string, err error)
}

// Auditor checks an image against the platform's rules (cached by digest).
type Auditor interface {
	Audit(ctx context.Context, repo, digest string) (passed bool, reasons []string, err error)
}

// Buckets tells whether a bucket exists in the object store.
type Buckets interface {
	BucketExists(ctx context.Context, name string) (bool, error)
}

// LogUploader copies a local folder of task logs to an object store URL.
type LogUploader interface {
	UploadDir(ctx context.Context, dir, url string) error
}

// Capacity bounds what running jobs may use together. Zero CPUs or Memory
// means unbounded; GPUs are device IDs.
type Capacity struct {
	CPUs   float64
	Memory int64
	GPUs   []string
}

// Config is what a Manager needs.
type Config struct {
	Store   *Store
	Backend Backend
	LogDir  string
	Images  Images
	Auditor Auditor // nil: images are not audited, and each job says so
	Buckets Buckets // nil: buckets are not checked at submit
	// Uploader copies each task's log to the job's log_url at the end.
	Uploader LogUploader
	Capacity Capacity
	Logger   *slog.Logger
}

// Manager owns jobs: submit, queue, run, stop, and recovery after a restart.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*api.Job // every non-final job, the live copy
	queue   []string            // pending job ids, FIFO
	cancels map[string]context.CancelCauseFunc
	usedCPU float64
	usedMem int64
	freeGPU []string
	wg      sync.WaitGroup
	ctx     context.Context
}

// Causes of a run's end that are not the tasks' own.
var (
	errStopped  = errors.New("stopped by the user")
	errTimedOut = errors.New("time limit reached")
)

// NewManager loads the store and resumes every job that was not final:
// queued jobs queue again, running ones re-attach to their containers.
func NewManager(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, jobs: map[string]*api.Job{}, cancels: map[string]context.CancelCauseFunc{},
		freeGPU: append([]string(nil), cfg.Capacity.GPUs...), ctx: ctx}
	all, err := cfg.Store.List()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range all {
		if j.Status.Final() {
			continue
		}
		m.jobs[j.ID] = j
		switch j.Status {
		case api.StatusCreating, api.StatusAuditing:
			m.goPrepare(j.ID)
		case api.StatusPending:
			m.queue = append(m.queue, j.ID)
		case api.StatusRunning:
			m.reserve(j)
			m.event(j, "", "emulator restarted: re-attaching to the job's containers")
			m.goRun(j.ID)
		}
	}
	m.scheduleLocked()
	return m, nil
}

// Submit validates a spec, resolves its image and records the job; audit
// and queueing continue in the background.
func (m *Manager) Submit(ctx context.Context, spec api.JobSpec) (*api.Job, error) {
	if err := Normalize(&spec); err != nil {
		return nil, err
	}
	need := spec.Flavor.GPUs * spec.Nodes
	if need > len(m.cfg.Capacity.GPUs) {
		return nil, api.Invalidf("flavor.gpus: the job asks for %d GPUs (%d per node × %d nodes) but this machine has %d", need, spec.Flavor.GPUs, spec.Nodes, len(m.cfg.Capacity.GPUs))
	}
	if c := m.cfg.Capacity.CPUs; c > 0 && spec.Flavor.CPUs*float64(spec.Nodes) > c {
		return nil, api.Invalidf("flavor.cpus: the job asks for %g CPUs (%g per node × %d nodes) but malocal may use %g", spec.Flavor.CPUs*float64(spec.Nodes), spec.Flavor.CPUs, spec.Nodes, c)
	}
	if c := m.cfg.Capacity.Memory; c > 0 && int64(spec.Flavor.Memory)*int64(spec.Nodes) > c {
		return nil, api.Invalidf("flavor.memory: the job asks for %d bytes in all but malocal may use %d", int64(spec.Flavor.Memory)*int64(spec.Nodes), c)
	}
	repo, digest, err := m.cfg.Images.Resolve(ctx, spec.Image)
	if err != nil {
		return nil, err
	}
	if m.cfg.Buckets != nil {
		for _, u := range []struct{ field, url string }{{"app_url", spec.AppURL}, {"data_url", spec.DataURL}, {"train_url", spec.TrainURL}, {"log_url", spec.LogURL}} {
			if u.url == "" {
				continue
			}
			bucket, _, _ := ParseObjectURL(u.url)
			ok, err := m.cfg.Buckets.BucketExists(ctx, bucket)
			if err != nil {
				return nil, fmt.Errorf("checking bucket %q of %s: %w", bucket, u.field, err)
			}
			if !ok {
				return nil, api.Invalidf("%s: bucket %q does not exist in the object store (create it with `malocal obs mb s3://%s`)", u.field, bucket, bucket)
			}
		}
	}
	now := time.Now().UTC()
	j := &api.Job{ID: newID(), Spec: spec, ImageRepo: repo, ImageDigest: digest, Created: now}
	for i := range spec.Nodes {
		j.Tasks = append(j.Tasks, api.Task{Index: i, Host: HostName(j, i), Status: "waiting"})
	}
	m.mu.Lock()
	m.jobs[j.ID] = j
	m.setStatus(j, api.StatusCreating, fmt.Sprintf("image %s resolved to %s@%s", spec.Image, repo, digest))
	out := clone(j)
	m.mu.Unlock()
	m.goPrepare(j.ID)
	return out, nil
}

func newID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "job-" + hex.EncodeToString(b)
}

// goPrepare audits a job's image, then queues the job.
func (m *Manager) goPrepare(id string) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.mu.Lock()
		j := m.jobs[id]
		if j == nil || j.Status.Final() {
			m.mu.Unlock()
			return
		}
		m.setStatus(j, api.StatusAuditing, "auditing "+j.ImageRepo+"@"+j.ImageDigest)
		repo, digest := j.ImageRepo, j.ImageDigest
		m.mu.Unlock()

		var passed = true
		var reasons []string
		var err error
		if m.cfg.Auditor == nil {
			reasons = []string{"the image audit is not available in this build: the image was not audited"}
		} else {
			passed, reasons, err = m.cfg.Auditor.Audit(m.ctx, repo, digest)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if j.Status.Final() { // stopped while auditing
			return
		}
		switch {
		case err != nil && m.ctx.Err() != nil:
			return // shutting down: the next start audits again
		case err != nil:
			j.Audit = []string{err.Error()}
			m.finish(j, api.StatusAuditFailed, "the image could not be audited: "+err.Error(), nil)
		case !passed:
			j.Audit = reasons
			m.finish(j, api.StatusAuditFailed, "the image failed the audit: "+strings.Join(reasons, "; "), nil)
		default:
			j.Audit = reasons
			m.setStatus(j, api.StatusPending, "audit passed; queued")
			m.enqueue(j)
			m.scheduleLocked()
		}
	}()
}

// enqueue adds a job to the queue in submission order: audits finish in
// any order, the queue stays first come, first served. Holds m.mu.
func (m *Manager) enqueue(j *api.Job) {
	i := sort.Search(len(m.queue), func(k int) bool {
		q := m.jobs[m.queue[k]]
		return q != nil && q.Created.After(j.Created)
	})
	m.queue = append(m.queue, "")
	copy(m.queue[i+1:], m.queue[i:])
	m.queue[i] = j.ID
}

// scheduleLocked starts queued jobs, strictly FIFO, while capacity
// allows. Holds m.mu.
func (m *Manager) scheduleLocked() {
	for len(m.queue) > 0 && m.ctx.Err() == nil {
		j := m.jobs[m.queue[0]]
		if j == nil || j.Status != api.StatusPending {
			m.queue = m.queue[1:]
			continue
		}
		if !m.fits(j) {
			return
		}
		m.queue = m.queue[1:]
		m.reserve(j)
		m.setStatus(j, api.StatusRunning, fmt.Sprintf("starting %d tasks", j.Spec.Nodes))
		m.goRun(j.ID)
	}
}

func (m *Manager) fits(j *api.Job) bool {
	f, n := j.Spec.Flavor, float64(j.Spec.Nodes)
	if c := m.cfg.Capacity.CPUs; c > 0 && m.usedCPU+f.CPUs*n > c+1e-9 {
		return false
	}
	if c := m.cfg.Capacity.Memory; c > 0 && m.usedMem+int64(f.Memory)*int64(j.Spec.Nodes) > c {
		return false
	}
	return f.GPUs*j.Spec.Nodes <= len(m.freeGPU)
}

// reserve takes the job's resources; GPUs go to tasks by explicit ID, so
// two jobs never share one. A re-attached job keeps the GPUs it had.
func (m *Manager) reserve(j *api.Job) {
	f, n := j.Spec.Flavor, j.Spec.Nodes
	m.usedCPU += f.CPUs * float64(n)
	m.usedMem += int64(f.Memory) * int64(n)
	for i := range j.Tasks {
		if len(j.Tasks[i].GPUs) > 0 {
			m.freeGPU = remove(m.freeGPU, j.Tasks[i].GPUs)
			continue
		}
		if f.GPUs > 0 && len(m.freeGPU) >= f.GPUs {
			j.Tasks[i].GPUs = append([]string(nil), m.freeGPU[:f.GPUs]...)
			m.freeGPU = m.freeGPU[f.GPUs:]
		}
	}
}

func (m *Manager) unreserve(j *api.Job) {
	f, n := j.Spec.Flavor, j.Spec.Nodes
	m.usedCPU -= f.CPUs * float64(n)
	m.usedMem -= int64(f.Memory) * int64(n)
	for i := range j.Tasks {
		m.freeGPU = append(m.freeGPU, j.Tasks[i].GPUs...)
	}
	sort.Strings(m.freeGPU)
}

func remove(from, items []string) []string {
	out := from[:0:0]
	for _, s := range from {
		keep := true
		for _, it := range items {
			keep = keep && s != it
		}
		if keep {
			out = append(out, s)
		}
	}
	return out
}

// goRun runs a job through the backend, with retries and the time limit.
// Holds m.mu.
func (m *Manager) goRun(id string) {
	j := m.jobs[id]
	// Not m.ctx: at shutdown, Shutdown detaches runs (ErrDetach) so their
	// containers go on and the next start re-attaches.
	ctx, cancel := context.WithCancelCause(context.Background())
	m.cancels[id] = cancel
	if j.Started.IsZero() {
		j.Started = time.Now().UTC()
		m.put(j)
	}
	started := j.Started
	stopTimer := func() {}
	if d := time.Duration(j.Spec.Timeout); d > 0 {
		// The limit counts from the first start, across retries and restarts.
		ctx, stopTimer = context.WithDeadlineCause(ctx, started.Add(d), errTimedOut)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel(nil)
		defer stopTimer()
		rec := &recorder{m: m, id: id}
		defer rec.close()
		for {
			m.mu.Lock()
			jc := clone(j)
			m.mu.Unlock()
			out := m.cfg.Backend.Run(ctx, jc, rec)
			rec.close()
			if errors.Is(context.Cause(ctx), ErrDetach) {
				return // the containers go on; the next start re-attaches
			}
			if err := m.cfg.Backend.Cleanup(context.WithoutCancel(ctx), jc); err != nil {
				m.mu.Lock()
				m.event(j, "", "cleanup: "+err.Error())
				m.mu.Unlock()
			}
			switch cause := context.Cause(ctx); {
			case errors.Is(cause, errStopped):
				out = Outcome{Status: api.StatusCanceled, ExitCode: -1, Reason: "stopped by the user"}
			case errors.Is(cause, errTimedOut):
				out = Outcome{Status: api.StatusTimeout, ExitCode: 124, Reason: "time limit of " + time.Duration(j.Spec.Timeout).String() + " reached"}
			}
			m.mu.Lock()
			if out.Status == api.StatusFailed && j.Attempt < j.Spec.Retries && ctx.Err() == nil {
				j.Attempt++
				for i := range j.Tasks {
					t := &j.Tasks[i]
					t.Container, t.ExitCode, t.Status, t.Started, t.Finished = "", nil, "waiting", time.Time{}, time.Time{}
				}
				m.event(j, "", fmt.Sprintf("%s; retrying (attempt %d of %d)", out.Reason, j.Attempt+1, j.Spec.Retries+1))
				m.mu.Unlock()
				continue
			}
			m.uploadLogs(j)
			code := out.ExitCode
			m.unreserve(j)
			m.finish(j, out.Status, out.Reason, &code)
			m.scheduleLocked()
			m.mu.Unlock()
			return
		}
	}()
}

// uploadLogs copies the job's task logs to <log_url>/<job id>/ when the
// job has a log dir. Holds m.mu; the upload itself runs unlocked, so
// readers of the job are not held up.
func (m *Manager) uploadLogs(j *api.Job) {
	if j.Spec.LogURL == "" || m.cfg.Uploader == nil {
		return
	}
	dst := strings.TrimSuffix(j.Spec.LogURL, "/") + "/" + j.ID + "/"
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err := m.cfg.Uploader.UploadDir(ctx, filepath.Join(m.cfg.LogDir, j.ID), dst)
	cancel()
	m.mu.Lock()
	if err != nil {
		m.event(j, "", "uploading the logs to "+dst+": "+err.Error())
		return
	}
	m.event(j, "", "logs uploaded to "+dst)
}

// setStatus changes a job's status with a timestamped event. Holds m.mu.
func (m *Manager) setStatus(j *api.Job, s api.JobStatus, msg string) {
	j.Status = s
	m.event(j, s, msg)
}

// event records a timestamped message and persists the job. Holds m.mu.
func (m *Manager) event(j *api.Job, s api.JobStatus, msg string) {
	j.Events = append(j.Events, api.Event{Time: time.Now().UTC(), Status: s, Message: msg})
	m.put(j)
	m.log.Info("job", "id", j.ID, "status", j.Status, "msg", msg)
}

func (m *Manager) put(j *api.Job) {
	if err := m.cfg.Store.Put(j); err != nil {
		m.log.Error("storing job", "id", j.ID, "err", err)
	}
}

// finish makes a job final. Holds m.mu.
func (m *Manager) finish(j *api.Job, s api.JobStatus, reason string, code *int) {
	j.Reason = reason
	j.Finished = time.Now().UTC()
	j.ExitCode = code
	if s == api.StatusCompleted {
		reason = "all tasks done"
		j.Reason = ""
	}
	m.setStatus(j, s, reason)
	delete(m.jobs, j.ID)
	delete(m.cancels, j.ID)
}

// Stop cancels a queued or running job.
func (m *Manager) Stop(ctx context.Context, id string) (*api.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j := m.jobs[id]
	if j == nil {
		stored, err := m.cfg.Store.Get(id)
		if err != nil {
			return nil, err
		}
		return stored, fmt.Errorf("job %s is already %s: %w", id, stored.Status, api.ErrConflict)
	}
	if cancel := m.cancels[id]; cancel != nil {
		m.event(j, "", "stop requested")
		cancel(errStopped)
		return clone(j), nil
	}
	m.finish(j, api.StatusCanceled, "stopped by the user before it ran", nil)
	return clone(j), nil
}

// Get returns a job, with its queue position when queued.
func (m *Manager) Get(_ context.Context, id string) (*api.Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j := m.jobs[id]; j != nil {
		out := clone(j)
		out.QueuePosition = m.position(id)
		return out, nil
	}
	return m.cfg.Store.Get(id)
}

func (m *Manager) position(id string) int {
	for i, q := range m.queue {
		if q == id {
			return i + 1
		}
	}
	return 0
}

// List returns jobs, oldest first, filtered by status and name when given.
func (m *Manager) List(_ context.Context, status, name string) ([]*api.Job, error) {
	all, err := m.cfg.Store.List()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := all[:0]
	for _, j := range all {
		if live := m.jobs[j.ID]; live != nil {
			j = clone(live)
			j.QueuePosition = m.position(j.ID)
		}
		if (status == "" || string(j.Status) == status) && (name == "" || strings.Contains(j.Spec.Name, name)) {
			out = append(out, j)
		}
	}
	return out, nil
}

// Delete removes a finished job and its logs.
func (m *Manager) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j := m.jobs[id]; j != nil {
		return fmt.Errorf("job %s is %s: stop it before deleting it: %w", id, j.Status, api.ErrConflict)
	}
	if _, err := m.cfg.Store.Get(id); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(m.cfg.LogDir, id)); err != nil {
		return fmt.Errorf("removing logs of %s: %w", id, err)
	}
	return m.cfg.Store.Delete(id)
}

// Logs sends the stored log lines of a job's tasks (task < 0: all, in time
// order) to fn; with follow, it goes on until the job is final.
func (m *Manager) Logs(ctx context.Context, id string, task int, follow bool, fn func(api.LogLine) error) error {
	j, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if task >= j.Spec.Nodes {
		return api.Invalidf("task: job %s has tasks 0 to %d, not %d", id, j.Spec.Nodes-1, task)
	}
	done := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.jobs[id] == nil
	}
	if task >= 0 {
		return followFile(ctx, logPath(m.cfg.LogDir, id, task), task, follow, done, fn)
	}
	// All tasks: one follower each, lines forwarded as they come.
	var mu sync.Mutex
	errc := make(chan error, j.Spec.Nodes)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range j.Spec.Nodes {
		go func() {
			errc <- followFile(ctx, logPath(m.cfg.LogDir, id, i), i, follow, done, func(l api.LogLine) error {
				mu.Lock()
				defer mu.Unlock()
				return fn(l)
			})
		}()
	}
	var first error
	for range j.Spec.Nodes {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// Shutdown detaches from running jobs, leaving their containers running
// for the next start to re-attach, and waits for the manager's goroutines.
// The ctx given to NewManager must be canceled first.
func (m *Manager) Shutdown() {
	m.mu.Lock()
	for _, cancel := range m.cancels {
		cancel(ErrDetach)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func clone(j *api.Job) *api.Job {
	b, _ := json.Marshal(j)
	out := new(api.Job)
	json.Unmarshal(b, out)
	return out
}

// recorder is the manager's Recorder for one running job.
type recorder struct {
	m    *Manager
	id   string
	mu   sync.Mutex
	logs map[int]*taskLog
}

func (r *recorder) Event(msg string) {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if j := r.m.jobs[r.id]; j != nil {
		r.m.event(j, "", msg)
	}
}

func (r *recorder) Task(i int, fn func(*api.Task)) {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if j := r.m.jobs[r.id]; j != nil && i < len(j.Tasks) {
		fn(&j.Tasks[i])
		r.m.put(j)
	}
}

func (r *recorder) Log(i int) (docker.StreamWriter, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logs == nil {
		r.logs = map[int]*taskLog{}
	}
	if l := r.logs[i]; l != nil {
		return l, nil
	}
	l, err := openTaskLog(r.m.cfg.LogDir, r.id, i)
	if err != nil {
		return nil, err
	}
	r.logs[i] = l
	return l, nil
}

func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, l := range r.logs {
		l.Close()
		delete(r.logs, i)
	}
}
