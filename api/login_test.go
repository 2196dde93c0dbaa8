package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLoginCodeWorksOnceAndExpires(t *testing.T) {
	var l loginCodes
	now := time.Now()
	code, exp := l.mint(now)
	if !exp.After(now) || len(code) < 20 {
		t.Fatalf("code %q expires %s", code, exp)
	}
	if l.redeem("other", now) {
		t.Error("an unknown code was accepted")
	}
	if !l.redeem(code, now) || l.redeem(code, now) {
		t.Error("a code must work exactly once")
	}
	old, _ := l.mint(now)
	if l.redeem(old, now.Add(loginCodeTTL+time.Second)) {
		t.Error("an expired code was accepted")
	}
}

// The link from the client signs a browser in; its cookie then reads
// like the token, but a cookie write must carry a same-origin Origin.
func TestLoginLinkSetsASessionCookie(t *testing.T) {
	srv := httptest.NewServer(NewServer(fakeBackend{}, "tok"))
	defer srv.Close()
	link, err := NewClient(srv.URL, "tok").LoginURL(context.Background())
	if err != nil || !strings.HasPrefix(link, srv.URL+Prefix+LoginPath+"?code=") {
		t.Fatalf("LoginURL: %q %v", link, err)
	}
	if _, err := NewClient(srv.URL, "wrong").LoginURL(context.Background()); err == nil {
		t.Error("a login link was given without the token")
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if len(cs) != 1 || cs[0].Name != SessionCookie || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || strings.Contains(cs[0].Value, "tok") {
		t.Fatalf("cookie: %+v", cs)
	}
	req := func(method, origin string) int {
		r, _ := http.NewRequest(method, srv.URL+Prefix+"/status", nil)
		r.AddCookie(cs[0])
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := req("GET", ""); got != http.StatusOK {
		t.Errorf("GET with the cookie: %d", got)
	}
	if got := req("POST", ""); got != http.StatusForbidden {
		t.Errorf("POST with the cookie and no Origin: %d, want 403", got)
	}
	if got := req("POST", "http://elsewhere.example"); got != http.StatusForbidden {
		t.Errorf("POST with the cookie from another origin: %d, want 403", got)
	}
	// Same origin passes the checks and reaches the router (no POST /status).
	if got := req("POST", srv.URL); got != http.StatusMethodNotAllowed && got != http.StatusNotFound {
		t.Errorf("POST with the cookie from the same origin: %d, want it routed", got)
	}
}
