package netguard

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Default timeouts of NewServer.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	DefaultBodyGrace     = 30 * time.Second
	DefaultMinBodyRate   = 1024 // bytes per second
)

// Limits are a server's timeouts; a zero field takes its default.
type Limits struct {
	// HeaderTimeout bounds the time to read a request's headers, from
	// the first byte of a new connection or of the next request.
	HeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no new request.
	IdleTimeout time.Duration
	// BodyGrace and MinBodyRate bound a request body's progress: after
	// reading n bytes, the next byte must arrive before
	// start + BodyGrace + n/MinBodyRate, so a body sent a byte at a time
	// is cut off while a slow but steady upload goes on.
	BodyGrace   time.Duration
	MinBodyRate int64
}

func (l Limits) withDefaults() Limits {
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = DefaultHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.BodyGrace <= 0 {
		l.BodyGrace = DefaultBodyGrace
	}
	if l.MinBodyRate <= 0 {
		l.MinBodyRate = DefaultMinBodyRate
	}
	return l
}

// Serve serves ln with srv, telling ln which connections are idle.
func Serve(srv *http.Server, ln *Listener) error {
	srv.ConnState = ln.ConnState
	return srv.Serve(ln)
}

// NewServer returns a server of h with the limits' timeouts. No write
// timeout is set: downloads and followed logs may last; a client that
// stops reading holds one connection of its listener's bound.
func NewServer(h http.Handler, l Limits) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           GuardBody(h, l),
		ReadHeaderTimeout: l.HeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
	}
}

// GuardBody cuts off a request whose body arrives slower than the limits
// allow. It must wrap the handler that the http.Server calls, so that it
// can set the connection's read deadline.
func GuardBody(h http.Handler, l Limits) http.Handler {
	l = l.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &progressBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), l: l}
		}
		h.ServeHTTP(w, r)
	})
}

// ErrSlowBody is the error a handler reads from a body that came too slowly.
var ErrSlowBody = errors.New("request body arrived too slowly")

type progressBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	l     Limits
	n     int64
	noDL  bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	if !b.noDL {
		due := b.start.Add(b.l.BodyGrace + time.Duration(b.n)*time.Second/time.Duration(b.l.MinBodyRate))
		if err := b.rc.SetReadDeadline(due); err != nil {
			b.noDL = true // not a plain connection (e.g. a test recorder)
		}
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF && !b.noDL {
		// The server reads on in the background from here to notice a
		// client that goes away: no deadline may cut the handler short.
		b.rc.SetReadDeadline(time.Time{})
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %d bytes in %s, below %d bytes/s after the first %s", ErrSlowBody,
			b.n, time.Since(b.start).Round(time.Millisecond), b.l.MinBodyRate, b.l.BodyGrace)
	}
	return n, err
}
