package api

import "testing"

func TestJobExitCode(t *testing.T) {
	code := func(i int) *int { return &i }
	for _, c := range []struct {
		j    Job
		want int
	}{
		{Job{Status: StatusCompleted, ExitCode: code(0)}, 0},
		{Job{Status: StatusFailed, ExitCode: code(7)}, 7},
		{Job{Status: StatusFailed}, ExitCodeError},
		{Job{Status: StatusFailed, ExitCode: code(0)}, ExitCodeError},
		{Job{Status: StatusCanceled, ExitCode: code(-1)}, ExitCodeError},
		{Job{Status: StatusTimeout, ExitCode: code(137)}, ExitCodeTimeout},
		{Job{Status: StatusAuditFailed}, ExitCodeAuditFailed},
	} {
		if got := JobExitCode(&c.j); got != c.want {
			t.Errorf("%s (task exit %v): %d, want %d", c.j.Status, c.j.ExitCode, got, c.want)
		}
	}
}
