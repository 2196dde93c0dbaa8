package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error classes. Backends wrap these (fmt.Errorf("job %q: %w", id, ErrNotFound))
// and the server maps them to HTTP statuses in exactly one place: statusOf.
var (
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid request")
	ErrConflict     = errors.New("conflict")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrUnavailable  = errors.New("not available")
	ErrAuditFailed  = errors.New("the image failed the audit")
)

var classes = []struct {
	err    error
	code   string
	status int
}{
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrInvalid, "invalid", http.StatusBadRequest},
	{ErrConflict, "conflict", http.StatusConflict},
	{ErrUnauthorized, "unauthorized", http.StatusUnauthorized},
	{ErrForbidden, "forbidden", http.StatusForbidden},
	{ErrUnavailable, "unavailable", http.StatusServiceUnavailable},
	{ErrAuditFailed, "audit_failed", http.StatusUnprocessableEntity},
}

// statusOf maps an error to its wire code and HTTP status.
func statusOf(err error) (string, int) {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.code, c.status
		}
	}
	return "internal", http.StatusInternalServerError
}

// errorOfStatus is the client's inverse of statusOf, so callers can use
// errors.Is(err, api.ErrNotFound) on what the client returns.
func errorOfStatus(status int) error {
	for _, c := range classes {
		if c.status == status {
			return c.err
		}
	}
	return nil
}

// AuditError refuses a job whose image has a stored failing verdict; the
// answer (422) carries the stored report.
type AuditError struct {
	Message string
	Lines   []string // the audit report, one line each
}

func (e *AuditError) Error() string { return e.Message }

// Unwrap makes it an ErrAuditFailed.
func (e *AuditError) Unwrap() error { return ErrAuditFailed }

// RemoteError is an error answered by the API.
type RemoteError struct {
	Status  int
	Code    string
	Message string
	Audit   []string // the audit report of an audit_failed answer
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap lets errors.Is match the error class of the HTTP status.
func (e *RemoteError) Unwrap() error { return errorOfStatus(e.Status) }

// Invalidf is a validation error naming the field and what is allowed.
func Invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}
