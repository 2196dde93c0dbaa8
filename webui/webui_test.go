package webui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	dictKey = regexp.MustCompile(`(?m)^\s*"([a-zA-Z0-9_.]+)":`)
	// t("key"), t(`key`), and the status/verdict keys built from a prefix.
	usedKey   = regexp.MustCompile("\\bt\\([\"`]([a-zA-Z0-9_.]+)[\"`]")
	keyPrefix = regexp.MustCompile("\\bt\\(`([a-zA-Z0-9_.]+\\.)\\$\\{")
)

func dictKeys(t *testing.T, name string) []string {
	t.Helper()
	b, err := fs.ReadFile(Static(), "js/lang/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range dictKey.FindAllStringSubmatch(string(b), -1) {
		keys = append(keys, m[1])
	}
	slices.Sort(keys)
	return keys
}

// Every label the console shows exists in both languages.
func TestEveryKeyInBothLanguages(t *testing.T) {
	en, zh := dictKeys(t, "en.js"), dictKeys(t, "zh-CN.js")
	if len(en) < 100 {
		t.Fatalf("read only %d English keys", len(en))
	}
	if !slices.Equal(en, zh) {
		for _, k := range en {
			if !slices.Contains(zh, k) {
				t.Errorf("%s: no Chinese text", k)
			}
		}
		for _, k := range zh {
			if !slices.Contains(en, k) {
				t.Errorf("%s: no English text", k)
			}
		}
	}
	var prefixes []string
	err := fs.WalkDir(Static(), "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".js") || strings.HasPrefix(p, "js/lang/") {
			return err
		}
		b, err := fs.ReadFile(Static(), p)
		if err != nil {
			return err
		}
		for _, m := range usedKey.FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(en, m[1]) {
				t.Errorf("%s uses %q, which no dictionary has", p, m[1])
			}
		}
		for _, m := range keyPrefix.FindAllStringSubmatch(string(b), -1) {
			prefixes = append(prefixes, m[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Statuses come from the API: each one the jobs package sets has words.
	for _, s := range []string{"creating", "auditing", "audit_failed", "pending", "running", "completed", "failed", "canceled", "timeout",
		"waiting", "created", "succeeded", "stopped"} {
		if !slices.Contains(en, "status."+s) {
			t.Errorf("status %s has no text", s)
		}
	}
	if !slices.Contains(prefixes, "status.") {
		t.Errorf("no status lookup found (prefixes %v): the test no longer sees how statuses are translated", prefixes)
	}
}

func TestHandlerServesTheConsoleWithItsHeaders(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for path, ctype := range map[string]string{"/": "text/html", "/js/app.js": "text/javascript", "/style.css": "text/css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("%s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: security headers %v", path, resp.Header)
		}
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
	}
	// No inline script anywhere: the policy would block it.
	b, _ := fs.ReadFile(Static(), "index.html")
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).Match(b) || strings.Contains(string(b), " on") && regexp.MustCompile(`\son[a-z]+=`).Match(b) {
		t.Error("index.html has inline script or handlers, which the content security policy blocks")
	}
}
