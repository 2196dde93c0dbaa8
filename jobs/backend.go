package jobs

import (
	"context"
	"errors"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/docker"
)

// Backend runs a job's tasks somewhere: Docker containers on this machine
// today, a Kubernetes cluster later. The manager owns the job's life
// (audit, queue, retries, time limit, store); a backend owns its tasks.
type Backend interface {
	// Run starts (or, after an emulator restart, re-attaches to) every task
	// of the job and blocks until its policy decides or ctx ends; then it
	// stops what still runs. It reports progress through rec.
	Run(ctx context.Context, j *api.Job, rec Recorder) Outcome
	// Cleanup removes what Run made (containers, network), unless the job
	// asked to keep them.
	Cleanup(ctx context.Context, j *api.Job) error
}

// ErrDetach is the cause of a run's context when the emulator shuts down:
// a backend returns at once and leaves the tasks running.
var ErrDetach = errors.New("emulator shutting down: tasks left running")

// Recorder is how a backend reports what happens to a job.
type Recorder interface {
	// Event adds a timestamped message to the job.
	Event(msg string)
	// Task changes task i under the job's lock.
	Task(i int, fn func(*api.Task))
	// Log returns the writer of task i's log.
	Log(i int) (docker.StreamWriter, error)
}

// Outcome is how a run ended.
type Outcome struct {
	Status   api.JobStatus
	ExitCode int
	Reason   string
}
