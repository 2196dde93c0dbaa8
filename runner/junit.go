package runner

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/emulator"
)

// LogTailLines is how many of a failed task's last log lines its JUnit
// failure holds.
const LogTailLines = 50

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// writeJUnit writes the report for the final job j to Options.JUnit.
func (r *run) writeJUnit(ctx context.Context, j *api.Job) error {
	tails := make(map[int][]string, len(j.Tasks))
	for _, t := range j.Tasks {
		if taskFailed(j, t) && j.Status != api.StatusAuditFailed {
			tail, err := r.logTail(ctx, j.ID, t.Index)
			if err != nil {
				return err
			}
			tails[t.Index] = tail
		}
	}
	b, err := JUnit(j, tails)
	if err != nil {
		return err
	}
	if dir := filepath.Dir(r.o.JUnit); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return emulator.WriteFileAtomic(r.o.JUnit, b, 0o644)
}

// logTail returns the last LogTailLines lines of a task's log.
func (r *run) logTail(ctx context.Context, id string, task int) ([]string, error) {
	var tail []string
	err := r.t.client.JobLogs(ctx, id, task, false, func(l api.LogLine) error {
		tail = append(tail, l.Text)
		if len(tail) > LogTailLines {
			tail = tail[1:]
		}
		return nil
	})
	return tail, err
}

func taskFailed(j *api.Job, t api.Task) bool {
	if t.ExitCode != nil {
		return *t.ExitCode != 0
	}
	return j.Status != api.StatusCompleted
}

// JUnit is the JUnit XML report of a final job: one test case per task,
// a failure for each task that did not exit 0, with its log tail (tails,
// by task index) and, for a failed audit, the audit's reasons.
func JUnit(j *api.Job, tails map[int][]string) ([]byte, error) {
	s := junitSuite{Name: "malocal run " + j.Spec.Name, Time: seconds(j.Started, j.Finished)}
	if !j.Created.IsZero() {
		s.Timestamp = j.Created.UTC().Format(time.RFC3339)
	}
	for _, t := range j.Tasks {
		c := junitCase{Name: fmt.Sprintf("task %d (%s)", t.Index, t.Host), Classname: "malocal." + j.Spec.Name, Time: seconds(t.Started, t.Finished)}
		if taskFailed(j, t) {
			f := &junitFailure{Type: string(j.Status)}
			switch {
			case j.Status == api.StatusAuditFailed:
				f.Message = "the image failed the audit"
				f.Text = strings.Join(j.Audit, "\n")
			case t.ExitCode != nil:
				f.Message = fmt.Sprintf("exit code %d", *t.ExitCode)
			default:
				f.Message = "task " + t.Status
			}
			if j.Status == api.StatusTimeout {
				f.Message += ": " + j.Reason
			}
			if tail := tails[t.Index]; len(tail) > 0 {
				f.Text = strings.Join(tail, "\n")
			}
			c.Failure = f
			s.Failures++
		}
		s.Cases = append(s.Cases, c)
	}
	s.Tests = len(s.Cases)
	b, err := xml.MarshalIndent(junitSuites{Suites: []junitSuite{s}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

func seconds(from, to time.Time) string {
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return "0"
	}
	return fmt.Sprintf("%.3f", to.Sub(from).Seconds())
}
