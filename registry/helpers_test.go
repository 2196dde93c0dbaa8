package registry

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
)

// needTool returns the path of an external tool a test needs: its path
// when given, else found on PATH.
func needTool(t *testing.T, name, path string) string {
	t.Helper()
	if path == "" {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	} else if _, err := os.Stat(path); err == nil {
		return path
	}
	missingTool(t, name+" not found")
	return ""
}

// missingTool fails the test under CI=true, where every tool must be
// installed, and skips it with the reason elsewhere.
func missingTool(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (required under CI=true)", reason)
	}
	t.Skipf("%s (see .ci/run for how CI installs it)", reason)
}

// serveTCP serves h on a real loopback port (external clients need one)
// and returns "127.0.0.1:port".
func serveTCP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func newTestRegistry(t *testing.T, root string, opts ...Option) *Registry {
	t.Helper()
	r, err := New(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
