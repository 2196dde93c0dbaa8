package jobs

import (
	"errors"
	"fmt"
	"strings"
)

// Error classes of the core; the API maps them to statuses at its boundary.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid job")
)

// Invalidf is a validation error naming the field and what is allowed.
func Invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// AuditRefusedError refuses a job whose image has a stored failing
// verdict: no job is made.
type AuditRefusedError struct {
	Image, Digest string
	Verdict       Verdict
}

func (e *AuditRefusedError) Error() string {
	return fmt.Sprintf("image %s (%s) failed the audit (audited %s); fix it, push it again and resubmit:\n%s",
		e.Image, e.Digest, e.Verdict.AuditedAt.UTC().Format("2006-01-02T15:04:05Z07:00"), strings.Join(e.Verdict.Lines, "\n"))
}
