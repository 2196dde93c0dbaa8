package baseimage

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/malocal/malocal/fakeobs"
)

var s3Creds = fakeobs.Credentials{AccessKey: "MALOCALBASEKEY", SecretKey: "base-secret-0123456789", Region: "cn-north-4"}

// startFakeobs serves a fakeobs object store on loopback and returns the
// environment a job container would get for it.
func startFakeobs(t *testing.T) []string {
	t.Helper()
	svc, err := fakeobs.New(t.TempDir(), fakeobs.WithCredentials(s3Creds))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		svc.Close()
	})
	return []string{
		"AWS_ENDPOINT_URL=" + srv.URL,
		"S3_ENDPOINT=" + srv.URL,
		"AWS_ACCESS_KEY_ID=" + s3Creds.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s3Creds.SecretKey,
		"AWS_DEFAULT_REGION=" + s3Creds.Region,
	}
}

func runPython(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(hostPython(t), args...)
	cmd.Dir = "toolkit"
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// codeTree is a code dir with nested folders, spaces and non-ASCII names.
var codeTree = map[string]string{
	"main.py": `import os, sys
import pkg.deep.model as m
here = os.path.dirname(os.path.abspath(__file__))
print("main running in", here, "W =", m.W)
with open(os.path.join(here, "data dir", "with spaces ü 文件.txt"), encoding="utf-8") as f:
    print("read:", f.read().strip())
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
`,
	"pkg/__init__.py":               "",
	"pkg/deep/__init__.py":          "",
	"pkg/deep/model.py":             "W = 42\n",
	"data dir/with spaces ü 文件.txt": "non-ascii ✓\n",
	"nested/a/b/c/deepest file.txt": "deep\n",
	"ünïcødé/файл.py":               "X = 1\n",
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, data := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		got[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestToolkitAgainstFakeobs runs run_train.sh and moxing on the host
// against fakeobs, our S3 API, with SigV4 checked.
func TestToolkitAgainstFakeobs(t *testing.T) {
	env := startFakeobs(t)
	code := t.TempDir()
	writeTree(t, code, codeTree)
	t.Log(runPython(t, env, "tests/e2e_fakeobs.py", "seed", "bkt", code))

	home := toolkitHome(t)
	jobEnv := append([]string{"DLS_APP_URL=s3://bkt/x/new/", "DLS_TASK_INDEX=1", "DLS_LOG_URL=obs://bkt/logs/job1/"}, env...)
	main := filepath.Join(home, "user-job-dir", "new", "main.py")
	out, rc := runTrain(t, home, jobEnv, "python3", main, "0")
	if rc != 0 {
		t.Fatalf("exit %d, want 0\n%s", rc, out)
	}
	if got := readTree(t, filepath.Join(home, "user-job-dir", "new")); !reflect.DeepEqual(got, codeTree) {
		t.Errorf("downloaded tree:\n%v\nwant:\n%v", got, codeTree)
	}
	for _, w := range []string{"downloaded 7 files", "W = 42", "read: non-ascii ✓", "uploaded log to s3://bkt/logs/job1/dls-task-1.log"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	logObj := runPython(t, env, "-c", `import moxing as mox; print(mox.file.read("s3://bkt/logs/job1/dls-task-1.log"))`)
	for _, w := range []string{"app_url: s3://bkt/x/new/", "W = 42", "command exited with status 0"} {
		if !strings.Contains(logObj, w) {
			t.Errorf("uploaded log lacks %q:\n%s", w, logObj)
		}
	}

	// The command's exit status passes through, after a fresh download.
	if out, rc := runTrain(t, home, jobEnv, "python3", main, "3"); rc != 3 {
		t.Errorf("exit %d, want 3\n%s", rc, out)
	}

	// Failed downloads exit 127 with the downloader's error.
	for _, c := range []struct{ url, env, want string }{
		{"s3://bkt/x/missing/", "", "is empty or does not exist"},
		{"s3://no-such-bucket/x/", "", "NoSuchBucket"},
		{"s3://bkt/x/new/", "AWS_SECRET_ACCESS_KEY=wrong", "SignatureDoesNotMatch"},
	} {
		e := append([]string{"DLS_APP_URL=" + c.url}, env...)
		if c.env != "" {
			e = append(e, c.env)
		}
		out, rc := runTrain(t, home, e, "true")
		if rc != 127 || !strings.Contains(out, c.want) {
			t.Errorf("%s %s: exit %d, want 127 with %q\n%s", c.url, c.env, rc, c.want, out)
		}
	}
	// moxing against the same store.
	if out := runPython(t, env, "tests/e2e_fakeobs.py", "moxing", "bkt", t.TempDir()); !strings.Contains(out, "moxing ok") {
		t.Errorf("moxing checks: %s", out)
	}
}
