package jobs

import (
	"context"
	"sync"
	"time"
)

// reporter is the manager's Reporter for one attempt of a running job: it
// records what the backend says and applies the job's policy to the
// exits, once, here.
type reporter struct {
	m       *Manager
	id      string
	policy  Policy
	decided context.CancelCauseFunc

	// Under m.mu:
	done bool
	out  outcome

	logMu sync.Mutex
	logs  map[int]*taskLog
}

var _ Reporter = (*reporter)(nil)

// task runs fn on task i of the live job and stores the job.
func (r *reporter) task(i int, fn func(j *Job, t *Task)) {
	r.m.locked(func(b *batch) {
		j := r.m.jobs[r.id]
		if j == nil || i < 0 || i >= len(j.Tasks) {
			return
		}
		fn(j, &j.Tasks[i])
		r.m.save(b, j)
	})
}

// decideStored applies the policy to the exits stored before a restart.
func (r *reporter) decideStored() {
	r.m.locked(func(*batch) {
		if j := r.m.jobs[r.id]; j != nil {
			r.decide(j)
		}
	})
}

// decide latches the policy's decision and ends the attempt's context, so
// the backend stops what still runs. Holds m.mu.
func (r *reporter) decide(j *Job) {
	if r.done {
		return
	}
	if out, ok := decide(r.policy, j.Tasks); ok {
		r.done, r.out = true, out
		r.decided(errDecided)
	}
}

// result is the policy's decision, if any.
func (r *reporter) result() (o outcome, ok bool) {
	r.m.locked(func(*batch) { o, ok = r.out, r.done })
	return o, ok
}

func (r *reporter) Event(msg string) {
	r.m.locked(func(b *batch) {
		if j := r.m.jobs[r.id]; j != nil {
			r.m.event(b, j, "", msg)
		}
	})
}

func (r *reporter) Created(i int, container string, devices []string) {
	r.task(i, func(_ *Job, t *Task) {
		t.Container, t.Devices, t.Status = container, append([]string(nil), devices...), TaskCreated
	})
}

func (r *reporter) Running(i int, at time.Time) {
	r.task(i, func(_ *Job, t *Task) {
		if t.Status.Final() {
			return
		}
		t.Status = TaskRunning
		if t.Started.IsZero() {
			t.Started = at.UTC()
		}
	})
}

func (r *reporter) Exited(i int, e Exit) {
	r.task(i, func(j *Job, t *Task) {
		if t.Status.Final() {
			return
		}
		code := e.Code
		t.ExitCode = &code
		t.Reason = e.Reason
		t.Finished = e.At.UTC()
		if e.At.IsZero() {
			t.Finished = time.Now().UTC()
		}
		switch {
		case e.Stopped || r.done:
			t.Status = TaskStopped
		case code == 0:
			t.Status = TaskSucceeded
		default:
			t.Status = TaskFailed
		}
		r.decide(j)
	})
}

func (r *reporter) Log(i int) (TaskLog, error) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
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

func (r *reporter) closeLogs() {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	for i, l := range r.logs {
		l.Close()
		delete(r.logs, i)
	}
}
