package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The console signs in as Jupyter does: `malocal up` logs, and `malocal ui`
// asks for, a login URL carrying a one-time code. Redeeming it sets an
// HttpOnly, SameSite=Strict cookie, so no secret is ever in a page or in
// script reach, and other sites' pages cannot send it. A session lasts
// 12 hours at most (across restarts of the emulator) and ends at once on
// POST /logout (the console's "Sign out").
const (
	// SessionCookie is the console's cookie.
	SessionCookie = "malocal_session"
	// LoginPath is where a login URL points, under Prefix.
	LoginPath = "/login"
	// loginCodeTTL is how long an unused code stays valid.
	loginCodeTTL = 24 * time.Hour
	// SessionLifetime bounds a console session; a session also ends when
	// the browser signs out, and all end when the API token changes.
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

// A console session is a cookie the server can check without keeping it:
// a random id and an expiry, signed with a key derived from the API token.
// So a session survives an emulator restart, lasts SessionLifetime at most,
// and ends for every browser when the token changes. Signing out records
// the id as revoked until its expiry (in the RevokedSessions store, which
// the emulator keeps in the data dir), so a kept copy of the cookie is
// worthless too.
type sessions struct {
	key     []byte
	revoked RevokedSessions
}

// RevokedSessions keeps the ids of signed-out sessions until they expire.
type RevokedSessions interface {
	Revoke(id string, until time.Time) error
	IsRevoked(id string) bool
}

// memRevoked is the RevokedSessions of a server given no other: it
// forgets at restart.
type memRevoked struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

func (m *memRevoked) Revoke(id string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids == nil {
		m.ids = map[string]time.Time{}
	}
	now := time.Now()
	for k, e := range m.ids {
		if now.After(e) {
			delete(m.ids, k)
		}
	}
	m.ids[id] = until
	return nil
}

func (m *memRevoked) IsRevoked(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.ids[id]
	return ok
}

func newSessions(token string) sessions {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("malocal console session key"))
	return sessions{key: m.Sum(nil), revoked: &memRevoked{}}
}

func (ss *sessions) sign(payload string) string {
	m := hmac.New(sha256.New, ss.key)
	m.Write([]byte(payload))
	return hex.EncodeToString(m.Sum(nil))
}

func (ss *sessions) start(now time.Time) (string, time.Time) {
	exp := now.Add(SessionLifetime).Truncate(time.Second)
	payload := rand.Text() + "." + strconv.FormatInt(exp.Unix(), 10)
	return payload + "." + ss.sign(payload), exp
}

// parse checks a cookie value and returns its id and expiry.
func (ss *sessions) parse(v string, now time.Time) (string, time.Time, bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !hmac.Equal([]byte(v[i+1:]), []byte(ss.sign(v[:i]))) {
		return "", time.Time{}, false
	}
	id, e, ok := strings.Cut(v[:i], ".")
	sec, err := strconv.ParseInt(e, 10, 64)
	if !ok || err != nil {
		return "", time.Time{}, false
	}
	exp := time.Unix(sec, 0)
	if now.After(exp) || exp.After(now.Add(SessionLifetime)) {
		return "", time.Time{}, false
	}
	return id, exp, true
}

func (ss *sessions) valid(v string, now time.Time) bool {
	id, _, ok := ss.parse(v, now)
	return ok && !ss.revoked.IsRevoked(id)
}

func (ss *sessions) end(v string) error {
	id, exp, ok := ss.parse(v, time.Now())
	if !ok {
		return nil
	}
	return ss.revoked.Revoke(id, exp)
}

// SetRevokedSessions keeps signed-out sessions in r, so that they stay
// ended across a restart; by default they are kept in memory.
func (s *Server) SetRevokedSessions(r RevokedSessions) { s.sessions.revoked = r }

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
		if err := s.sessions.end(c.Value); err != nil {
			writeError(w, fmt.Errorf("signing out: %w", err))
			return
		}
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
