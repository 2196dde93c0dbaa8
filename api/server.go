package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Backend is what the API serves. Services add optional capabilities as
// their own interfaces, which the server type-asserts when it registers
// their routes, so this interface stays small.
type Backend interface {
	Status(ctx context.Context) (Status, error)
}

// Server is the REST API's HTTP handler.
type Server struct {
	backend  Backend
	token    string
	mux      *http.ServeMux
	logins   loginCodes
	sessions sessions
}

// NewServer returns the API handler. Every route requires the bearer
// token or the console's session cookie; writes and websocket upgrades
// must come from the same origin.
func NewServer(b Backend, token string) *Server {
	s := &Server{backend: b, token: token, mux: http.NewServeMux(), sessions: newSessions(token)}
	s.handle("GET /status", func(r *http.Request) (any, error) { return b.Status(r.Context()) })
	// Routes of later services register here, each behind its own optional
	// backend interface.
	s.registerImages()
	s.registerAudit()
	s.registerJobs()
	s.registerMetrics()
	s.registerObjects()
	s.create("POST /login-links", func(*http.Request) (any, error) { return s.NewLoginLink(), nil })
	s.mux.HandleFunc("POST "+Prefix+LogoutPath, s.logout)
	s.mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no API route %s %s", ErrNotFound, r.Method, r.URL.Path))
	})
	return s
}

// handle registers a route whose handler returns a value to encode as JSON.
func (s *Server) handle(pattern string, h func(*http.Request) (any, error)) {
	s.route(pattern, http.StatusOK, h)
}

// create registers a route that makes a resource: 201 on success.
func (s *Server) create(pattern string, h func(*http.Request) (any, error)) {
	s.route(pattern, http.StatusCreated, h)
}

func (s *Server) route(pattern string, status int, h func(*http.Request) (any, error)) {
	method, path, _ := strings.Cut(pattern, " ")
	s.mux.HandleFunc(method+" "+Prefix+path, func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	})
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == Prefix+LoginPath {
		s.login(w, r) // the one route a signed-out browser may use
		return
	}
	if err := s.authorize(r); err != nil {
		writeError(w, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorize(r *http.Request) error {
	if !isSafeMethod(r.Method) || r.Header.Get("Upgrade") != "" {
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
			return fmt.Errorf("%w: cross-origin request from %s refused", ErrForbidden, o)
		}
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1 {
		return nil
	}
	if s.hasSession(r) {
		// Browsers send Origin on every write and upgrade; one without it
		// did not come from the console.
		if (!isSafeMethod(r.Method) || r.Header.Get("Upgrade") != "") && r.Header.Get("Origin") == "" {
			return fmt.Errorf("%w: a console write must carry its Origin header", ErrForbidden)
		}
		return nil
	}
	return fmt.Errorf("%w: missing or wrong API token (the CLI reads it from the data dir's api-token file; send it as `Authorization: Bearer <token>`; in a browser, open the login URL that `malocal ui` prints)", ErrUnauthorized)
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == host
}

func writeError(w http.ResponseWriter, err error) {
	code, status := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError && errors.Is(err, context.Canceled) {
		msg = "request canceled"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := ErrorBody{Code: code, Message: msg}
	var ae *AuditError
	if errors.As(err, &ae) {
		body.Audit = ae.Lines
	}
	json.NewEncoder(w).Encode(body)
}
