package baseimage

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestPythonUnitTests runs the toolkit's python unittest suite
// (toolkit/tests) with the host's python3, botocore included.
func TestPythonUnitTests(t *testing.T) {
	py := hostPython(t)
	cmd := exec.Command(py, "-m", "unittest", "discover", "-v", "-s", "tests", "-t", ".")
	cmd.Dir = "toolkit"
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("python unit tests: %v", err)
	}
	if bytes.Contains(out, []byte("skipped")) && inCI {
		t.Fatal("python tests were skipped under CI=true (is python3-boto3 installed?)")
	}
}

func TestToolkitEmbedded(t *testing.T) {
	want := []string{
		"run_train.sh",
		"malocal_toolkit/__init__.py", "malocal_toolkit/s3.py",
		"malocal_toolkit/download.py", "malocal_toolkit/upload_log.py",
		"moxing/__init__.py", "moxing/file.py",
	}
	var got []string
	for _, f := range toolkitFiles() {
		got = append(got, f.name)
		if strings.Contains(f.name, "tests/") || strings.Contains(f.name, "__pycache__") {
			t.Errorf("embedded a test or cache file: %s", f.name)
		}
	}
	for _, w := range want {
		if _, err := fs.Stat(Toolkit(), w); err != nil {
			t.Errorf("toolkit lacks %s (has %v)", w, got)
		}
	}
	if d := ToolkitDigest(); len(d) != 64 || d != ToolkitDigest() {
		t.Errorf("ToolkitDigest = %q", d)
	}
}

func TestRunTrainPassesExitCodeAndLogs(t *testing.T) {
	home := toolkitHome(t)
	out, rc := runTrain(t, home, []string{"DLS_TASK_INDEX=3"},
		"python3", "-c", `import os, sys
print("stdout line", os.environ["PYTHONUNBUFFERED"], os.environ["PYTHONPATH"])
print("stderr line", file=sys.stderr)
import moxing as mox
sys.exit(7)`)
	if rc != 7 {
		t.Fatalf("exit status %d, want 7\n%s", rc, out)
	}
	logFile := filepath.Join(home, "dls-task-3.log")
	for _, w := range []string{"user: ", "pwd: " + home, "app_url: (none)", "log_file: " + logFile,
		"command: python3 -c ", "stdout line 1 " + home + "/user-job-dir:" + home, "stderr line",
		"command exited with status 7"} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout lacks %q:\n%s", w, out)
		}
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"user: ", "stdout line", "stderr line"} {
		if !strings.Contains(string(log), w) {
			t.Errorf("log file lacks %q:\n%s", w, log)
		}
	}

	for _, code := range []string{"0", "1", "42"} {
		if out, rc := runTrain(t, home, nil, "sh", "-c", "exit "+code); code != strconv.Itoa(rc) {
			t.Errorf("sh -c 'exit %s': run_train.sh exited %d\n%s", code, rc, out)
		}
	}
}

func TestRunTrainFailedDownloadIs127(t *testing.T) {
	home := toolkitHome(t)
	out, rc := runTrain(t, home, []string{
		"DLS_APP_URL=s3://bucket/x/new/",
		"AWS_ENDPOINT_URL=http://127.0.0.1:9", // discard port: nothing listens
		"AWS_ACCESS_KEY_ID=k", "AWS_SECRET_ACCESS_KEY=s",
	}, "true")
	if rc != 127 {
		t.Fatalf("exit status %d, want 127\n%s", rc, out)
	}
	for _, w := range []string{"app_url: s3://bucket/x/new/", "downloading s3://bucket/x/new/ to " + home + "/user-job-dir/new/",
		"download of s3://bucket/x/new/ failed", "exit 127"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	out, rc = runTrain(t, home, []string{"DLS_APP_URL=s3://bucket/x/"}, "true") // no endpoint at all
	if rc != 127 || !strings.Contains(out, "AWS_ENDPOINT_URL") {
		t.Fatalf("without an endpoint: exit %d, want 127 naming AWS_ENDPOINT_URL\n%s", rc, out)
	}
}

func TestRunTrainForwardsSIGTERM(t *testing.T) {
	home := toolkitHome(t)
	needTool(t, "bash", "run_train.sh is bash")
	cmd := exec.Command("bash", filepath.Join(home, "run_train.sh"), "sh", "-c", "echo started; exec sleep 60")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "MALOCAL_HOME=" + home, "MALOCAL_LOG_DIR=" + home}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "\nstarted\n") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("command did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 143 {
		t.Fatalf("exit %d (%v), want 143 (the command killed by SIGTERM)\n%s", code, err, out.String())
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s to stop", time.Since(start))
	}
}

// TestRunTrainRefusesEscapingKeys serves a listing holding a key with ../
// (fakeobs itself refuses to store such keys; other stores do not): the
// download fails with 127 before anything is written.
func TestRunTrainRefusesEscapingKeys(t *testing.T) {
	var gets []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("list-type") == "2" {
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><IsTruncated>false</IsTruncated>
<Contents><Key>x/evil/ok.py</Key><Size>3</Size></Contents>
<Contents><Key>x/evil/../../escaped.py</Key><Size>3</Size></Contents>
</ListBucketResult>`)
			return
		}
		mu.Lock()
		gets = append(gets, r.URL.Path)
		mu.Unlock()
		fmt.Fprint(w, "x=1")
	}))
	defer srv.Close()
	home := toolkitHome(t)
	out, rc := runTrain(t, home, []string{"DLS_APP_URL=s3://bkt/x/evil/", "AWS_ENDPOINT_URL=" + srv.URL,
		"AWS_ACCESS_KEY_ID=k", "AWS_SECRET_ACCESS_KEY=s"}, "true")
	if rc != 127 || !strings.Contains(out, "refusing key '../../escaped.py'") {
		t.Fatalf("exit %d, want 127 refusing the ../ key\n%s", rc, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gets) != 0 {
		t.Errorf("objects fetched before the refusal: %v", gets)
	}
	for _, p := range []string{"user-job-dir/escaped.py", "escaped.py", "user-job-dir/evil/ok.py"} {
		if _, err := os.Stat(filepath.Join(home, p)); err == nil {
			t.Errorf("%s was written", p)
		}
	}
}
