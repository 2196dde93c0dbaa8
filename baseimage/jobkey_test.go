package baseimage

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/malocal/malocal/fakeobs"
)

// startFakeobsWithJobKey is startFakeobs with a job's own key beside the
// emulator's: it returns the environment of the emulator's key (to seed)
// and that of the job (as a job's containers get it).
func startFakeobsWithJobKey(t *testing.T, grants []fakeobs.Grant) (master, job []string) {
	t.Helper()
	ks, err := fakeobs.OpenKeyStore(filepath.Join(t.TempDir(), "job-keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := fakeobs.New(t.TempDir(), fakeobs.WithCredentials(s3Creds), fakeobs.WithKeyStore(ks))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() {
		srv.Close()
		svc.Close()
	})
	ak, sk, err := ks.Issue("job1", grants)
	if err != nil {
		t.Fatal(err)
	}
	env := func(ak, sk string) []string {
		return []string{"AWS_ENDPOINT_URL=" + srv.URL, "S3_ENDPOINT=" + srv.URL,
			"AWS_ACCESS_KEY_ID=" + ak, "AWS_SECRET_ACCESS_KEY=" + sk, "AWS_DEFAULT_REGION=" + s3Creds.Region}
	}
	return env(s3Creds.AccessKey, s3Creds.SecretKey), env(ak, sk)
}

// jobKeyChecks is what a training script does with mox.file and a job's
// key: its own dirs work, the rest is AccessDenied.
const jobKeyChecks = `
import moxing as mox
from malocal_toolkit import s3

def denied(f, what):
    try:
        f()
    except s3.S3Error as e:
        assert e.status == 403 and "AccessDenied" in str(e), "%s: %s" % (what, e)
        return
    raise AssertionError(what + ": allowed")

assert "W = 42" in mox.file.read("s3://bkt/x/new/pkg/deep/model.py")
assert "main.py" in mox.file.list_directory("s3://bkt/x/new")
mox.file.copy_parallel("s3://bkt/x/new/pkg", "s3://bkt/out/pkg-copy")
assert mox.file.list_directory("s3://bkt/out/pkg-copy", recursive=True) == ["__init__.py", "deep", "deep/__init__.py", "deep/model.py"]
mox.file.make_dirs("s3://bkt/out/made")
assert mox.file.is_directory("s3://bkt/out/made")
mox.file.write("s3://bkt/out/metrics.txt", "acc 0.9\n")
assert mox.file.exists("s3://bkt/out/metrics.txt")
assert mox.file.exists("s3://bkt/out")
mox.file.remove("s3://bkt/out/pkg-copy", recursive=True)
assert not mox.file.exists("s3://bkt/out/pkg-copy")

denied(lambda: mox.file.write("s3://bkt/x/new/evil.py", "x"), "write the read-only code dir")
denied(lambda: mox.file.read("s3://bkt/secret/k.txt"), "read another prefix")
denied(lambda: mox.file.list_directory("s3://bkt/secret"), "list another prefix")
denied(lambda: mox.file.read("s3://other/k.txt"), "read another bucket")
denied(lambda: mox.file.write("s3://other/out/k.txt", "x"), "write another bucket")
denied(lambda: mox.file.remove("s3://bkt/x/new/main.py"), "delete in the code dir")
print("job key ok")
`

// TestToolkitWithAJobKey runs run_train.sh and mox.file with a job's own
// key, allowed the code dir (read), the output and log dirs (read-write).
func TestToolkitWithAJobKey(t *testing.T) {
	master, job := startFakeobsWithJobKey(t, []fakeobs.Grant{
		{Bucket: "bkt", Prefix: "x/new/"},
		{Bucket: "bkt", Prefix: "out/", Write: true},
		{Bucket: "bkt", Prefix: "logs/job1/", Write: true},
	})
	code := t.TempDir()
	writeTree(t, code, codeTree)
	runPython(t, master, "tests/e2e_fakeobs.py", "seed", "bkt", code)
	runPython(t, master, "-c", `from malocal_toolkit import s3
c = s3.Client()
c.create_bucket("other")
c.put_object("other", "k.txt", b"another user's")
c.put_object("bkt", "secret/k.txt", b"not the job's")`)

	home := toolkitHome(t)
	jobEnv := append([]string{"DLS_APP_URL=s3://bkt/x/new/", "DLS_TASK_INDEX=0", "DLS_LOG_URL=obs://bkt/logs/job1/"}, job...)
	out, rc := runTrain(t, home, jobEnv, "python3", filepath.Join(home, "user-job-dir", "new", "main.py"), "0")
	if rc != 0 {
		t.Fatalf("run_train.sh with the job's key: exit %d\n%s", rc, out)
	}
	for _, w := range []string{"downloaded 7 files", "W = 42", "uploaded log to s3://bkt/logs/job1/dls-task-0.log"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if out := runPython(t, job, "-c", jobKeyChecks); !strings.Contains(out, "job key ok") {
		t.Errorf("mox.file with the job's key: %s", out)
	}
	// Another job's code dir is not reachable: run_train.sh fails its download.
	other := append([]string{"DLS_APP_URL=s3://bkt/secret/"}, job...)
	if out, rc := runTrain(t, home, other, "true"); rc != 127 || !strings.Contains(out, "AccessDenied") {
		t.Errorf("a code dir outside the grants: exit %d, want 127 with AccessDenied\n%s", rc, out)
	}
}
