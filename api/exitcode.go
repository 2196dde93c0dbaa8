package api

// Exit codes of the commands that wait for a job to end (`malocal job
// submit --wait` or `--follow`, `malocal run`), besides a failing task's
// own code.
const (
	ExitCodeError       = 1   // the job failed without a task exit code, or the run could not be set up
	ExitCodeAuditFailed = 3   // the image failed the audit
	ExitCodeTimeout     = 124 // the job reached its time limit (as timeout(1) exits)
	ExitCodeInterrupted = 130 // the command was interrupted (Ctrl-C)
)

// JobExitCode maps a final job to the exit code of a command that waited
// for it: 0 when it completed, ExitCodeTimeout, ExitCodeAuditFailed, else
// the failing task's exit code when it is above 0, else ExitCodeError.
func JobExitCode(j *Job) int {
	switch j.Status {
	case StatusCompleted:
		return 0
	case StatusTimeout:
		return ExitCodeTimeout
	case StatusAuditFailed:
		return ExitCodeAuditFailed
	}
	if j.ExitCode != nil && *j.ExitCode > 0 {
		return *j.ExitCode
	}
	return ExitCodeError
}
