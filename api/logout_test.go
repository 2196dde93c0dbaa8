package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// signIn redeems a login link and returns the session cookie.
func signIn(t *testing.T, srv *httptest.Server) *http.Cookie {
	t.Helper()
	link, err := NewClient(srv.URL, "tok").LoginURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].MaxAge != int(SessionLifetime/time.Second) {
		t.Fatalf("cookie: %+v", cs)
	}
	return cs[0]
}

func withCookie(t *testing.T, method, url string, c *http.Cookie, origin string) *http.Response {
	t.Helper()
	r, _ := http.NewRequest(method, url, nil)
	r.AddCookie(c)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestLogoutEndsTheSession(t *testing.T) {
	srv := httptest.NewServer(NewServer(fakeBackend{}, "tok"))
	defer srv.Close()
	c := signIn(t, srv)
	other := signIn(t, srv) // another browser
	if got := withCookie(t, "GET", srv.URL+Prefix+"/status", c, "").StatusCode; got != 200 {
		t.Fatalf("signed in: %d", got)
	}
	// Logout is a write: a page of another origin cannot sign the user out.
	if got := withCookie(t, "POST", srv.URL+Prefix+LogoutPath, c, "http://elsewhere.example").StatusCode; got != http.StatusForbidden {
		t.Errorf("cross-origin logout: %d, want 403", got)
	}
	resp := withCookie(t, "POST", srv.URL+Prefix+LogoutPath, c, srv.URL)
	if resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].Name != SessionCookie || cs[0].MaxAge >= 0 {
		t.Errorf("logout should clear the cookie: %+v", cs)
	}
	// The old cookie value is worthless now, even if kept.
	if got := withCookie(t, "GET", srv.URL+Prefix+"/status", c, "").StatusCode; got != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", got)
	}
	if got := withCookie(t, "GET", srv.URL+Prefix+"/status", other, "").StatusCode; got != 200 {
		t.Errorf("another browser's session: %d", got)
	}
}

func TestSessionEndsAtRestartAndAfterItsLifetime(t *testing.T) {
	srv := httptest.NewServer(NewServer(fakeBackend{}, "tok"))
	c := signIn(t, srv)
	srv.Close()
	// A new server (the emulator restarted) with the same token.
	srv2 := httptest.NewServer(NewServer(fakeBackend{}, "tok"))
	defer srv2.Close()
	if got := withCookie(t, "GET", srv2.URL+Prefix+"/status", c, "").StatusCode; got != http.StatusUnauthorized {
		t.Errorf("a session from before the restart: %d, want 401", got)
	}
	var ss sessions
	now := time.Now()
	v, exp := ss.start(now)
	if !exp.Equal(now.Add(SessionLifetime)) || !ss.valid(v, now.Add(SessionLifetime-time.Minute)) {
		t.Errorf("session expiring %s", exp)
	}
	if ss.valid(v, now.Add(SessionLifetime+time.Second)) {
		t.Error("a session outlived its lifetime")
	}
}
