package emulator

import (
	"encoding/xml"
	"log/slog"
	"net/http"
	"time"
)

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack (live logs,
// websockets) through the recorder.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequests logs one line per request. Only the path is logged: query
// strings can carry presigned signatures.
func logRequests(log *slog.Logger, service string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		log.Info("request", "service", service, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "bytes", rec.bytes, "dur", time.Since(start).Round(time.Microsecond).String(), "remote", r.RemoteAddr)
	})
}

// notAvailableS3 answers every S3 request with S3's XML NotImplemented error,
// so clients show a clear message instead of misbehaving.
func notAvailableS3() http.Handler {
	type s3Error struct {
		XMLName xml.Name `xml:"Error"`
		Code    string   `xml:"Code"`
		Message string   `xml:"Message"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotImplemented)
		w.Write([]byte(xml.Header))
		xml.NewEncoder(w).Encode(s3Error{Code: "NotImplemented", Message: "the malocal object store is not available yet in this build"})
	})
}

// notAvailableRegistry answers with the distribution spec's JSON error.
func notAvailableRegistry() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotImplemented)
		w.Write([]byte(`{"errors":[{"code":"UNSUPPORTED","message":"the malocal registry is not available yet in this build"}]}` + "\n"))
	})
}
