package api

import (
	"archive/zip"
	"bufio"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// serveLogDownload answers GET /jobs/{id}/logs?download=1: one task's
// whole log as a text file (with ?task=), else every task's log in one zip
// archive (task-0.log, task-1.log, …). The files hold the lines as
// `malocal job logs --task i` prints them.
func serveLogDownload(w http.ResponseWriter, r *http.Request, b JobBackend, id string, task int) {
	j, err := b.Job(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	name := fileSafe(j.Spec.Name)
	if name == "" {
		name = fileSafe(j.ID)
	}
	if task >= j.Spec.Nodes && j.Spec.Nodes > 0 {
		writeError(w, Invalidf("task: the job has tasks 0 to %d, not %d", j.Spec.Nodes-1, task))
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	if task >= 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-task-%d.log"`, name, task))
		bw := bufio.NewWriterSize(w, 64<<10)
		err := b.JobLogs(r.Context(), id, task, false, func(l LogLine) error {
			_, err := bw.WriteString(l.Text + "\n")
			return err
		})
		if err == nil {
			err = bw.Flush()
		}
		if err != nil && r.Context().Err() == nil {
			// Headers are gone: the error ends the file, where it shows.
			fmt.Fprintf(w, "\nmalocal: the log is incomplete: %v\n", err)
		}
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-logs.zip"`, name))
	zw := zip.NewWriter(w)
	for i := 0; i < max(j.Spec.Nodes, 1); i++ {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("task-%d.log", i), Method: zip.Deflate, Modified: time.Now()})
		if err != nil {
			return
		}
		bw := bufio.NewWriterSize(f, 64<<10)
		err = b.JobLogs(r.Context(), id, i, false, func(l LogLine) error {
			_, err := bw.WriteString(l.Text + "\n")
			return err
		})
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			bw.Flush()
			fmt.Fprintf(f, "\nmalocal: the log is incomplete: %v\n", err)
		}
	}
	zw.Close()
}

// fileSafe keeps letters, digits, '.', '-' and '_' of a name for a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// DownloadLogs writes a job's logs as the download route gives them: one
// task's log (task >= 0) or a zip archive of all tasks.
func (c *Client) DownloadLogs(ctx context.Context, id string, task int, w io.Writer) (filename string, err error) {
	q := url.Values{"download": {"1"}}
	if task >= 0 {
		q.Set("task", strconv.Itoa(task))
	}
	resp, err := c.stream(ctx, "/jobs/"+url.PathEscape(id)+"/logs?"+q.Encode())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, p, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		filename = p["filename"]
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return filename, fmt.Errorf("downloading the logs of %s: %w", id, err)
	}
	return filename, nil
}
