package jobs

import "fmt"

// outcome is how a run of a job ended.
type outcome struct {
	status JobStatus
	code   int
	reason string
}

// decide applies the job's success policy to its tasks: ok is false while
// the tasks' exits so far decide nothing. It is the one place the policy
// is coded; backends only report exits.
func decide(p Policy, tasks []Task) (outcome, bool) {
	if p == PolicyIndex0 {
		if len(tasks) == 0 || !tasks[0].Status.Final() || tasks[0].ExitCode == nil {
			return outcome{}, false
		}
		return exitOutcome(tasks[0]), true
	}
	done := 0
	for _, t := range tasks {
		if !t.Status.Final() || t.ExitCode == nil {
			continue
		}
		if *t.ExitCode != 0 {
			return exitOutcome(t), true
		}
		done++
	}
	if done == len(tasks) {
		return outcome{status: StatusCompleted}, true
	}
	return outcome{}, false
}

func exitOutcome(t Task) outcome {
	code := *t.ExitCode
	if code == 0 {
		return outcome{status: StatusCompleted}
	}
	reason := fmt.Sprintf("task %d exited with code %d", t.Index, code)
	if t.Reason != "" {
		reason = fmt.Sprintf("task %d's %s", t.Index, t.Reason)
	}
	return outcome{status: StatusFailed, code: code, reason: reason}
}
