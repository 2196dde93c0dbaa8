package emulator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/metrics"
)

// jobsAPI adapts the job manager to api.JobBackend: it converts between
// the API's wire types and the core's model, and maps the core's errors
// to the API's classes, here and nowhere else.
type jobsAPI struct {
	m       *jobs.Manager
	metrics *metrics.Store // a job's resource samples, deleted with it
}

var _ api.JobBackend = jobsAPI{}

func (j jobsAPI) SubmitJob(ctx context.Context, s api.JobSpec) (*api.Job, error) {
	job, err := j.m.Submit(ctx, specFromAPI(s))
	if err != nil {
		return nil, apiError(err)
	}
	return jobToAPI(job), nil
}

func (j jobsAPI) Jobs(ctx context.Context, status, name string) ([]*api.Job, error) {
	list, err := j.m.List(ctx, status, name)
	if err != nil {
		return nil, apiError(err)
	}
	out := make([]*api.Job, len(list))
	for i, job := range list {
		out[i] = jobToAPI(job)
	}
	return out, nil
}

func (j jobsAPI) Job(ctx context.Context, id string) (*api.Job, error) {
	job, err := j.m.Get(ctx, id)
	if err != nil {
		return nil, apiError(err)
	}
	return jobToAPI(job), nil
}

func (j jobsAPI) StopJob(ctx context.Context, id string) (*api.Job, error) {
	job, err := j.m.Stop(ctx, id)
	var out *api.Job
	if job != nil {
		out = jobToAPI(job)
	}
	return out, apiError(err)
}

func (j jobsAPI) DeleteJob(ctx context.Context, id string) error {
	if err := j.m.Delete(ctx, id); err != nil {
		return apiError(err)
	}
	if j.metrics != nil {
		return j.metrics.Delete(id)
	}
	return nil
}

func (j jobsAPI) JobLogs(ctx context.Context, id string, task int, follow bool, fn func(api.LogLine) error) error {
	return apiError(j.m.Logs(ctx, id, task, follow, func(l jobs.LogLine) error {
		return fn(api.LogLine{Task: l.Task, Time: l.Time, Stderr: l.Stderr, Text: l.Text})
	}))
}

// apiError maps the core's error classes to the API's.
func apiError(err error) error {
	var ar *jobs.AuditRefusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ar):
		return &api.AuditError{Message: err.Error(), Lines: ar.Verdict.Lines}
	case errors.Is(err, jobs.ErrNotFound):
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	case errors.Is(err, jobs.ErrConflict):
		return fmt.Errorf("%w: %w", api.ErrConflict, err)
	case errors.Is(err, jobs.ErrInvalid):
		// The API's own wording ("invalid request: field: what"), which
		// clients such as the console read the field from.
		return &classed{class: api.ErrInvalid, err: err,
			msg: api.ErrInvalid.Error() + ": " + strings.TrimPrefix(err.Error(), jobs.ErrInvalid.Error()+": ")}
	}
	return err
}

// classed gives an error of the core an API class while its message stays
// the core's own.
type classed struct {
	class, err error
	msg        string // the message, when not the core's own
}

func (c *classed) Error() string {
	if c.msg != "" {
		return c.msg
	}
	return c.err.Error()
}
func (c *classed) Unwrap() []error { return []error{c.class, c.err} }

func specFromAPI(s api.JobSpec) jobs.Spec {
	return jobs.Spec{Name: s.Name, Description: s.Description, Image: s.Image, Command: s.Command, Nodes: s.Nodes,
		AppURL: s.AppURL, DataURL: s.DataURL, TrainURL: s.TrainURL, LogURL: s.LogURL, Env: s.Env,
		Flavor:  jobs.Flavor{CPUs: s.Flavor.CPUs, Memory: int64(s.Flavor.Memory), GPUs: s.Flavor.GPUs},
		Timeout: time.Duration(s.Timeout), Policy: jobs.Policy(s.Policy), Retries: s.Retries, Port: s.Port, Keep: s.Keep}
}

func specToAPI(s jobs.Spec) api.JobSpec {
	return api.JobSpec{Name: s.Name, Description: s.Description, Image: s.Image, Command: s.Command, Nodes: s.Nodes,
		AppURL: s.AppURL, DataURL: s.DataURL, TrainURL: s.TrainURL, LogURL: s.LogURL, Env: s.Env,
		Flavor:  api.Flavor{CPUs: s.Flavor.CPUs, Memory: api.ByteSize(s.Flavor.Memory), GPUs: s.Flavor.GPUs},
		Timeout: api.Duration(s.Timeout), Policy: string(s.Policy), Retries: s.Retries, Port: s.Port, Keep: s.Keep}
}

func jobToAPI(j *jobs.Job) *api.Job {
	out := &api.Job{ID: j.ID, Spec: specToAPI(j.Spec), Status: api.JobStatus(j.Status), Reason: j.Reason,
		ImageRepo: j.ImageRepo, ImageDigest: j.ImageDigest, Audit: j.Audit, Attempt: j.Attempt,
		Created: j.Created, Started: j.Started, Finished: j.Finished, QueuePosition: j.QueuePosition, ExitCode: j.ExitCode,
		Tasks: make([]api.Task, len(j.Tasks)), Events: make([]api.Event, len(j.Events))}
	for i, t := range j.Tasks {
		out.Tasks[i] = api.Task{Index: t.Index, Host: t.Host, Container: t.Container, Status: string(t.Status),
			ExitCode: t.ExitCode, GPUs: t.Devices, Started: t.Started, Finished: t.Finished}
	}
	for i, e := range j.Events {
		out.Events[i] = api.Event{Time: e.Time, Status: api.JobStatus(e.Status), Message: e.Message}
	}
	return out
}
