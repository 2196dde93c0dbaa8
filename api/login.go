package api

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// The console signs in as Jupyter does: `malocal up` logs, and `malocal ui`
// asks for, a login URL carrying a one-time code. Redeeming it sets an
// HttpOnly, SameSite=Strict cookie, so no secret is ever in a page or in
// script reach, and other sites' pages cannot send it. A session lasts
// 12 hours at most, ends when the emulator restarts, and ends at once on
// POST /logout (the console's "Sign out").
const (
	// SessionCookie is the console's cookie.
	SessionCookie = "malocal_session"
	// LoginPath is where a login URL points, under Prefix.
	LoginPath = "/login"
	// loginCodeTTL is how long an unused code stays valid.
	loginCodeTTL = 24 * time.Hour
	// SessionLifetime bounds a console session; a session also ends when
	// the emulator restarts and when the browser signs out.
	SessionLifetime = 12 * time.Hour
	// LogoutPath signs the console out (POST), under Prefix.
	LogoutPath = "/logout"
)

// LoginLink is the answer of POST /login-links.
type LoginLink struct {
	// Path is the login URL's path and query, to put after the API's address.
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}

// loginCodes are the unredeemed one-time codes.
type loginCodes struct {
	mu    sync.Mutex
	codes map[string]time.Time // code → expiry
}

func (l *loginCodes) mint(now time.Time) (string, time.Time) {
	code := rand.Text()
	exp := now.Add(loginCodeTTL)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.codes == nil {
		l.codes = map[string]time.Time{}
	}
	for c, e := range l.codes {
		if now.After(e) {
			delete(l.codes, c)
		}
	}
	l.codes[code] = exp
	return code, exp
}

// redeem consumes code: true once, while it is valid.
func (l *loginCodes) redeem(code string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	exp, ok := l.codes[code]
	delete(l.codes, code)
	return ok && !now.After(exp)
}

// NewLoginLink mints a one-time login code and returns the URL's path.
func (s *Server) NewLoginLink() LoginLink {
	code, exp := s.logins.mint(time.Now())
	return LoginLink{Path: Prefix + LoginPath + "?" + url.Values{"code": {code}}.Encode(), Expires: exp}
}

// sessions are the console's signed-in browsers: random values kept in
// memory only, so every session ends when the emulator restarts, each
// after SessionLifetime at most, and one at sign-out.
type sessions struct {
	mu  sync.Mutex
	all map[string]time.Time // value → expiry
}

func (ss *sessions) start(now time.Time) (string, time.Time) {
	v := rand.Text() + rand.Text()
	exp := now.Add(SessionLifetime)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.all == nil {
		ss.all = map[string]time.Time{}
	}
	for k, e := range ss.all {
		if now.After(e) {
			delete(ss.all, k)
		}
	}
	ss.all[v] = exp
	return v, exp
}

func (ss *sessions) valid(v string, now time.Time) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	exp, ok := ss.all[v]
	if ok && now.After(exp) {
		delete(ss.all, v)
		return false
	}
	return ok
}

func (ss *sessions) end(v string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.all, v)
}

func (s *Server) hasSession(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && s.sessions.valid(c.Value, time.Now())
}

// login redeems a code: it sets the session cookie and sends the browser
// to the console; a used or unknown code lands on the console's sign-in
// notice.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !s.logins.redeem(r.URL.Query().Get("code"), time.Now()) {
		http.Redirect(w, r, "/#/signin?expired=1", http.StatusSeeOther)
		return
	}
	v, _ := s.sessions.start(time.Now())
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: v, Path: "/",
		MaxAge: int(SessionLifetime / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// LogoutResult is the answer of POST /logout.
type LogoutResult struct {
	SignedOut bool `json:"signed_out"` // a console session was ended
}

// logout ends the request's console session, if any, and clears its
// cookie. A bearer-token client may call it too: it has no session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	var res LogoutResult
	if c, err := r.Cookie(SessionCookie); err == nil {
		res.SignedOut = s.sessions.valid(c.Value, time.Now())
		s.sessions.end(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// LoginURL asks the emulator for a one-time login URL of the console.
func (c *Client) LoginURL(ctx context.Context) (string, error) {
	var out LoginLink
	if err := c.do(ctx, http.MethodPost, "/login-links", nil, &out); err != nil {
		return "", err
	}
	return c.base + out.Path, nil
}
