package jobs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// taskLog appends one task's output to its file, one line per entry:
// "<RFC3339Nano time> <O|E> <text>". Partial lines wait for their end.
type taskLog struct {
	mu      sync.Mutex
	f       *os.File
	partial [2][]byte
	// resume is the time of the last line stored before this writer opened:
	// after a restart the engine resends from there, and those lines are
	// already stored.
	resume time.Time
}

var _ TaskLog = (*taskLog)(nil)

func logPath(dir, jobID string, task int) string {
	return filepath.Join(dir, jobID, fmt.Sprintf("task-%d.log", task))
}

func openTaskLog(dir, jobID string, task int) (*taskLog, error) {
	p := logPath(dir, jobID, task)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("creating log dir: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening task log: %w", err)
	}
	return &taskLog{f: f, resume: lastLogTime(p)}, nil
}

// appendLines writes lines of the platform's own (audit reports) to a
// task's log, stamped now.
func appendLines(dir, jobID string, task int, lines []string) error {
	l, err := openTaskLog(dir, jobID, task)
	if err != nil {
		return err
	}
	l.resume = time.Time{}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, s := range lines {
		if err := l.write(0, []byte(now+" "+s+"\n")); err != nil {
			l.Close()
			return err
		}
	}
	return l.Close()
}

// lastLogTime reads the time of the last line, so a re-attached follower
// asks the engine only for what came after.
func lastLogTime(path string) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	// Only the tail: a log can be many GB, its last line is short.
	const tail = 1 << 20
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return time.Time{}
	}
	off := max(fi.Size()-tail, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return time.Time{}
	}
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	ts, _, _ := bytes.Cut(b, []byte(" "))
	t, _ := time.Parse(time.RFC3339Nano, string(ts))
	return t
}

// streamWriter is one of a task log's two streams.
type streamWriter struct {
	l   *taskLog
	idx int
}

func (w streamWriter) Write(p []byte) (int, error) {
	if err := w.l.write(w.idx, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (l *taskLog) Stdout() io.Writer { return streamWriter{l, 0} }
func (l *taskLog) Stderr() io.Writer { return streamWriter{l, 1} }
func (l *taskLog) Resume() time.Time { return l.resume }

// write stores the complete "<time> <text>" lines of p, keeping a partial
// last line for the next write.
func (l *taskLog) write(idx int, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	tag := byte('O')
	if idx == 1 {
		tag = 'E'
	}
	data := append(l.partial[idx], p...)
	l.partial[idx] = nil
	var buf bytes.Buffer
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			l.partial[idx] = append([]byte(nil), data...)
			break
		}
		line := data[:nl]
		data = data[nl+1:]
		ts, text, ok := bytes.Cut(line, []byte(" "))
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if !ok || err != nil {
			t, text = time.Now().UTC(), line
		}
		if !l.resume.IsZero() && !t.After(l.resume) {
			continue // already stored before a re-attach
		}
		buf.WriteString(t.UTC().Format(time.RFC3339Nano))
		buf.WriteByte(' ')
		buf.WriteByte(tag)
		buf.WriteByte(' ')
		buf.Write(text)
		buf.WriteByte('\n')
	}
	if buf.Len() == 0 {
		return nil
	}
	_, err := l.f.Write(buf.Bytes())
	return err
}

// Close stores what is left of partial lines and closes the file.
func (l *taskLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, p := range l.partial {
		if len(p) > 0 {
			tag := "O"
			if i == 1 {
				tag = "E"
			}
			fmt.Fprintf(l.f, "%s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), tag, p)
		}
	}
	l.f.Sync()
	return l.f.Close()
}

func parseLogLine(task int, b []byte) LogLine {
	l := LogLine{Task: task}
	ts, rest, _ := bytes.Cut(b, []byte(" "))
	l.Time, _ = time.Parse(time.RFC3339Nano, string(ts))
	tag, text, _ := bytes.Cut(rest, []byte(" "))
	l.Stderr = string(tag) == "E"
	l.Text = string(text)
	return l
}

// followFile sends each complete line of a task's log to fn. With follow,
// it keeps reading until done() says the task can write no more, and then
// drains what is left; a follower that goes away loses nothing stored.
func followFile(ctx context.Context, path string, task int, follow bool, done func() bool, fn func(LogLine) error) error {
	var f *os.File
	for {
		var err error
		f, err = os.Open(path)
		if err == nil {
			break
		}
		if !os.IsNotExist(err) || !follow || done() {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var pending []byte
	for {
		chunk, err := r.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			if ferr := fn(parseLogLine(task, bytes.TrimSuffix(pending, []byte("\n")))); ferr != nil {
				return ferr
			}
			pending = pending[:0]
			continue
		}
		if err != io.EOF {
			return err
		}
		if !follow {
			return nil
		}
		if done() {
			// One more read: the writer may have added lines before finishing.
			if _, err := r.Peek(1); err == nil {
				continue
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(150 * time.Millisecond):
		}
	}
}
