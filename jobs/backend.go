package jobs

import (
	"context"
	"errors"
	"io"
	"time"
)

// Backend runs a job's tasks somewhere: Docker containers on this machine
// (package dockerbackend) or pods of a Kubernetes cluster (package kube).
// The manager owns the job's life (audit, queue, retries, time limit,
// policy, store); a backend owns its tasks and reports what they do.
type Backend interface {
	// Run starts (or, after an emulator restart, re-attaches to) every task
	// of the job that has not yet ended, reports each one's progress and
	// exit through r, and returns once every task has exited.
	//
	// When ctx ends with the cause ErrDetach, Run returns at once and
	// leaves the tasks running for the next start. When it ends for any
	// other cause (the policy decided, the user stopped the job, the time
	// limit passed), Run stops the tasks still running, reports their
	// exits, and returns.
	//
	// An error means the tasks could not be run (the engine refused, the
	// image could not be pulled); Run stops what it started first.
	Run(ctx context.Context, j *Job, r Reporter) error
	// Cleanup removes what Run made (containers, network, pods), unless
	// the job asked to keep them.
	Cleanup(ctx context.Context, j *Job) error
}

// HostNamer is an optional capability of a backend that names the tasks'
// hosts itself (Kubernetes: pod hostname and subdomain, per attempt); the
// core records those names in place of HostName's.
type HostNamer interface {
	Hosts(j *Job) []string
}

// ErrDetach is the cause of a run's context when the emulator shuts down:
// a backend returns at once and leaves the tasks running.
var ErrDetach = errors.New("emulator shutting down: tasks left running")

// ErrTimeLimit is returned (wrapped) by a backend whose engine ended the
// tasks on the job's time limit by itself (a Kubernetes Job's deadline):
// the job ends as timeout.
var ErrTimeLimit = errors.New("the job's time limit was reached")

// Reporter is how a backend tells the core what happens to a job's tasks.
// Every method may be called from any goroutine.
type Reporter interface {
	// Event adds a timestamped message to the job.
	Event(msg string)
	// Created records task i's container (or pod) and the devices it was given.
	Created(i int, container string, devices []string)
	// Running records that task i runs since at.
	Running(i int, at time.Time)
	// Exited records task i's end; the core applies the job's policy.
	Exited(i int, e Exit)
	// Log is task i's log.
	Log(i int) (TaskLog, error)
}

// Exit is how a task ended.
type Exit struct {
	Code int
	At   time.Time // when it ended; zero: now
	// Reason says why, when not by the task's own exit, phrased to
	// follow "task N's": "container abc is gone (removed while the
	// emulator was down)", "container was killed for exceeding its
	// memory limit".
	Reason string
	// Stopped: the backend stopped it (the run's context ended).
	Stopped bool
}

// TaskLog stores one task's output. Backends write lines of the form
// "<RFC3339Nano time> <text>\n" (the engines' timestamped log format) to
// Stdout and Stderr; lines at or before Resume are dropped, since they
// were stored before a restart.
type TaskLog interface {
	Stdout() io.Writer
	Stderr() io.Writer
	// Resume is the time of the last line stored; after a restart a
	// backend asks its engine for the lines since then.
	Resume() time.Time
}

// RegistryAuth is the login a backend pulls job images with; empty is
// anonymous.
type RegistryAuth struct {
	Username, Password string
}
