package registry

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
)

// apiError is an error the distribution spec names. Storage returns these
// (wrapped or not); writeError maps every error to a response in one place.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// Is matches any apiError of the same class, whatever its message.
func (e *apiError) Is(target error) bool {
	t, ok := target.(*apiError)
	return ok && t.code == e.code && t.status == e.status
}

var (
	errBlobUnknown         = &apiError{http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry"}
	errBlobUploadUnknown   = &apiError{http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"}
	errRangeInvalid        = &apiError{http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "content range does not continue the upload"}
	errDigestInvalid       = &apiError{http.StatusBadRequest, "DIGEST_INVALID", "provided digest did not match uploaded content"}
	errManifestUnknown     = &apiError{http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown to registry"}
	errManifestInvalid     = &apiError{http.StatusBadRequest, "MANIFEST_INVALID", "manifest invalid"}
	errManifestBlobUnknown = &apiError{http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", "manifest references a blob or manifest unknown to the repository"}
	errNameInvalid         = &apiError{http.StatusBadRequest, "NAME_INVALID", "invalid repository name"}
	errNameUnknown         = &apiError{http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry"}
	errTagInvalid          = &apiError{http.StatusBadRequest, "TAG_INVALID", "invalid tag"}
	errSizeInvalid         = &apiError{http.StatusBadRequest, "SIZE_INVALID", "content length does not match"}
	errPaginationInvalid   = &apiError{http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid number of results requested"}
	errUnsupported         = &apiError{http.StatusMethodNotAllowed, "UNSUPPORTED", "the operation is unsupported"}
	errNotFound            = &apiError{http.StatusNotFound, "NOT_FOUND", "unknown endpoint"}
	errTooLarge            = &apiError{http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large"}
	// ErrQuota is returned (wrapped) when a write would take the registry
	// over its configured disk quota.
	ErrQuota = &apiError{http.StatusRequestEntityTooLarge, "DENIED", "registry disk quota exceeded"}
)

// withMessage returns a copy of e carrying a more specific message.
func withMessage(e *apiError, msg string) *apiError {
	return &apiError{status: e.status, code: e.code, message: msg}
}

// writeError answers err as the spec's JSON error body; errors that are not
// an *apiError are internal.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		log.Error("registry: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{http.StatusInternalServerError, "UNKNOWN", "internal error"}
	} else {
		log.Debug("registry: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	w.Header().Del("Content-Length")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(struct {
		Errors []detail `json:"errors"`
	}{[]detail{{ae.code, ae.message}}})
}
