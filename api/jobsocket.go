package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// MetricMessage is a websocket message carrying a resource sample; log
// lines on the same socket are LogLine messages.
type MetricMessage struct {
	Metric MetricSample `json:"metric"`
}

const (
	wsWriteWait = 10 * time.Second
	wsPongWait  = 60 * time.Second
	wsPingEvery = wsPongWait / 2
)

// upgrader accepts same-origin upgrades only (authorize has refused the
// others already; this is the second lock on the door).
var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 16 << 10,
	CheckOrigin: func(r *http.Request) bool {
		o := r.Header.Get("Origin")
		return o == "" || sameOrigin(o, r.Host)
	},
}

// serveJobSocket sends a job's log lines (one task's, or all with task < 0)
// as JSON text messages; with ?metrics=1 it also sends the job's resource
// samples, stored ones first, as MetricMessage. It closes with 1000 at the
// end of the log (with follow, when the job is final).
func (s *Server) serveJobSocket(w http.ResponseWriter, r *http.Request, b JobBackend, id string, task int, follow bool) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the error
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// The page sends nothing; reading handles pongs and notices a close.
	c.SetReadLimit(4 << 10)
	c.SetReadDeadline(time.Now().Add(wsPongWait))
	c.SetPongHandler(func(string) error { return c.SetReadDeadline(time.Now().Add(wsPongWait)) })
	go func() {
		defer cancel()
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}()
	var mu sync.Mutex // gorilla allows one writer at a time
	write := func(v any) error {
		mu.Lock()
		defer mu.Unlock()
		c.SetWriteDeadline(time.Now().Add(wsWriteWait))
		return c.WriteJSON(v)
	}
	closeWith := func(code int, text string) {
		mu.Lock()
		defer mu.Unlock()
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(wsWriteWait))
	}
	go func() {
		t := time.NewTicker(wsPingEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				mu.Lock()
				err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait))
				mu.Unlock()
				if err != nil {
					cancel()
					return
				}
			}
		}
	}()
	if mb, ok := s.backend.(MetricsBackend); ok && isTrue(r.URL.Query().Get("metrics")) {
		go mb.WatchMetrics(ctx, id, func(m MetricSample) error { return write(MetricMessage{Metric: m}) })
	}
	err = b.JobLogs(ctx, id, task, follow, func(l LogLine) error { return write(l) })
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		write(LogLine{Task: -1, Text: "error: " + err.Error(), Stderr: true})
		closeWith(websocket.CloseInternalServerErr, "log stream failed")
		return
	}
	closeWith(websocket.CloseNormalClosure, "end of log")
	// Wait briefly for the page's close reply so the code reaches it.
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

func isTrue(v string) bool { return v == "1" || v == "true" }
