package jobs

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestTaskLogSplitsStreamsAndSkipsWhatItHas(t *testing.T) {
	dir := t.TempDir()
	l, err := openTaskLog(dir, "job-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	t1 := "2026-01-01T00:00:01.000000001Z"
	t2 := "2026-01-01T00:00:02.000000001Z"
	l.Stdout().Write([]byte(t1 + " hello\n" + t2 + " par"))
	l.Stdout().Write([]byte("tial\n"))
	l.Stderr().Write([]byte(t2 + " oops\n"))
	l.Close()

	// A re-attached writer asks for lines since the last; repeats are dropped.
	l, _ = openTaskLog(dir, "job-1", 0)
	if want, _ := time.Parse(time.RFC3339Nano, t2); !l.resume.Equal(want) {
		t.Errorf("resume %v", l.resume)
	}
	l.Stdout().Write([]byte(t1 + " hello\n" + "2026-01-01T00:00:03Z again\n"))
	l.Close()

	var got []string
	followFile(context.Background(), logPath(dir, "job-1", 0), 0, false, func() bool { return true }, func(l LogLine) error {
		s := l.Text
		if l.Stderr {
			s = "E:" + s
		}
		got = append(got, s)
		return nil
	})
	if strings.Join(got, "|") != "hello|partial|E:oops|again" {
		t.Errorf("lines %q", got)
	}
}

func TestFollowWaitsForLinesUntilDone(t *testing.T) {
	dir := t.TempDir()
	l, _ := openTaskLog(dir, "j", 1)
	done := make(chan struct{})
	var got []string
	finished := make(chan error)
	go func() {
		finished <- followFile(context.Background(), logPath(dir, "j", 1), 1, true, func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}, func(l LogLine) error { got = append(got, l.Text); return nil })
	}()
	l.Stdout().Write([]byte("2026-01-01T00:00:01Z one\n"))
	time.Sleep(300 * time.Millisecond)
	l.Stdout().Write([]byte("2026-01-01T00:00:02Z two\n"))
	l.Close()
	close(done)
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "one,two" {
		t.Errorf("followed %q", got)
	}
}
