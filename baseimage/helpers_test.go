package baseimage

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// inCI is true under CI=true, where a missing tool fails a test instead of
// skipping it.
var inCI = os.Getenv("CI") == "true"

// needTool returns the path of a tool, failing the test under CI and
// skipping it elsewhere when the tool is missing.
func needTool(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if inCI {
			t.Fatalf("%s is required under CI=true (%s): %v", name, why, err)
		}
		t.Skipf("%s not found (%s): %v", name, why, err)
	}
	return p
}

// hostPython is Debian's /usr/bin/python3 (the one with python3-boto3).
func hostPython(t *testing.T) string {
	t.Helper()
	const p = "/usr/bin/python3"
	if _, err := os.Stat(p); err != nil {
		if inCI {
			t.Fatalf("%s is required under CI=true: %v", p, err)
		}
		t.Skipf("%s not found: %v", p, err)
	}
	return p
}

// toolkitHome writes the embedded toolkit into a temp dir, laid out as
// /home/work is in a base image.
func toolkitHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	err := fs.WalkDir(Toolkit(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(home, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := fs.ReadFile(Toolkit(), p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		return os.WriteFile(dst, data, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return home
}

// runTrain runs run_train.sh from a toolkit home on the host with the
// host's python3 first on PATH and returns its output and exit status.
func runTrain(t *testing.T, home string, env []string, args ...string) (string, int) {
	t.Helper()
	needTool(t, "bash", "run_train.sh is bash")
	hostPython(t)
	cmd := exec.Command("bash", append([]string{filepath.Join(home, "run_train.sh")}, args...)...)
	cmd.Dir = home
	cmd.Env = append([]string{
		"PATH=/usr/bin:/bin",
		"HOME=" + home,
		"PYTHONDONTWRITEBYTECODE=1",
		"MALOCAL_HOME=" + home,
		"MALOCAL_LOG_DIR=" + home,
	}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("run_train.sh: %v\n%s", err, out.String())
	return "", -1
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustConfig(t *testing.T, img v1.Image, cf *v1.ConfigFile) v1.Image {
	t.Helper()
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rootfsImage is FromRootfs, its temp layer removed when the test ends.
func rootfsImage(t *testing.T, p string) v1.Image {
	t.Helper()
	img, cleanup, err := FromRootfs(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return img
}
