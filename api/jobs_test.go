package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// jobsBackend serves one job with three log lines.
type jobsBackend struct{ fakeBackend }

func (jobsBackend) SubmitJob(context.Context, JobSpec) (*Job, error) {
	return nil, Invalidf("nodes: bad")
}
func (jobsBackend) Jobs(context.Context, string, string) ([]*Job, error) { return nil, nil }
func (jobsBackend) Job(_ context.Context, id string) (*Job, error) {
	if id != "job-1" {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return &Job{ID: id}, nil
}
func (jobsBackend) StopJob(context.Context, string) (*Job, error) { return nil, nil }
func (jobsBackend) DeleteJob(context.Context, string) error       { return nil }
func (jobsBackend) JobLogs(_ context.Context, _ string, task int, _ bool, fn func(LogLine) error) error {
	for i := range 3 {
		if err := fn(LogLine{Task: max(task, 0), Text: fmt.Sprintf("line %d", i)}); err != nil {
			return err
		}
	}
	return nil
}

func TestJobLogsOverHTTPAndWebsocket(t *testing.T) {
	srv := httptest.NewServer(NewServer(jobsBackend{}, "tok"))
	defer srv.Close()
	c := NewClient(srv.URL, "tok")
	var got []string
	if err := c.JobLogs(context.Background(), "job-1", 2, true, func(l LogLine) error {
		got = append(got, fmt.Sprintf("%d:%s", l.Task, l.Text))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "2:line 0,2:line 1,2:line 2" {
		t.Errorf("http stream: %q", got)
	}
	if err := c.JobLogs(context.Background(), "job-9", -1, false, func(LogLine) error { return nil }); err == nil {
		t.Error("logs of a missing job")
	}

	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/v1/jobs/job-1/logs/ws"
	ws, _, err := websocket.DefaultDialer.Dial(wsURL+"?follow=1", http.Header{"Authorization": {"Bearer tok"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := range 3 {
		var l LogLine
		if err := ws.ReadJSON(&l); err != nil || l.Text != fmt.Sprintf("line %d", i) {
			t.Fatalf("ws line %d: %+v %v", i, l, err)
		}
	}
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("end of ws log: %v", err)
	}

	// A page from another origin may not open the socket.
	_, resp, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Authorization": {"Bearer tok"}, "Origin": {"http://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin websocket: %v", err)
	}
}
