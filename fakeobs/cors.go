package fakeobs

import (
	"io"
	"net/http"
	"strings"
)

// noCORS removes the Access-Control-* headers gofakes3 puts on every
// answer (Allow-Origin: *): our buckets have no CORS configuration, so,
// as S3 does then, no page of another origin may read what a presigned
// URL returns.
func noCORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&corsStripper{ResponseWriter: w}, r)
	})
}

type corsStripper struct {
	http.ResponseWriter
	done bool
}

func (c *corsStripper) strip() {
	if c.done {
		return
	}
	c.done = true
	for k := range c.Header() {
		if strings.HasPrefix(k, "Access-Control-") {
			c.Header().Del(k)
		}
	}
}

func (c *corsStripper) WriteHeader(code int) { c.strip(); c.ResponseWriter.WriteHeader(code) }

func (c *corsStripper) Write(p []byte) (int, error) { c.strip(); return c.ResponseWriter.Write(p) }

func (c *corsStripper) ReadFrom(src io.Reader) (int64, error) {
	c.strip()
	return readFrom(c.ResponseWriter, src)
}

func (c *corsStripper) Unwrap() http.ResponseWriter { return c.ResponseWriter }
