package api

import (
	"encoding/json"
	"fmt"
	"strconv"
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

// Policies decide a job's success from its tasks' exits.
const (
	PolicyAll    = "all"    // every task must exit 0; one failure fails the job
	PolicyIndex0 = "index0" // task 0 decides; the others are then stopped
)

// DefaultPort is the port every BATCH_CUSTOM{k}_HOSTS entry names.
const DefaultPort = 2222

// JobSpec is what a user submits: the console's form.
type JobSpec struct {
	Name string `json:"name"`
	// Description is free text shown in the job list and on its page.
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
	Timeout     Duration          `json:"timeout,omitempty"`
	Policy      string            `json:"policy,omitempty"`
	Retries     int               `json:"retries,omitempty"`
	Port        int               `json:"port,omitempty"`
	Keep        bool              `json:"keep,omitempty"`
}

// Flavor is the per-node resources. Zero means no limit.
type Flavor struct {
	CPUs   float64  `json:"cpus,omitempty"`
	Memory ByteSize `json:"memory,omitempty"`
	GPUs   int      `json:"gpus,omitempty"`
}

// Task is one container of a job.
type Task struct {
	Index     int       `json:"index"`
	Host      string    `json:"host"`
	Container string    `json:"container,omitempty"`
	Status    string    `json:"status"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	GPUs      []string  `json:"gpus,omitempty"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
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
	Spec        JobSpec   `json:"spec"`
	Status      JobStatus `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	ImageRepo   string    `json:"image_repo,omitempty"`
	ImageDigest string    `json:"image_digest,omitempty"`
	Audit       []string  `json:"audit,omitempty"`
	Attempt     int       `json:"attempt"`
	Network     string    `json:"network,omitempty"`
	Tasks       []Task    `json:"tasks"`
	Events      []Event   `json:"events"`
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	// QueuePosition is 1 for the next job to start, 0 when not queued.
	QueuePosition int `json:"queue_position,omitempty"`
	// ExitCode is the failing task's exit code, 0 when completed.
	ExitCode *int `json:"exit_code,omitempty"`
}

// Duration is a time.Duration that reads and writes as "1h30m" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "90s", "1h" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration: want a string like \"90m\" or seconds")
		}
		*d = Duration(time.Duration(n * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// ByteSize is a memory size that reads "4g", "512m" or a number of bytes.
type ByteSize int64

// ParseByteSize reads "4g", "512Mi", "1024" (bytes).
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		case 't':
			mult, t = 1<<40, t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("memory %q: want a size like 4g, 512m or a number of bytes", s)
	}
	return ByteSize(f * float64(mult)), nil
}

// MarshalJSON writes the size in bytes.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(int64(b)) }

// UnmarshalJSON reads a number of bytes or a string like "4g".
func (b *ByteSize) UnmarshalJSON(p []byte) error {
	var n int64
	if err := json.Unmarshal(p, &n); err == nil {
		*b = ByteSize(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(p, &s); err != nil {
		return fmt.Errorf("memory: want a size like \"4g\" or bytes")
	}
	v, err := ParseByteSize(s)
	*b = v
	return err
}

// LogLine is one line of a task's output.
type LogLine struct {
	Task   int       `json:"task"`
	Time   time.Time `json:"time"`
	Stderr bool      `json:"stderr,omitempty"`
	Text   string    `json:"text"`
}
