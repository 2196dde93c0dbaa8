package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// TokenPath is where the registry serves the distribution token endpoint
// (the realm of its Bearer challenge).
const TokenPath = "/token"

// Service is the service name the registry's challenge and tokens carry.
const Service = "malocal-registry"

// PublicNamespace is the namespace of the official bases, which anyone may
// pull without credentials, as the platform's SWR lets anyone pull them.
const PublicNamespace = "eiwizard/"

// tokenTTL is how long an issued token is good for.
const tokenTTL = 15 * time.Minute

// Credentials are the user name and password the registry accepts.
type Credentials struct {
	Username string
	Password string
}

// WithCredentials turns on authentication, as SWR has it: pushes, deletes,
// tag changes, the catalog and pulls outside PublicNamespace need these
// credentials, given to the token endpoint (or directly, as basic auth).
// Without this option the registry is open to anyone.
func WithCredentials(c Credentials) Option {
	return func(o *options) { o.creds = &c }
}

// auth checks requests against one set of credentials and signs the tokens
// it hands out with a key made at start (a restart asks clients for a new
// token, which they do on their own).
type auth struct {
	creds Credentials
	key   []byte
}

func newAuth(c Credentials) (*auth, error) {
	if c.Username == "" || c.Password == "" {
		return nil, fmt.Errorf("registry: credentials need a user name and a password")
	}
	if strings.Contains(c.Username, ":") {
		return nil, fmt.Errorf("registry: user name %q has a colon, which basic auth cannot carry", c.Username)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("registry: token key: %w", err)
	}
	return &auth{creds: c, key: key}, nil
}

// tokenClaims is what a token says: who holds it and until when.
type tokenClaims struct {
	Subject string `json:"sub"` // "" for an anonymous token
	Expires int64  `json:"exp"`
}

func (a *auth) sign(c tokenClaims) string {
	b, _ := json.Marshal(c)
	p := base64.RawURLEncoding.EncodeToString(b)
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (a *auth) verify(tok string) (tokenClaims, bool) {
	p, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return tokenClaims{}, false
	}
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(p))
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return tokenClaims{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	var c tokenClaims
	if err != nil || json.Unmarshal(b, &c) != nil || time.Now().Unix() > c.Expires {
		return tokenClaims{}, false
	}
	return c, true
}

func (a *auth) checkPassword(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(a.creds.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(a.creds.Password))
	return u&p == 1
}

// authenticated reports whether req carries the registry's credentials,
// as a token from the token endpoint or as basic auth.
func (a *auth) authenticated(req *http.Request) bool {
	h := req.Header.Get("Authorization")
	if tok, ok := cutScheme(h, "Bearer"); ok {
		c, ok := a.verify(tok)
		return ok && c.Subject != ""
	}
	if u, p, ok := req.BasicAuth(); ok {
		return a.checkPassword(u, p)
	}
	return false
}

func cutScheme(h, scheme string) (string, bool) {
	if len(h) > len(scheme)+1 && strings.EqualFold(h[:len(scheme)], scheme) && h[len(scheme)] == ' ' {
		return strings.TrimSpace(h[len(scheme)+1:]), true
	}
	return "", false
}

// anonymousOK reports whether rt may be served without credentials: reads
// of the official bases' namespace.
func anonymousOK(rt route, method string) bool {
	if method != http.MethodGet && method != http.MethodHead {
		return false
	}
	switch rt.kind {
	case "tags", "manifest", "referrers", "blob":
		return strings.HasPrefix(rt.name, PublicNamespace)
	}
	return false
}

// scope is the scope a client must ask the token endpoint for to do req.
func scope(rt route, method string) string {
	switch rt.kind {
	case "ping":
		return ""
	case "catalog":
		return "registry:catalog:*"
	}
	if method == http.MethodGet || method == http.MethodHead {
		return "repository:" + rt.name + ":pull"
	}
	if method == http.MethodDelete {
		return "repository:" + rt.name + ":delete"
	}
	return "repository:" + rt.name + ":pull,push"
}

// baseURL is the scheme and host clients used to reach us.
func baseURL(req *http.Request) string {
	s := "http"
	if req.TLS != nil {
		s = "https"
	}
	return s + "://" + req.Host
}

// loginHint tells a user without credentials how to get them.
func loginHint(host string) string {
	return "authentication required: log in with `malocal registry login` (or `docker login " + host +
		"` with MALOCAL_REGISTRY_USERNAME and MALOCAL_REGISTRY_PASSWORD from `malocal env`)"
}

// anonymousScope reports whether an anonymous token may carry sc: a pull
// in the official bases' namespace.
func anonymousScope(sc string) bool {
	parts := strings.Split(sc, ":")
	if len(parts) < 3 || parts[0] != "repository" || !strings.HasPrefix(strings.Join(parts[1:len(parts)-1], ":"), PublicNamespace) {
		return false
	}
	for _, a := range strings.Split(parts[len(parts)-1], ",") {
		if a != "pull" {
			return false
		}
	}
	return true
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var errUnauthorized = &apiError{http.StatusUnauthorized, "UNAUTHORIZED", "authentication required"}

// challenge answers a request without the credentials it needs: the spec's
// 401 with a Bearer challenge naming the token endpoint and the scope.
func (a *auth) challenge(w http.ResponseWriter, req *http.Request, rt route) error {
	v := fmt.Sprintf(`Bearer realm=%q,service=%q`, baseURL(req)+TokenPath, Service)
	msg := loginHint(req.Host)
	if sc := scope(rt, req.Method); sc != "" {
		v += fmt.Sprintf(`,scope=%q`, sc)
		if strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
			v += `,error="insufficient_scope"`
		}
		msg += "; " + sc + " needs credentials"
	}
	w.Header().Set("WWW-Authenticate", v)
	return withMessage(errUnauthorized, msg)
}

// serveToken is the token endpoint: GET with basic auth (docker, skopeo,
// go-containerregistry) or anonymously, and POST with the OAuth2 password
// or refresh_token grant (containerd).
func (a *auth) serveToken(w http.ResponseWriter, req *http.Request) {
	var user, pass string
	var have bool
	switch req.Method {
	case http.MethodGet:
		user, pass, have = req.BasicAuth()
	case http.MethodPost:
		if err := req.ParseForm(); err != nil {
			tokenError(w, http.StatusBadRequest, "invalid_request", "cannot read the form: "+err.Error())
			return
		}
		switch req.PostForm.Get("grant_type") {
		case "password":
			user, pass, have = req.PostForm.Get("username"), req.PostForm.Get("password"), true
		case "refresh_token":
			c, ok := a.verify(req.PostForm.Get("refresh_token"))
			if !ok || c.Subject == "" {
				tokenError(w, http.StatusUnauthorized, "invalid_grant", "refresh token invalid or expired; log in again")
				return
			}
			user, pass, have = a.creds.Username, a.creds.Password, true
		default:
			tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be password or refresh_token")
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET or POST")
		return
	}
	sub := ""
	if !have {
		// An anonymous token opens the official bases only; for anything
		// else, say here how to log in (clients show this message).
		for _, sc := range req.URL.Query()["scope"] {
			for _, one := range strings.Fields(sc) {
				if !anonymousScope(one) {
					w.Header().Set("WWW-Authenticate", `Basic realm="`+Service+`"`)
					writeError(w, req, discard, withMessage(errUnauthorized, loginHint(req.Host)+"; "+one+" needs credentials"))
					return
				}
			}
		}
	}
	if have {
		if !a.checkPassword(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+Service+`"`)
			tokenError(w, http.StatusUnauthorized, "invalid_client",
				"wrong registry user name or password: use MALOCAL_REGISTRY_USERNAME and MALOCAL_REGISTRY_PASSWORD from `malocal env`")
			return
		}
		sub = user
	}
	now := time.Now()
	tok := a.sign(tokenClaims{Subject: sub, Expires: now.Add(tokenTTL).Unix()})
	resp := map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(tokenTTL.Seconds()),
		"issued_at":    now.UTC().Format(time.RFC3339),
	}
	if sub != "" && (req.Method == http.MethodPost || req.URL.Query().Get("offline_token") == "true") {
		// A refresh token lets containerd renew without the password.
		resp["refresh_token"] = a.sign(tokenClaims{Subject: sub, Expires: now.Add(24 * time.Hour).Unix()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(resp)
}

func tokenError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": msg})
}
