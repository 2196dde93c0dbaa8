package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// JobBackend is the optional backend capability behind the job routes.
type JobBackend interface {
	SubmitJob(ctx context.Context, spec JobSpec) (*Job, error)
	Jobs(ctx context.Context, status, name string) ([]*Job, error)
	Job(ctx context.Context, id string) (*Job, error)
	StopJob(ctx context.Context, id string) (*Job, error)
	DeleteJob(ctx context.Context, id string) error
	// JobLogs sends stored lines of task (all tasks when < 0) to fn; with
	// follow it goes on until the job is final or ctx ends.
	JobLogs(ctx context.Context, id string, task int, follow bool, fn func(LogLine) error) error
}

func (s *Server) registerJobs() {
	b, ok := s.backend.(JobBackend)
	if !ok {
		return
	}
	s.create("POST /jobs", func(r *http.Request) (any, error) {
		var spec JobSpec
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			return nil, Invalidf("job spec: %v", err)
		}
		return b.SubmitJob(r.Context(), spec)
	})
	s.handle("GET /jobs", func(r *http.Request) (any, error) {
		js, err := b.Jobs(r.Context(), r.URL.Query().Get("status"), r.URL.Query().Get("name"))
		if js == nil {
			js = []*Job{}
		}
		return js, err
	})
	s.handle("GET /jobs/{id}", func(r *http.Request) (any, error) { return b.Job(r.Context(), r.PathValue("id")) })
	s.handle("POST /jobs/{id}/stop", func(r *http.Request) (any, error) { return b.StopJob(r.Context(), r.PathValue("id")) })
	s.handle("DELETE /jobs/{id}", func(r *http.Request) (any, error) {
		return struct {
			Deleted string `json:"deleted"`
		}{r.PathValue("id")}, b.DeleteJob(r.Context(), r.PathValue("id"))
	})
	// Logs stream as JSON lines, flushed as they come; with ?download=1
	// they come as a file (one task) or a zip archive (all tasks).
	s.mux.HandleFunc("GET "+Prefix+"/jobs/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		id, task, follow, err := logsQuery(r, b)
		if err != nil {
			writeError(w, err)
			return
		}
		if d := r.URL.Query().Get("download"); d == "1" || d == "true" {
			serveLogDownload(w, r, b, id, task)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		err = b.JobLogs(r.Context(), id, task, follow, func(l LogLine) error {
			if err := enc.Encode(l); err != nil {
				return err
			}
			return rc.Flush()
		})
		if err != nil && r.Context().Err() == nil {
			// Headers are gone: the error goes in the stream, as a last line.
			enc.Encode(LogLine{Task: -1, Text: "error: " + err.Error(), Stderr: true})
		}
	})
	// The same lines over a websocket, one JSON text message each, for the
	// console. A reconnecting page asks again and gets the whole log.
	s.mux.HandleFunc("GET "+Prefix+"/jobs/{id}/logs/ws", func(w http.ResponseWriter, r *http.Request) {
		id, task, follow, err := logsQuery(r, b)
		if err != nil {
			writeError(w, err)
			return
		}
		s.serveJobSocket(w, r, b, id, task, follow)
	})
}

// logsQuery reads the job id, ?task= and ?follow= of a logs request.
func logsQuery(r *http.Request, b JobBackend) (id string, task int, follow bool, err error) {
	task = -1
	if t := r.URL.Query().Get("task"); t != "" {
		if task, err = strconv.Atoi(t); err != nil || task < 0 {
			return "", 0, false, Invalidf("task: %q is not a task index", t)
		}
	}
	follow = r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"
	id = r.PathValue("id")
	if _, err := b.Job(r.Context(), id); err != nil {
		return "", 0, false, err
	}
	return id, task, follow, nil
}

// SubmitJob submits a job.
func (c *Client) SubmitJob(ctx context.Context, spec JobSpec) (*Job, error) {
	var j Job
	return &j, c.do(ctx, http.MethodPost, "/jobs", spec, &j)
}

// Jobs lists jobs, filtered by status and name when not empty.
func (c *Client) Jobs(ctx context.Context, status, name string) ([]*Job, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if name != "" {
		q.Set("name", name)
	}
	var js []*Job
	return js, c.do(ctx, http.MethodGet, "/jobs?"+q.Encode(), nil, &js)
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var j Job
	return &j, c.do(ctx, http.MethodGet, "/jobs/"+url.PathEscape(id), nil, &j)
}

// StopJob stops a queued or running job.
func (c *Client) StopJob(ctx context.Context, id string) (*Job, error) {
	var j Job
	return &j, c.do(ctx, http.MethodPost, "/jobs/"+url.PathEscape(id)+"/stop", nil, &j)
}

// DeleteJob deletes a finished job and its logs.
func (c *Client) DeleteJob(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/jobs/"+url.PathEscape(id), nil, nil)
}

// JobLogs streams a job's log lines to fn (task < 0: all tasks); with
// follow, until the job is final.
func (c *Client) JobLogs(ctx context.Context, id string, task int, follow bool, fn func(LogLine) error) error {
	q := url.Values{}
	if task >= 0 {
		q.Set("task", strconv.Itoa(task))
	}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.stream(ctx, "/jobs/"+url.PathEscape(id)+"/logs?"+q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decoding log line: %w", err)
		}
		if l.Task < 0 {
			return fmt.Errorf("log stream: %s", l.Text)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return sc.Err()
}
