// Package jobs is malocal's job core: the model of a job and its tasks,
// validation of what users submit, the FIFO queue with capacity (CPUs,
// memory and GPUs as counts), retries, the time limit, the success policy,
// the versioned store and the per-task logs. It knows no engine: backends
// (Docker in package dockerbackend, Kubernetes in package kube) implement
// Backend and report what their tasks do through a Reporter; the core alone
// decides from those reports how a job ends. It imports no API type either:
// the server converts at its boundary.
package jobs

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// JobStatus is a job's state: creating → auditing → (audit_failed) →
// pending → running → completed | failed | canceled | timeout.
type JobStatus string

// The statuses a job goes through.
const (
	StatusCreating    JobStatus = "creating"
	StatusAuditing    JobStatus = "auditing"
	StatusAuditFailed JobStatus = "audit_failed"
	StatusPending     JobStatus = "pending"
	StatusRunning     JobStatus = "running"
	StatusCompleted   JobStatus = "completed"
	StatusFailed      JobStatus = "failed"
	StatusCanceled    JobStatus = "canceled"
	StatusTimeout     JobStatus = "timeout"
)

// Final reports whether no more changes follow.
func (s JobStatus) Final() bool {
	switch s {
	case StatusAuditFailed, StatusCompleted, StatusFailed, StatusCanceled, StatusTimeout:
		return true
	}
	return false
}

// TaskStatus is one task's state.
type TaskStatus string

// The states of a task: waiting → created → running → succeeded | failed |
// stopped; a task of a job that never ran ends canceled.
const (
	TaskWaiting   TaskStatus = "waiting"
	TaskCreated   TaskStatus = "created"
	TaskRunning   TaskStatus = "running"
	TaskSucceeded TaskStatus = "succeeded"
	TaskFailed    TaskStatus = "failed"
	TaskStopped   TaskStatus = "stopped"
	TaskCanceled  TaskStatus = "canceled"
)

// Final reports whether the task can change no more in this attempt.
func (s TaskStatus) Final() bool {
	switch s {
	case TaskSucceeded, TaskFailed, TaskStopped, TaskCanceled:
		return true
	}
	return false
}

// Policy decides a job's success from its tasks' exits.
type Policy string

// The success policies.
const (
	PolicyAll    Policy = "all"    // every task must exit 0; one failure fails the job
	PolicyIndex0 Policy = "index0" // task 0 decides; the others are then stopped
)

// DefaultPort is the port every BATCH_CUSTOM{k}_HOSTS entry names.
const DefaultPort = 2222

// Spec is what a user submits: the console's form.
type Spec struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	Nodes       int               `json:"nodes"`
	AppURL      string            `json:"app_url"`
	DataURL     string            `json:"data_url,omitempty"`
	TrainURL    string            `json:"train_url,omitempty"`
	LogURL      string            `json:"log_url,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Flavor      Flavor            `json:"flavor"`
	Timeout     time.Duration     `json:"timeout_ns,omitempty"`
	Policy      Policy            `json:"policy,omitempty"`
	Retries     int               `json:"retries,omitempty"`
	Port        int               `json:"port,omitempty"`
	Keep        bool              `json:"keep,omitempty"`
}

// Flavor is the per-node resources. Zero means no limit.
type Flavor struct {
	CPUs   float64 `json:"cpus,omitempty"`
	Memory int64   `json:"memory,omitempty"` // bytes
	GPUs   int     `json:"gpus,omitempty"`
}

// Task is one container (or pod) of a job.
type Task struct {
	Index     int        `json:"index"`
	Host      string     `json:"host"`
	Container string     `json:"container,omitempty"`
	Status    TaskStatus `json:"status"`
	ExitCode  *int       `json:"exit_code,omitempty"`
	// Reason says why a task ended other than by its own exit.
	Reason string `json:"reason,omitempty"`
	// Devices are the accelerators the backend gave the task, in its own
	// naming (the Docker backend: GPU device ids).
	Devices  []string  `json:"devices,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Event is one timestamped status change or notable step.
type Event struct {
	Time    time.Time `json:"time"`
	Status  JobStatus `json:"status,omitempty"`
	Message string    `json:"message"`
}

// Job is a submitted job and all that happened to it.
type Job struct {
	ID          string    `json:"id"`
	Spec        Spec      `json:"spec"`
	Status      JobStatus `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	ImageRepo   string    `json:"image_repo,omitempty"`
	ImageDigest string    `json:"image_digest,omitempty"`
	Audit       []string  `json:"audit,omitempty"`
	Attempt     int       `json:"attempt"`
	Tasks       []Task    `json:"tasks"`
	Events      []Event   `json:"events"`
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	// ExitCode is the deciding task's exit code, 0 when completed.
	ExitCode *int `json:"exit_code,omitempty"`
	// AccessKey and SecretKey are the job's own object-store key, when
	// the emulator issues one per job (Config.Credentials).
	AccessKey string `json:"access_key,omitempty"`
	SecretKey string `json:"secret_key,omitempty"`
	// QueuePosition is 1 for the next job to start, 0 when not queued;
	// it is computed, never stored.
	QueuePosition int `json:"-"`
	// rev orders the store's writes of this job.
	rev uint64
}

// Clone is a deep copy: callers get copies, the manager keeps the live job.
func (j *Job) Clone() *Job {
	out := *j
	out.Spec.Command = append([]string(nil), j.Spec.Command...)
	if j.Spec.Env != nil {
		out.Spec.Env = make(map[string]string, len(j.Spec.Env))
		for k, v := range j.Spec.Env {
			out.Spec.Env[k] = v
		}
	}
	out.Audit = append([]string(nil), j.Audit...)
	out.Events = append([]Event(nil), j.Events...)
	out.Tasks = make([]Task, len(j.Tasks))
	for i, t := range j.Tasks {
		if t.ExitCode != nil {
			c := *t.ExitCode
			t.ExitCode = &c
		}
		t.Devices = append([]string(nil), t.Devices...)
		out.Tasks[i] = t
	}
	if j.ExitCode != nil {
		c := *j.ExitCode
		out.ExitCode = &c
	}
	return &out
}

// LogLine is one line of a task's output.
type LogLine struct {
	Task   int
	Time   time.Time
	Stderr bool
	Text   string
}

// HostName is task i's hostname on the job's network.
func HostName(j *Job, i int) string { return fmt.Sprintf("%s-%d", dnsName(j.Spec.Name), i) }

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsName turns a job's name into a DNS label.
func dnsName(name string) string {
	n := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if n == "" {
		n = "job"
	}
	if len(n) > 40 {
		n = strings.TrimRight(n[:40], "-")
	}
	return n
}
