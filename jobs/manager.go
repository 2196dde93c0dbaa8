package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Capacity bounds what running jobs may use together. Zero CPUs or Memory
// means unbounded; GPUs is how many there are (none: zero).
type Capacity struct {
	CPUs   float64
	Memory int64
	GPUs   int
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
	// Credentials issues each job a key of its own; nil: every job gets
	// the emulator's key.
	Credentials Credentials
	Capacity    Capacity
	Logger      *slog.Logger
}

// Manager owns jobs: submit, queue, run, stop, and recovery after a
// restart. Its mutex guards the live jobs and the queue only: the store is
// written, and the backend called, without it.
type Manager struct {
	cfg Config
	log *slog.Logger
	ctx context.Context
	wg  sync.WaitGroup

	mu      sync.Mutex
	jobs    map[string]*Job // every non-final job, the live copy
	queue   []string        // pending job ids, in submission order
	cancels map[string]context.CancelCauseFunc
	usedCPU float64
	usedMem int64
	usedGPU int
}

// Causes of a run's end that are not the tasks' own.
var (
	errStopped  = errors.New("stopped by the user")
	errTimedOut = errors.New("time limit reached")
	errDecided  = errors.New("the job's policy decided")
)

// batch collects what a locked change must do once the lock is released:
// the copies to store and the keys to revoke.
type batch struct {
	saves   []*Job
	revokes []string
}

// locked runs fn under the manager's lock, then stores what fn changed.
func (m *Manager) locked(fn func(b *batch)) {
	var b batch
	m.mu.Lock()
	fn(&b)
	m.mu.Unlock()
	m.flush(&b)
}

// flush does a batch's I/O; it never runs under the lock.
func (m *Manager) flush(b *batch) {
	for _, j := range b.saves {
		if err := m.cfg.Store.Put(j); err != nil {
			m.log.Error("storing job", "id", j.ID, "err", err)
		}
	}
	for _, id := range b.revokes {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := m.cfg.Credentials.Revoke(ctx, id); err != nil {
			m.log.Error("revoking the job's key", "id", id, "err", err)
		}
		cancel()
	}
}

// save queues a copy of j for the store. Holds m.mu.
func (m *Manager) save(b *batch, j *Job) {
	j.rev++
	b.saves = append(b.saves, j.Clone())
}

// NewManager loads the store and resumes every job that was not final:
// queued jobs queue again, running ones re-attach to their tasks.
func NewManager(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, ctx: ctx, jobs: map[string]*Job{}, cancels: map[string]context.CancelCauseFunc{}}
	all, err := cfg.Store.List()
	if err != nil {
		return nil, err
	}
	var prepare []string
	m.locked(func(b *batch) {
		for _, j := range all {
			if j.Status.Final() {
				continue
			}
			m.jobs[j.ID] = j
			switch j.Status {
			case StatusCreating, StatusAuditing:
				prepare = append(prepare, j.ID)
			case StatusPending:
				m.enqueue(j)
			case StatusRunning:
				m.reserve(j)
				m.event(b, j, "", "emulator restarted: re-attaching to the job's tasks")
				m.startRun(b, j)
			}
		}
		m.schedule(b)
	})
	for _, id := range prepare {
		m.goPrepare(id)
	}
	return m, nil
}

// Submit validates a spec, resolves its image and stores the job; audit
// and queueing continue in the background. It fails, and nothing runs,
// when the job could not be stored.
func (m *Manager) Submit(ctx context.Context, spec Spec) (*Job, error) {
	if err := m.check(&spec); err != nil {
		return nil, err
	}
	repo, digest, err := m.cfg.Images.Resolve(ctx, spec.Image)
	if err != nil {
		return nil, err
	}
	if err := m.checkBuckets(ctx, spec); err != nil {
		return nil, err
	}
	if m.cfg.Auditor != nil {
		v, ok, err := m.cfg.Auditor.Cached(ctx, digest)
		if err != nil {
			return nil, fmt.Errorf("reading the stored audit verdict of %s: %w", digest, err)
		}
		if ok && !v.Passed {
			return nil, &AuditRefusedError{Image: spec.Image, Digest: digest, Verdict: v}
		}
	}
	now := time.Now().UTC()
	j := &Job{ID: newID(), Spec: spec, ImageRepo: repo, ImageDigest: digest, Created: now, Status: StatusCreating}
	for i := range spec.Nodes {
		j.Tasks = append(j.Tasks, Task{Index: i, Host: HostName(j, i), Status: TaskWaiting})
	}
	j.Events = []Event{{Time: now, Status: StatusCreating, Message: fmt.Sprintf("image %s resolved to %s@%s", spec.Image, repo, digest)}}
	if m.cfg.Credentials != nil {
		if j.AccessKey, j.SecretKey, err = m.cfg.Credentials.Issue(ctx, j.ID, Grants(spec)); err != nil {
			return nil, fmt.Errorf("issuing the job's object-store key: %w", err)
		}
	}
	j.rev = 1
	if err := m.cfg.Store.Put(j); err != nil {
		if m.cfg.Credentials != nil {
			m.cfg.Credentials.Revoke(context.WithoutCancel(ctx), j.ID)
		}
		return nil, fmt.Errorf("the job was not submitted: %w", err)
	}
	out := j.Clone()
	m.locked(func(*batch) { m.jobs[j.ID] = j })
	m.log.Info("job", "id", j.ID, "status", j.Status, "msg", j.Events[0].Message)
	m.goPrepare(j.ID)
	return out, nil
}

// check validates a spec and that this machine could ever run it.
func (m *Manager) check(spec *Spec) error {
	if err := Normalize(spec); err != nil {
		return err
	}
	n := spec.Nodes
	if need := spec.Flavor.GPUs * n; need > m.cfg.Capacity.GPUs {
		return Invalidf("flavor.gpus: the job asks for %d GPUs (%d per node × %d nodes) but malocal has %d", need, spec.Flavor.GPUs, n, m.cfg.Capacity.GPUs)
	}
	if c := m.cfg.Capacity.CPUs; c > 0 && spec.Flavor.CPUs*float64(n) > c {
		return Invalidf("flavor.cpus: the job asks for %g CPUs (%g per node × %d nodes) but malocal may use %g", spec.Flavor.CPUs*float64(n), spec.Flavor.CPUs, n, c)
	}
	if c := m.cfg.Capacity.Memory; c > 0 && spec.Flavor.Memory*int64(n) > c {
		return Invalidf("flavor.memory: the job asks for %d bytes in all but malocal may use %d", spec.Flavor.Memory*int64(n), c)
	}
	return nil
}

func (m *Manager) checkBuckets(ctx context.Context, spec Spec) error {
	if m.cfg.Buckets == nil {
		return nil
	}
	for _, u := range []struct{ field, url string }{{"app_url", spec.AppURL}, {"data_url", spec.DataURL}, {"train_url", spec.TrainURL}, {"log_url", spec.LogURL}} {
		if u.url == "" {
			continue
		}
		bucket, _, _ := ParseObjectURL(u.url)
		ok, err := m.cfg.Buckets.BucketExists(ctx, bucket)
		if err != nil {
			return fmt.Errorf("checking bucket %q of %s: %w", bucket, u.field, err)
		}
		if !ok {
			return Invalidf("%s: bucket %q does not exist in the object store (create it with `malocal obs mb s3://%s`)", u.field, bucket, bucket)
		}
	}
	return nil
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
		m.prepare(id)
	}()
}

func (m *Manager) prepare(id string) {
	var repo, digest string
	live := false
	m.locked(func(b *batch) {
		j := m.jobs[id]
		if j == nil || j.Status.Final() {
			return
		}
		live, repo, digest = true, j.ImageRepo, j.ImageDigest
		m.setStatus(b, j, StatusAuditing, "auditing "+repo+"@"+digest)
	})
	if !live {
		return
	}
	v, err := m.audit(repo, digest)
	if err != nil && m.ctx.Err() != nil {
		return // shutting down: the next start audits again
	}
	note := ""
	if err == nil && v.Cached {
		note = fmt.Sprintf(" (from the cache, audited %s)", v.AuditedAt.UTC().Format(time.RFC3339))
	}
	var logErr error
	if err == nil {
		lines := v.Lines
		if v.Cached {
			lines = append(append([]string(nil), lines...), "audit verdict from the cache (audited "+v.AuditedAt.UTC().Format(time.RFC3339)+")")
		}
		logErr = appendLines(m.cfg.LogDir, id, 0, lines)
	}
	m.locked(func(b *batch) {
		j := m.jobs[id]
		if j == nil || j.Status.Final() { // stopped while auditing
			return
		}
		if logErr != nil {
			m.event(b, j, "", "writing the audit report to task 0's log: "+logErr.Error())
		}
		switch {
		case err != nil:
			j.Audit = []string{err.Error()}
			m.finish(b, j, StatusAuditFailed, "the image could not be audited: "+err.Error(), nil)
		case !v.Passed:
			j.Audit = v.Lines
			m.finish(b, j, StatusAuditFailed, "the image failed the audit"+note+": "+strings.Join(v.Lines, "; "), nil)
		default:
			j.Audit = v.Lines
			m.setStatus(b, j, StatusPending, "audit passed"+note+"; queued")
			m.enqueue(j)
			m.schedule(b)
		}
	})
}

func (m *Manager) audit(repo, digest string) (Verdict, error) {
	if m.cfg.Auditor == nil {
		return Verdict{Passed: true, Lines: []string{"the image audit is not available in this build: the image was not audited"}}, nil
	}
	return m.cfg.Auditor.Audit(m.ctx, repo, digest)
}

// enqueue adds a job to the queue in submission order: audits finish in
// any order, the queue stays first come, first served. Holds m.mu.
func (m *Manager) enqueue(j *Job) {
	i := sort.Search(len(m.queue), func(k int) bool {
		q := m.jobs[m.queue[k]]
		return q != nil && q.Created.After(j.Created)
	})
	m.queue = append(m.queue, "")
	copy(m.queue[i+1:], m.queue[i:])
	m.queue[i] = j.ID
}

// schedule starts queued jobs, strictly in order, while capacity allows.
// Holds m.mu.
func (m *Manager) schedule(b *batch) {
	for len(m.queue) > 0 && m.ctx.Err() == nil {
		j := m.jobs[m.queue[0]]
		if j == nil || j.Status != StatusPending {
			m.queue = m.queue[1:]
			continue
		}
		if !m.fits(j) {
			return
		}
		m.queue = m.queue[1:]
		m.reserve(j)
		m.setStatus(b, j, StatusRunning, fmt.Sprintf("starting %d tasks", j.Spec.Nodes))
		m.startRun(b, j)
	}
}

func (m *Manager) fits(j *Job) bool {
	f, n := j.Spec.Flavor, j.Spec.Nodes
	if c := m.cfg.Capacity.CPUs; c > 0 && m.usedCPU+f.CPUs*float64(n) > c+1e-9 {
		return false
	}
	if c := m.cfg.Capacity.Memory; c > 0 && m.usedMem+f.Memory*int64(n) > c {
		return false
	}
	return m.usedGPU+f.GPUs*n <= m.cfg.Capacity.GPUs
}

func (m *Manager) reserve(j *Job) {
	f, n := j.Spec.Flavor, j.Spec.Nodes
	m.usedCPU += f.CPUs * float64(n)
	m.usedMem += f.Memory * int64(n)
	m.usedGPU += f.GPUs * n
}

func (m *Manager) unreserve(j *Job) {
	f, n := j.Spec.Flavor, j.Spec.Nodes
	m.usedCPU -= f.CPUs * float64(n)
	m.usedMem -= f.Memory * int64(n)
	m.usedGPU -= f.GPUs * n
}

// startRun runs a job through the backend in its own goroutine, with
// retries and the time limit. Holds m.mu.
func (m *Manager) startRun(b *batch, j *Job) {
	// Not m.ctx: at shutdown, Shutdown detaches runs (ErrDetach) so their
	// tasks go on and the next start re-attaches.
	ctx, cancel := context.WithCancelCause(context.Background())
	m.cancels[j.ID] = cancel
	if j.Started.IsZero() {
		j.Started = time.Now().UTC()
		m.save(b, j)
	}
	stopTimer := context.CancelFunc(func() {})
	if d := j.Spec.Timeout; d > 0 {
		// The limit counts from the first start, across retries and restarts.
		ctx, stopTimer = context.WithDeadlineCause(ctx, j.Started.Add(d), errTimedOut)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel(nil)
		defer stopTimer()
		m.run(ctx, j.ID)
	}()
}

// run runs attempts of a job until one decides it or no retry is left.
func (m *Manager) run(ctx context.Context, id string) {
	for {
		out, jc, detached := m.attempt(ctx, id)
		if detached {
			return // the tasks go on; the next start re-attaches
		}
		retry := false
		m.locked(func(b *batch) {
			j := m.jobs[id]
			if out.status != StatusFailed || j.Attempt >= j.Spec.Retries || ctx.Err() != nil {
				return
			}
			retry = true
			j.Attempt++
			for i := range j.Tasks {
				j.Tasks[i] = Task{Index: i, Host: j.Tasks[i].Host, Status: TaskWaiting}
			}
			m.event(b, j, "", fmt.Sprintf("%s; retrying (attempt %d of %d)", out.reason, j.Attempt+1, j.Spec.Retries+1))
		})
		if retry {
			m.cleanup(ctx, id, jc)
			continue
		}
		// The last attempt's containers go while its logs are uploaded:
		// both come before the final status, neither needs the other.
		var cleaned sync.WaitGroup
		cleaned.Go(func() { m.cleanup(ctx, id, jc) })
		m.uploadLogs(id)
		cleaned.Wait()
		m.locked(func(b *batch) {
			j := m.jobs[id]
			m.unreserve(j)
			code := out.code
			m.finish(b, j, out.status, out.reason, &code)
			m.schedule(b)
		})
		return
	}
}

// cleanup removes what an attempt made (jc, the job it ran), noting a
// failure among the job's events.
func (m *Manager) cleanup(ctx context.Context, id string, jc *Job) {
	if err := m.cfg.Backend.Cleanup(context.WithoutCancel(ctx), jc); err != nil {
		m.locked(func(b *batch) {
			if j := m.jobs[id]; j != nil {
				m.event(b, j, "", "cleanup: "+err.Error())
			}
		})
	}
}

// attempt is one run of a job's tasks through the backend; the caller
// cleans up after it (jc) unless it detached.
func (m *Manager) attempt(ctx context.Context, id string) (out outcome, jc *Job, detached bool) {
	actx, decided := context.WithCancelCause(ctx)
	defer decided(nil)
	m.locked(func(b *batch) {
		j := m.jobs[id]
		if hn, ok := m.cfg.Backend.(HostNamer); ok {
			if hosts := hn.Hosts(j); len(hosts) == len(j.Tasks) {
				for i := range j.Tasks {
					j.Tasks[i].Host = hosts[i]
				}
				m.save(b, j)
			}
		}
		jc = j.Clone()
	})
	rep := &reporter{m: m, id: id, policy: jc.Spec.Policy, decided: decided}
	rep.decideStored()
	err := m.cfg.Backend.Run(actx, jc, rep)
	rep.closeLogs()
	if errors.Is(context.Cause(ctx), ErrDetach) {
		return outcome{}, jc, true
	}
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errStopped):
		return outcome{status: StatusCanceled, code: -1, reason: "stopped by the user"}, jc, false
	case errors.Is(cause, errTimedOut), errors.Is(err, ErrTimeLimit):
		return outcome{status: StatusTimeout, code: 124, reason: "time limit of " + jc.Spec.Timeout.String() + " reached"}, jc, false
	}
	if o, ok := rep.result(); ok {
		return o, jc, false
	}
	if err != nil {
		return outcome{status: StatusFailed, code: -1, reason: err.Error()}, jc, false
	}
	return outcome{status: StatusFailed, code: -1, reason: "the backend ended the run before the tasks' exits decided it"}, jc, false
}

// uploadLogs copies the job's task logs to <log_url>/<job id>/ when the
// job has a log dir.
func (m *Manager) uploadLogs(id string) {
	var logURL string
	m.locked(func(*batch) { logURL = m.jobs[id].Spec.LogURL })
	if logURL == "" || m.cfg.Uploader == nil {
		return
	}
	dst := strings.TrimSuffix(logURL, "/") + "/" + id + "/"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err := m.cfg.Uploader.UploadDir(ctx, filepath.Join(m.cfg.LogDir, id), dst)
	cancel()
	msg := "logs uploaded to " + dst
	if err != nil {
		msg = "uploading the logs to " + dst + ": " + err.Error()
	}
	m.locked(func(b *batch) { m.event(b, m.jobs[id], "", msg) })
}

// setStatus changes a job's status with a timestamped event. Holds m.mu.
func (m *Manager) setStatus(b *batch, j *Job, s JobStatus, msg string) {
	j.Status = s
	m.event(b, j, s, msg)
}

// event records a timestamped message. Holds m.mu.
func (m *Manager) event(b *batch, j *Job, s JobStatus, msg string) {
	j.Events = append(j.Events, Event{Time: time.Now().UTC(), Status: s, Message: msg})
	m.save(b, j)
	m.log.Info("job", "id", j.ID, "status", j.Status, "msg", msg)
}

// finish makes a job final; tasks that never ended end with it. Holds m.mu.
func (m *Manager) finish(b *batch, j *Job, s JobStatus, reason string, code *int) {
	now := time.Now().UTC()
	j.Reason = reason
	j.Finished = now
	j.ExitCode = code
	if s == StatusCompleted {
		reason = "all tasks done"
		j.Reason = ""
	}
	for i := range j.Tasks {
		t := &j.Tasks[i]
		switch {
		case t.Status.Final():
		case t.Status == TaskWaiting:
			t.Status, t.Reason = TaskCanceled, reason
		default:
			t.Status, t.Reason, t.Finished = TaskFailed, reason, now
		}
	}
	m.setStatus(b, j, s, reason)
	delete(m.jobs, j.ID)
	delete(m.cancels, j.ID)
	if m.cfg.Credentials != nil && j.AccessKey != "" {
		b.revokes = append(b.revokes, j.ID)
	}
}

// Stop cancels a job in any state before it is final.
func (m *Manager) Stop(_ context.Context, id string) (*Job, error) {
	var out *Job
	m.locked(func(b *batch) {
		j := m.jobs[id]
		if j == nil {
			return
		}
		if cancel := m.cancels[id]; cancel != nil {
			m.event(b, j, "", "stop requested")
			cancel(errStopped)
		} else {
			m.finish(b, j, StatusCanceled, "stopped by the user before it ran", nil)
		}
		out = j.Clone()
	})
	if out != nil {
		return out, nil
	}
	stored, err := m.cfg.Store.Get(id)
	if err != nil {
		return nil, err
	}
	return stored, fmt.Errorf("job %s is already %s: %w", id, stored.Status, ErrConflict)
}

// Get returns a job, with its queue position when queued.
func (m *Manager) Get(_ context.Context, id string) (*Job, error) {
	var out *Job
	m.locked(func(*batch) {
		if j := m.jobs[id]; j != nil {
			out = j.Clone()
			out.QueuePosition = m.position(id)
		}
	})
	if out != nil {
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
func (m *Manager) List(_ context.Context, status, name string) ([]*Job, error) {
	all, err := m.cfg.Store.List()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	m.locked(func(*batch) {
		for _, j := range all {
			if live := m.jobs[j.ID]; live != nil {
				j = live.Clone()
				j.QueuePosition = m.position(j.ID)
			}
			if (status == "" || string(j.Status) == status) && (name == "" || strings.Contains(j.Spec.Name, name)) {
				out = append(out, j)
			}
		}
	})
	return out, nil
}

// Delete removes a finished job and its logs.
func (m *Manager) Delete(_ context.Context, id string) error {
	var live *Job
	m.locked(func(*batch) { live = m.jobs[id] })
	if live != nil {
		return fmt.Errorf("job %s is %s: stop it before deleting it: %w", id, live.Status, ErrConflict)
	}
	if _, err := m.cfg.Store.Get(id); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(m.cfg.LogDir, id)); err != nil {
		return fmt.Errorf("removing logs of %s: %w", id, err)
	}
	return m.cfg.Store.Delete(id)
}

// Logs sends the stored log lines of a job's tasks (task < 0: all, as
// they come) to fn; with follow, it goes on until the job is final.
func (m *Manager) Logs(ctx context.Context, id string, task int, follow bool, fn func(LogLine) error) error {
	j, err := m.Get(ctx, id)
	if err != nil {
		return err
	}
	if task >= j.Spec.Nodes {
		return Invalidf("task: job %s has tasks 0 to %d, not %d", id, j.Spec.Nodes-1, task)
	}
	done := func() bool {
		var live bool
		m.locked(func(*batch) { live = m.jobs[id] != nil })
		return !live
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
			errc <- followFile(ctx, logPath(m.cfg.LogDir, id, i), i, follow, done, func(l LogLine) error {
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

// Shutdown detaches from running jobs, leaving their tasks running for
// the next start to re-attach, and waits for the manager's goroutines.
// The ctx given to NewManager must be canceled first.
func (m *Manager) Shutdown() {
	m.locked(func(*batch) {
		for _, cancel := range m.cancels {
			cancel(ErrDetach)
		}
	})
	m.wg.Wait()
}
