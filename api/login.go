package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// The console signs in as Jupyter does: `malocal up` logs, and `malocal ui`
// asks for, a login URL carrying a one-time code. Redeeming it sets an
// HttpOnly, SameSite=Strict cookie, so no secret is ever in a page or in
// script reach, and other sites' pages cannot send it.
const (
	// SessionCookie is the console's cookie.
	SessionCookie = "malocal_session"
	// LoginPath is where a login URL points, under Prefix.
	LoginPath = "/login"
	// loginCodeTTL is how long an unused code stays valid.
	loginCodeTTL  = 24 * time.Hour
	sessionMaxAge = 30 * 24 * time.Hour
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

// sessionValue is the cookie's value: derived from the token, so sessions
// survive a restart and end when the token changes, and the cookie is not
// the token itself.
func (s *Server) sessionValue() string {
	m := hmac.New(sha256.New, []byte(s.token))
	m.Write([]byte("malocal console session"))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) hasSession(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.sessionValue())) == 1
}

// login redeems a code: it sets the session cookie and sends the browser
// to the console; a used or unknown code lands on the console's sign-in
// notice.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !s.logins.redeem(r.URL.Query().Get("code"), time.Now()) {
		http.Redirect(w, r, "/#/signin?expired=1", http.StatusSeeOther)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: s.sessionValue(), Path: "/",
		MaxAge: int(sessionMaxAge / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// LoginURL asks the emulator for a one-time login URL of the console.
func (c *Client) LoginURL(ctx context.Context) (string, error) {
	var out LoginLink
	if err := c.do(ctx, http.MethodPost, "/login-links", nil, &out); err != nil {
		return "", err
	}
	return c.base + out.Path, nil
}
