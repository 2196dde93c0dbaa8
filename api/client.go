package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to a running emulator's API. It imports no server code.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient replaces the default HTTP client.
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// NewClient returns a client for the API at addr ("127.0.0.1:7080" or a URL).
func NewClient(addr, token string, opts ...ClientOption) *Client {
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &Client{base: base, token: token, http: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Status returns the emulator's services and their readiness.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/status", nil, &s)
}

// do is the one request helper every accessor goes through.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, c.http, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, path, err)
	}
	return nil
}

// stream is a GET whose body the caller reads as it comes, with no
// overall timeout (a followed log lasts as long as the job).
func (c *Client) stream(ctx context.Context, path string) (*http.Response, error) {
	h := *c.http
	h.Timeout = 0
	return c.send(ctx, &h, http.MethodGet, path, nil)
}

// send makes one request and turns an error status into a *RemoteError.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+Prefix+path, body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.roundTrip(hc, req)
}

// roundTrip sends req with the token and turns an error status into a
// *RemoteError.
func (c *Client) roundTrip(hc *http.Client, req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot reach the malocal API at %s (is `malocal up` running?): %v", ErrUnavailable, c.base, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("%s %s: HTTP %d: %s", req.Method, strings.TrimPrefix(req.URL.Path, Prefix), resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return nil, &RemoteError{Status: resp.StatusCode, Code: e.Code, Message: e.Message, Audit: e.Audit}
	}
	return resp, nil
}
