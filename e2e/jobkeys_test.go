package e2e

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/malocal/malocal/api"
)

// pythonJobEnv starts an emulator whose registry holds a real Debian base
// (python3, the toolkit's run_train.sh and moxing), built by `malocal base
// build` from the root filesystem the other Python tests cache and
// registered as an official base, so jobs can run on it as is. It returns
// the image's repo:tag.
func pythonJobEnv(t *testing.T, opts ...Option) (*Emulator, string) {
	t.Helper()
	RequireDocker(t)
	rootfs := cachedRootfs(t, []string{"python3", "python3-pip", "python3-numpy"})
	e := Start(t, opts...)
	e.CleanupJobs()
	start := time.Now()
	if r := e.Run("base", "build", "--name", "test/python-base", "--tag", "1", "--from", "rootfs:"+rootfs); r.Code != 0 {
		t.Fatalf("malocal base build: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("built and pushed the Python base in %s", time.Since(start).Round(time.Second))
	return e, "test/python-base:1"
}

// put writes an object with the emulator's own key.
func (e *Emulator) put(t *testing.T, bucket, key, body string) {
	t.Helper()
	_, err := e.S3Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatalf("putting s3://%s/%s: %v", bucket, key, err)
	}
}

// get reads an object with the emulator's own key.
func (e *Emulator) get(t *testing.T, bucket, key string) string {
	t.Helper()
	out, err := e.S3Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("reading s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("reading s3://%s/%s: %v", bucket, key, err)
	}
	return string(b)
}

// jobKeyMain is a training script that works with the S3 keys its job's
// environment gives it, through mox.file and through the toolkit's signed
// requests. "check": its own dirs work, everything else is AccessDenied.
// "crash": it waits until the data dir holds "go" (the test writes it
// after restarting the emulator), riding out the emulator's absence, and
// then writes its output.
const jobKeyMain = `import os, sys, time
import moxing as mox
from malocal_toolkit import s3

data, out = os.environ["DLS_DATA_URL"], os.environ["DLS_TRAIN_URL"]
# The test uses the key from the host after the job ended.
print("key", os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], flush=True)

def denied(f, what):
    try:
        f()
    except s3.S3Error as e:
        if e.status == 403 and "AccessDenied" in str(e):
            print("denied:", what, flush=True)
            return
        raise
    sys.exit(what + ": allowed")

if sys.argv[1] == "check":
    from lib.helper import X  # the code dir, downloaded by run_train.sh
    numbers = mox.file.read(data + "numbers.txt").split()
    mox.file.write(out + "sum.txt", "%d %d\n" % (sum(int(x) for x in numbers), X))
    mox.file.copy_parallel(data, out + "data-copy")
    assert mox.file.list_directory(out + "data-copy") == ["numbers.txt"]
    print("own dirs ok", flush=True)
    c = s3.Client()
    denied(lambda: c.request("GET", ""), "list buckets")
    denied(lambda: mox.file.list_directory("s3://other/"), "list another bucket")
    denied(lambda: mox.file.read("s3://other/k.txt"), "read another bucket")
    denied(lambda: mox.file.write("s3://other/k2.txt", "x"), "write another bucket")
    denied(lambda: mox.file.read("s3://job/secret/k.txt"), "read another prefix")
    denied(lambda: mox.file.list_directory("s3://job/secret"), "list another prefix")
    denied(lambda: mox.file.write("s3://job/secret/evil.txt", "x"), "write another prefix")
    denied(lambda: mox.file.write(data + "evil.txt", "x"), "write the data dir")
    print("job key ok", flush=True)
else:
    print("waiting for go", flush=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if mox.file.exists(data + "go"):
                break
        except s3.S3Error:
            pass  # the emulator is down
        time.sleep(0.5)
    else:
        sys.exit("no go within 300 s")
    mox.file.write(out + "after-restart.txt", "written after the restart\n")
    print("after restart ok", flush=True)
`

// seedJobKeyBuckets makes the job's bucket (code, data, and a prefix that
// is not the job's) and another bucket.
func seedJobKeyBuckets(t *testing.T, e *Emulator) {
	t.Helper()
	e.MakeBucket(t, "job")
	e.MakeBucket(t, "other")
	e.put(t, "job", "code/main.py", jobKeyMain)
	e.put(t, "job", "code/lib/__init__.py", "")
	e.put(t, "job", "code/lib/helper.py", "X = 7\n")
	e.put(t, "job", "data/numbers.txt", "1 2 3 4\n")
	e.put(t, "job", "secret/k.txt", "not the job's\n")
	e.put(t, "other", "k.txt", "another user's\n")
}

func jobKeySpec(img, mode string) api.JobSpec {
	return api.JobSpec{Name: "key-" + mode, Image: img, AppURL: "s3://job/code/", DataURL: "s3://job/data/", TrainURL: "s3://job/out/" + mode + "/",
		Command: []string{"bash", "/home/work/run_train.sh", "python3", "/home/work/user-job-dir/code/main.py", mode}}
}

var keyLine = regexp.MustCompile(`(?m)^0\|key (\S+) (\S+)$`)

// jobKey is the key a job printed.
func jobKey(t *testing.T, logs string) (ak, sk string) {
	t.Helper()
	m := keyLine.FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("the job printed no key:\n%s", logs)
	}
	return m[1], m[2]
}

// A job's container works with the S3 key its environment holds: its
// code, data and output dirs through run_train.sh, mox.file and signed
// requests; listing buckets, another bucket and another prefix of its own
// bucket are AccessDenied. Once the job ended, the same key is refused.
func TestJobKeyFromInsideAJob(t *testing.T) {
	e, img := pythonJobEnv(t)
	seedJobKeyBuckets(t, e)
	j := submit(t, e, jobKeySpec(img, "check"))
	j = waitFinal(t, e, j.ID, 5*time.Minute)
	logs := logsOf(t, e, j.ID, 0)
	if j.Status != api.StatusCompleted {
		t.Fatalf("status %s (%s)\n%s", j.Status, j.Reason, logs)
	}
	for _, w := range []string{"own dirs ok", "denied: list buckets", "denied: read another bucket", "denied: list another prefix", "job key ok"} {
		if !strings.Contains(logs, w) {
			t.Errorf("job log lacks %q:\n%s", w, logs)
		}
	}
	if got := e.get(t, "job", "out/check/sum.txt"); got != "10 7\n" {
		t.Errorf("out/check/sum.txt: %q", got)
	}
	ak, sk := jobKey(t, logs)
	if ak == e.Creds.AccessKey {
		t.Fatalf("the job got the emulator's own key %s, not one of its own", ak)
	}

	// From the host, with aws-sdk-go-v2: the key is refused once the job
	// is final (revocation follows the final status closely).
	c := s3.New(s3.Options{BaseEndpoint: aws.String("http://" + e.S3), Region: e.Creds.Region,
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), UsePathStyle: true})
	var err error
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		_, err = c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("job"), Key: aws.String("out/check/sum.txt")})
		if err != nil {
			break
		}
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || (ae.ErrorCode() != "InvalidAccessKeyId" && ae.ErrorCode() != "AccessDenied") {
		t.Fatalf("the ended job's key reading its own output: %v, want InvalidAccessKeyId", err)
	}
	t.Logf("the ended job's key: %s", ae.ErrorCode())
}

// A job's key outlives a crash of the emulator: while the job runs, the
// emulator is killed with SIGKILL and restarted on the same data dir, on
// another S3 port; the job's gateway reopens on the port its containers
// were given, and the job, which waited through the outage, then reads
// and writes with its key.
func TestJobKeySurvivesAnEmulatorCrash(t *testing.T) {
	e, img := pythonJobEnv(t)
	seedJobKeyBuckets(t, e)
	j := submit(t, e, jobKeySpec(img, "crash"))
	waitLog(t, e, j.ID, "waiting for go", 5*time.Minute)

	e.Kill()
	e2 := e.Restart()
	if e2.S3 == e.S3 {
		t.Fatalf("the restarted emulator's S3 port is the old one (%s): the test would not tell", e.S3)
	}
	e2.CleanupJobs()
	e2.put(t, "job", "data/go", "")
	j = waitFinal(t, e2, j.ID, 3*time.Minute)
	logs := logsOf(t, e2, j.ID, 0)
	if j.Status != api.StatusCompleted || !strings.Contains(logs, "after restart ok") {
		t.Fatalf("status %s (%s)\n%s", j.Status, j.Reason, logs)
	}
	if got := e2.get(t, "job", "out/crash/after-restart.txt"); got != "written after the restart\n" {
		t.Errorf("out/crash/after-restart.txt: %q", got)
	}
}

// waitLog waits until task 0's log holds want.
func waitLog(t *testing.T, e *Emulator, id, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		logs := logsOf(t, e, id, 0)
		if strings.Contains(logs, want) {
			return logs
		}
		j, err := e.Client().Job(context.Background(), id)
		if err == nil && j.Status.Final() {
			t.Fatalf("job %s ended %s (%s) before logging %q:\n%s", id, j.Status, j.Reason, want, logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not log %q within %s:\n%s", id, want, timeout, logs)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
