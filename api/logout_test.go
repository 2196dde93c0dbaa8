package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

// A session survives a restart (a new server with the same token), ends
// after its lifetime, and a signed-out one stays ended across a restart
// when the revocations are kept.
func TestSessionAcrossRestartsAndAfterItsLifetime(t *testing.T) {
	revoked := &memRevoked{}
	newSrv := func(token string) *httptest.Server {
		s := NewServer(fakeBackend{}, token)
		s.SetRevokedSessions(revoked)
		return httptest.NewServer(s)
	}
	srv := newSrv("tok")
	c := signIn(t, srv)
	gone := signIn(t, srv)
	if got := withCookie(t, "POST", srv.URL+Prefix+LogoutPath, gone, srv.URL).StatusCode; got != 200 {
		t.Fatalf("logout: %d", got)
	}
	srv.Close()
	srv2 := newSrv("tok")
	defer srv2.Close()
	if got := withCookie(t, "GET", srv2.URL+Prefix+"/status", c, "").StatusCode; got != 200 {
		t.Errorf("a session from before the restart: %d, want 200", got)
	}
	if got := withCookie(t, "GET", srv2.URL+Prefix+"/status", gone, "").StatusCode; got != http.StatusUnauthorized {
		t.Errorf("a signed-out session after the restart: %d, want 401", got)
	}
	srv3 := newSrv("new-token")
	defer srv3.Close()
	if got := withCookie(t, "GET", srv3.URL+Prefix+"/status", c, "").StatusCode; got != http.StatusUnauthorized {
		t.Errorf("a session after the token changed: %d, want 401", got)
	}

	ss := newSessions("tok")
	now := time.Now()
	v, exp := ss.start(now)
	if exp.Sub(now) > SessionLifetime || !ss.valid(v, now.Add(SessionLifetime-time.Minute)) {
		t.Errorf("session expiring %s", exp)
	}
	if ss.valid(v, now.Add(SessionLifetime+time.Second)) {
		t.Error("a session outlived its lifetime")
	}
	flip := "0"
	if strings.HasSuffix(v, "0") {
		flip = "1"
	}
	if ss.valid(v[:len(v)-1]+flip, now) || ss.valid(strings.Replace(v, ".", ".9", 1), now) {
		t.Error("a forged cookie was accepted")
	}
}
