package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/malocal/malocal/api"
)

// jobEnv starts an emulator with a busybox image and a bucket, for jobs.
func jobEnv(t *testing.T, opts ...Option) (*Emulator, string) {
	t.Helper()
	RequireDocker(t)
	e := Start(t, opts...)
	e.CleanupJobs()
	img := e.BusyboxImage(t, "test/busybox", "1")
	e.MakeBucket(t, "code")
	return e, img
}

func submit(t *testing.T, e *Emulator, spec api.JobSpec) *api.Job {
	t.Helper()
	j, err := e.Client().SubmitJob(context.Background(), spec)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return j
}

func waitFinal(t *testing.T, e *Emulator, id string, timeout time.Duration) *api.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := e.Client().Job(context.Background(), id)
		if err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		if j.Status.Final() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s: %+v", id, j.Status, timeout, j.Events)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitStatus(t *testing.T, e *Emulator, id string, want api.JobStatus, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := e.Client().Job(context.Background(), id)
		if err == nil && j.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s not %s within %s: %+v %v", id, want, timeout, j, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func logsOf(t *testing.T, e *Emulator, id string, task int) string {
	t.Helper()
	var b strings.Builder
	err := e.Client().JobLogs(context.Background(), id, task, false, func(l api.LogLine) error {
		fmt.Fprintf(&b, "%d|%s\n", l.Task, l.Text)
		return nil
	})
	if err != nil {
		t.Fatalf("logs of %s: %v", id, err)
	}
	return b.String()
}

// assertNoLeftovers checks that a finished job left no container or network.
func assertNoLeftovers(t *testing.T, id string) {
	t.Helper()
	for _, args := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
		out, _ := exec.Command("docker", append(args, "--filter", "label=malocal.job="+id)...).Output()
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("job %s left docker %s: %s", id, args[0], s)
		}
	}
}

const contractScript = `
echo "task=$DLS_TASK_INDEX of=$DLS_TASK_NUMBER app=$DLS_APP_URL data=$DLS_DATA_URL train=$DLS_TRAIN_URL job=$DLS_JOB_ID batchjob=$BATCH_JOB_ID"
echo "instance=$BATCH_TASK_CURRENT_INSTANCE ip=$BATCH_TASK_CURRENT_HOST_IP maip=$MA_CURRENT_IP hosts=$MA_NUM_HOSTS vc=$VC_TASK_INDEX/$VC_WORKER_NUM workers=$VC_WORKER_HOSTS gpus=$MA_NUM_GPUS extra=$EXTRA"
echo "s3=$AWS_ENDPOINT_URL s3e=$S3_ENDPOINT region=$AWS_DEFAULT_REGION key=$AWS_ACCESS_KEY_ID user=$(id -u)"
k=0
while [ $k -lt $DLS_TASK_NUMBER ]; do
  eval hp=\$BATCH_CUSTOM${k}_HOSTS
  echo "peer$k=$hp"
  end=$(( $(date +%s) + 120 ))
  until nslookup "${hp%:*}" >/dev/null 2>&1; do [ $(date +%s) -gt $end ] && break; sleep 0.3; done
  nslookup "${hp%:*}" >/dev/null 2>&1 && echo "resolved$k"
  k=$((k+1))
done
wget -q -O /dev/null "$AWS_ENDPOINT_URL/" 2>&1 | grep -q 403 && echo "s3 reachable"
# Every peer serves a greeting on the common port, like a parameter server
# that never exits; task 0 fetches each one over BATCH_CUSTOM{k}_HOSTS and
# decides (policy index0).
if [ "$DLS_TASK_INDEX" != 0 ]; then
  mkdir -p /tmp/www && echo "hello-from-$DLS_TASK_INDEX" > /tmp/www/id
  exec httpd -f -p "${BATCH_CUSTOM0_HOSTS#*:}" -h /tmp/www
fi
k=1
while [ $k -lt $DLS_TASK_NUMBER ]; do
  eval hp=\$BATCH_CUSTOM${k}_HOSTS
  end=$(( $(date +%s) + 120 ))
  until wget -q -O - "http://$hp/id" 2>/dev/null; do [ $(date +%s) -gt $end ] && exit 1; sleep 0.2; done
  k=$((k+1))
done
exit 0
`

func TestJobContractFourNodes(t *testing.T) {
	e, img := jobEnv(t)
	j := submit(t, e, api.JobSpec{Name: "Contract Test", Image: img, Nodes: 4, AppURL: "s3://code/new/",
		DataURL: "obs://code/data/", TrainURL: "s3://code/out/", Env: map[string]string{"EXTRA": "yes"}, Policy: api.PolicyIndex0,
		Command: []string{"/bin/sh", "-c", contractScript}})
	j = waitFinal(t, e, j.ID, 6*time.Minute)
	logs := logsOf(t, e, j.ID, -1)
	if j.Status != api.StatusCompleted {
		t.Fatalf("status %s (%s)\n%s", j.Status, j.Reason, logs)
	}
	for i := range 4 {
		for _, want := range []string{
			fmt.Sprintf("%d|task=%d of=4 app=s3://code/new/ data=obs://code/data/ train=s3://code/out/ job=%s batchjob=%s", i, i, j.ID, j.ID),
			fmt.Sprintf("%d|instance=contract-test-%d ip=", i, i),
			fmt.Sprintf("hosts=4 vc=%d/4 workers=contract-test-0,contract-test-1,contract-test-2,contract-test-3 gpus=0 extra=yes", i),
			fmt.Sprintf("%d|s3=http://", i),
			fmt.Sprintf("region=%s key=", e.Creds.Region),
			fmt.Sprintf("%d|peer3=contract-test-3:2222", i),
			fmt.Sprintf("%d|resolved0", i), fmt.Sprintf("%d|resolved3", i),
			fmt.Sprintf("%d|s3 reachable", i),
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q", want)
			}
		}
	}
	// Each job holds a key of its own, never the emulator's.
	for _, m := range regexp.MustCompile(`region=\S+ key=(\S*) user=1101`).FindAllStringSubmatch(logs, -1) {
		if m[1] == "" || m[1] == e.Creds.AccessKey {
			t.Errorf("task's AWS_ACCESS_KEY_ID is %q: want the job's own key, not the emulator's (%s)", m[1], e.Creds.AccessKey)
		}
	}
	ipLine := regexp.MustCompile(`(?m)^(\d)\|instance=\S+ ip=(\d+\.\d+\.\d+\.\d+) maip=(\S+) `)
	ips := map[string]bool{}
	for _, m := range ipLine.FindAllStringSubmatch(logs, -1) {
		if m[2] != m[3] {
			t.Errorf("task %s: BATCH_TASK_CURRENT_HOST_IP %s but MA_CURRENT_IP %s", m[1], m[2], m[3])
		}
		ips[m[2]] = true
	}
	if len(ips) != 4 {
		t.Errorf("want 4 distinct task addresses, got %v", ips)
	}
	for i := 1; i < 4; i++ {
		if !strings.Contains(logs, fmt.Sprintf("0|hello-from-%d", i)) {
			t.Errorf("task 0 did not fetch task %d's greeting over BATCH_CUSTOM%d_HOSTS", i, i)
		}
	}
	if strings.Contains(logs, "s3="+"http://127.0.0.1") {
		t.Errorf("containers were given the loopback S3 address")
	}
	// Each status change is timestamped, in order.
	var seen []string
	for _, ev := range j.Events {
		if ev.Status != "" {
			seen = append(seen, string(ev.Status))
		}
	}
	if got := strings.Join(seen, ","); got != "creating,auditing,pending,running,completed" {
		t.Errorf("status changes %s", got)
	}
	for _, tk := range j.Tasks {
		want := "stopped" // the peers, once task 0 decided
		if tk.Index == 0 {
			want = "succeeded"
		}
		if tk.ExitCode == nil || tk.Status != want || tk.Started.IsZero() || tk.Finished.IsZero() {
			t.Errorf("task %d: %s exit %v, want %s", tk.Index, tk.Status, tk.ExitCode, want)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("logs:\n%s", logs)
		for _, ev := range j.Events {
			t.Logf("%s %s %s", ev.Time.Format("15:04:05.000"), ev.Status, ev.Message)
		}
	}
	assertNoLeftovers(t, j.ID)
}

func TestJobOneTaskFailingStopsTheRest(t *testing.T) {
	e, img := jobEnv(t)
	start := time.Now()
	j := submit(t, e, api.JobSpec{Name: "fail", Image: img, Nodes: 3, AppURL: "s3://code/x/",
		Command: []string{`if [ "$DLS_TASK_INDEX" = 1 ]; then sleep 1; echo bad >&2; exit 3; fi; exec sleep 300`}})
	j = waitFinal(t, e, j.ID, 2*time.Minute)
	if j.Status != api.StatusFailed || j.ExitCode == nil || *j.ExitCode != 3 || !strings.Contains(j.Reason, "task 1 exited with code 3") {
		t.Fatalf("got %s exit %v reason %q", j.Status, j.ExitCode, j.Reason)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("the other tasks were not stopped promptly: job took %s", d)
	}
	if !strings.Contains(logsOf(t, e, j.ID, 1), "1|bad") {
		t.Errorf("stderr of task 1 missing from its log")
	}
	assertNoLeftovers(t, j.ID)

	// The CLI passes the failing task's exit code through.
	r := e.Run("job", "submit", "--name", "fail2", "--image", img, "--app-url", "s3://code/x/", "--follow", "--", "/bin/sh", "-c", "echo out; exit 7")
	if r.Code != 7 || !strings.Contains(r.Stdout, "[task 0] out") {
		t.Errorf("job submit --follow: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}

func TestJobIndex0PolicyTimeoutAndStop(t *testing.T) {
	e, img := jobEnv(t)
	// Parameter servers that never exit: task 0 decides.
	ps := submit(t, e, api.JobSpec{Name: "ps", Image: img, Nodes: 3, AppURL: "s3://code/x/", Policy: api.PolicyIndex0,
		Command: []string{`if [ "$DLS_TASK_INDEX" = 0 ]; then sleep 1; exit 0; fi; exec sleep 300`}})
	tm := submit(t, e, api.JobSpec{Name: "slow", Image: img, AppURL: "s3://code/x/", Timeout: api.Duration(3 * time.Second),
		Command: []string{"sleep", "300"}})
	st := submit(t, e, api.JobSpec{Name: "stopme", Image: img, AppURL: "s3://code/x/", Command: []string{"sleep", "300"}})

	if j := waitFinal(t, e, ps.ID, 2*time.Minute); j.Status != api.StatusCompleted {
		t.Errorf("index0: %s %q", j.Status, j.Reason)
	}
	if j := waitFinal(t, e, tm.ID, 2*time.Minute); j.Status != api.StatusTimeout || j.ExitCode == nil || *j.ExitCode != 124 {
		t.Errorf("timeout: %s %v %q", j.Status, j.ExitCode, j.Reason)
	}
	waitStatus(t, e, st.ID, api.StatusRunning, time.Minute)
	if r := e.Run("job", "stop", st.ID); r.Code != 0 {
		t.Fatalf("job stop: %d %s", r.Code, r.Stderr)
	}
	if j := waitFinal(t, e, st.ID, time.Minute); j.Status != api.StatusCanceled {
		t.Errorf("stop: %s %q", j.Status, j.Reason)
	}
	for _, id := range []string{ps.ID, tm.ID, st.ID} {
		assertNoLeftovers(t, id)
	}
	r := e.Run("job", "list", "-o", "json")
	if r.Code != 0 || strings.Count(r.Stdout, `"id": "job-`) != 3 {
		t.Errorf("job list: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	r = e.Run("job", "describe", st.ID)
	if r.Code != 0 || !strings.Contains(r.Stdout, "canceled") || !strings.Contains(r.Stdout, "stopme-0") {
		t.Errorf("job describe: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := e.Run("job", "delete", st.ID); r.Code != 0 {
		t.Errorf("job delete: %d %s", r.Code, r.Stderr)
	}
	if _, err := e.Client().Job(context.Background(), st.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("deleted job still there: %v", err)
	}
}

func TestJobRetries(t *testing.T) {
	e, img := jobEnv(t)
	j := submit(t, e, api.JobSpec{Name: "retry", Image: img, AppURL: "s3://code/x/", LogURL: "s3://code/logs", Retries: 2, Command: []string{"/bin/sh", "-c", "echo attempt; exit 5"}})
	j = waitFinal(t, e, j.ID, 2*time.Minute)
	if j.Status != api.StatusFailed || j.Attempt != 2 {
		t.Fatalf("retries: %s attempt %d", j.Status, j.Attempt)
	}
	if n := strings.Count(logsOf(t, e, j.ID, 0), "attempt"); n != 3 {
		t.Errorf("the task ran %d times, want 3", n)
	}
	// The log went to the log dir at the end.
	obj, err := e.S3Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("code"), Key: aws.String("logs/" + j.ID + "/task-0.log")})
	if err != nil {
		t.Fatalf("uploaded log: %v", err)
	}
	b, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if strings.Count(string(b), "attempt") != 3 {
		t.Errorf("uploaded log:\n%s", b)
	}
	assertNoLeftovers(t, j.ID)
}

func TestJobValidationErrors(t *testing.T) {
	e, img := jobEnv(t)
	base := api.JobSpec{Name: "v", Image: img, AppURL: "s3://code/x/", Command: []string{"true"}}
	for _, c := range []struct {
		change func(*api.JobSpec)
		want   string
	}{
		{func(s *api.JobSpec) { s.Image = "nope/missing:1" }, "not in malocal's registry"},
		{func(s *api.JobSpec) { s.Nodes = -1 }, "nodes: must be between 1"},
		{func(s *api.JobSpec) { s.Command = nil }, "command: required"},
		{func(s *api.JobSpec) { s.AppURL = "http://code/x" }, "app_url"},
		{func(s *api.JobSpec) { s.DataURL = "s3://no-such-bucket/d/" }, `bucket "no-such-bucket" does not exist`},
		{func(s *api.JobSpec) { s.Flavor.GPUs = 1 }, "GPUs"},
		{func(s *api.JobSpec) { s.Policy = "most" }, "policy"},
	} {
		s := base
		c.change(&s)
		_, err := e.Client().SubmitJob(context.Background(), s)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an invalid error with %q, got %v", c.want, err)
		}
	}
}

func TestJobSurvivesEmulatorKill(t *testing.T) {
	e, img := jobEnv(t)
	j := submit(t, e, api.JobSpec{Name: "survivor", Image: img, Nodes: 2, AppURL: "s3://code/x/",
		Command: []string{`i=0; while [ $i -lt 8 ]; do echo tick-$i; i=$((i+1)); sleep 1; done; exit 0`}})
	waitStatus(t, e, j.ID, api.StatusRunning, time.Minute)
	time.Sleep(2 * time.Second)
	e.Signal(syscall.SIGKILL, 10*time.Second)
	e2 := e.Restart()
	j = waitFinal(t, e2, j.ID, 2*time.Minute)
	if j.Status != api.StatusCompleted {
		t.Fatalf("after restart: %s %q", j.Status, j.Reason)
	}
	logs := logsOf(t, e2, j.ID, 0)
	for i := range 8 {
		if strings.Count(logs, fmt.Sprintf("tick-%d\n", i)) != 1 {
			t.Errorf("tick-%d appears %d times in task 0's log, want once:\n%s", i, strings.Count(logs, fmt.Sprintf("tick-%d\n", i)), logs)
		}
	}
	found := false
	for _, ev := range j.Events {
		found = found || strings.Contains(ev.Message, "re-attach")
	}
	if !found {
		t.Errorf("no re-attach event: %+v", j.Events)
	}
	assertNoLeftovers(t, j.ID)
}

func TestJobSixteenNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("16 containers: not in -short")
	}
	e, img := jobEnv(t)
	j := submit(t, e, api.JobSpec{Name: "wide", Image: img, Nodes: 16, AppURL: "s3://code/x/",
		// Peers start in parallel: a script waits for its peers' names, as on
		// the platform. Task 0 hears from every peer, then decides.
		Policy: api.PolicyIndex0,
		Command: []string{`end=$(( $(date +%s) + 120 ))
until nslookup "${BATCH_CUSTOM15_HOSTS%:*}" >/dev/null 2>&1; do [ $(date +%s) -gt $end ] && exit 1; sleep 0.3; done
echo "ok $DLS_TASK_INDEX"
if [ "$DLS_TASK_INDEX" != 0 ]; then
  mkdir -p /tmp/www && echo "peer $DLS_TASK_INDEX" > /tmp/www/id
  exec httpd -f -p "${BATCH_CUSTOM0_HOSTS#*:}" -h /tmp/www
fi
k=1
while [ $k -lt 16 ]; do
  eval hp=\$BATCH_CUSTOM${k}_HOSTS
  end=$(( $(date +%s) + 120 ))
  until wget -q -O - "http://$hp/id" 2>/dev/null; do [ $(date +%s) -gt $end ] && exit 1; sleep 0.2; done
  k=$((k+1))
done`}})
	j = waitFinal(t, e, j.ID, 8*time.Minute)
	if j.Status != api.StatusCompleted {
		t.Fatalf("16 nodes: %s %q", j.Status, j.Reason)
	}
	logs := logsOf(t, e, j.ID, -1)
	for i := range 16 {
		if !strings.Contains(logs, fmt.Sprintf("%d|ok %d", i, i)) {
			t.Errorf("task %d did not resolve task 15", i)
		}
		if i > 0 && !strings.Contains(logs, fmt.Sprintf("0|peer %d", i)) {
			t.Errorf("task 0 did not hear from task %d", i)
		}
	}
	assertNoLeftovers(t, j.ID)
}

func TestJobQueueBoundedByCapacity(t *testing.T) {
	e, img := jobEnv(t, WithArgs("--capacity-cpus", "1"))
	first := submit(t, e, api.JobSpec{Name: "first", Image: img, AppURL: "s3://code/x/", Flavor: api.Flavor{CPUs: 1}, Command: []string{"sleep", "300"}})
	waitStatus(t, e, first.ID, api.StatusRunning, time.Minute)
	second := submit(t, e, api.JobSpec{Name: "second", Image: img, AppURL: "s3://code/x/", Flavor: api.Flavor{CPUs: 0.5}, Command: []string{"true"}})
	waitStatus(t, e, second.ID, api.StatusPending, time.Minute)
	j, _ := e.Client().Job(context.Background(), second.ID)
	if j.QueuePosition != 1 {
		t.Errorf("queue position %d, want 1", j.QueuePosition)
	}
	if r := e.Run("job", "list"); !strings.Contains(r.Stdout, "pending (#1 in queue)") {
		t.Errorf("job list does not show the queue position:\n%s", r.Stdout)
	}
	// Too big for the machine: refused at submit with the numbers.
	_, err := e.Client().SubmitJob(context.Background(), api.JobSpec{Name: "big", Image: img, AppURL: "s3://code/x/", Nodes: 2, Flavor: api.Flavor{CPUs: 1}, Command: []string{"true"}})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "asks for 2 CPUs") {
		t.Errorf("oversized job: %v", err)
	}
	e.Client().StopJob(context.Background(), first.ID)
	if j := waitFinal(t, e, second.ID, time.Minute); j.Status != api.StatusCompleted {
		t.Errorf("queued job after capacity freed: %s %q", j.Status, j.Reason)
	}
}

func TestJobFailsWhenItsContainersVanishDuringADowntime(t *testing.T) {
	e, img := jobEnv(t)
	j := submit(t, e, api.JobSpec{Name: "vanish", Image: img, Nodes: 2, AppURL: "s3://code/x/", Command: []string{"sleep", "300"}})
	waitStatus(t, e, j.ID, api.StatusRunning, time.Minute)
	// Wait until both tasks run, then stop the emulator cleanly.
	deadline := time.Now().Add(time.Minute)
	var victim string
	for {
		cur, _ := e.Client().Job(context.Background(), j.ID)
		if cur.Tasks[0].Status == "running" && cur.Tasks[1].Status == "running" {
			victim = cur.Tasks[1].Container
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("containers not created")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := e.Stop(); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	out, err := exec.Command("docker", "ps", "-q", "--filter", "label=malocal.job="+j.ID).Output()
	if n := len(strings.Fields(string(out))); err != nil || n != 2 {
		t.Fatalf("a clean stop should leave the job's 2 containers running, found %d (%v)", n, err)
	}
	if out, err := exec.Command("docker", "rm", "-f", victim).CombinedOutput(); err != nil {
		t.Fatalf("removing task 1's container: %v %s", err, out)
	}
	e2 := e.Restart()
	got := waitFinal(t, e2, j.ID, 2*time.Minute)
	if got.Status != api.StatusFailed || !strings.Contains(got.Reason, "task 1's container") || !strings.Contains(got.Reason, "gone") {
		t.Errorf("after its container vanished: %s %q", got.Status, got.Reason)
	}
	assertNoLeftovers(t, j.ID)
}

func TestJobOnAnImageNotBuiltOnABaseFailsTheAudit(t *testing.T) {
	e, _ := jobEnv(t)
	// A squashed image of its own: no official base's layers under it.
	img, err := mutate.AppendLayers(empty.Image, fileLayer("bin/sh", "#!fake\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "test/rogue:1", img)
	r := e.Run("job", "submit", "--name", "rogue", "--image", "test/rogue:1", "--app-url", "s3://code/x/", "--wait", "--", "true")
	if r.Code != 3 || !strings.Contains(r.Stderr, "audit_failed") || !strings.Contains(r.Stderr, "MA-BASE-001") {
		t.Fatalf("job on a rogue image: exit %d\n%s", r.Code, r.Stderr)
	}
	// The job's log starts with the audit's reasons, as the guide says.
	list, err := e.Client().Jobs(context.Background(), "", "rogue")
	if err != nil || len(list) != 1 {
		t.Fatalf("jobs named rogue: %v %d", err, len(list))
	}
	j := list[0]
	if logs := logsOf(t, e, j.ID, 0); !strings.Contains(logs, "MA-BASE-001") {
		t.Errorf("task 0's log lacks the audit's reasons:\n%s", logs)
	}
	for _, task := range j.Tasks {
		if task.Status == "waiting" {
			t.Errorf("task %d of an audit_failed job still says waiting", task.Index)
		}
	}
	// The verdict is kept: submitting the image again is refused at once
	// (422 with the stored report), and no job is made.
	start := time.Now()
	_, err = e.Client().SubmitJob(context.Background(), api.JobSpec{Name: "rogue2", Image: "test/rogue:1", AppURL: "s3://code/x/", Command: []string{"true"}})
	var re *api.RemoteError
	if !errors.As(err, &re) || re.Status != 422 || !strings.Contains(strings.Join(re.Audit, "\n"), "MA-BASE-001") {
		t.Fatalf("second submission: want 422 with the stored report, got %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cached verdict took %s", d)
	}
	r = e.Run("job", "submit", "--name", "rogue3", "--image", "test/rogue:1", "--app-url", "s3://code/x/", "--", "true")
	if r.Code != 3 || !strings.Contains(r.Stderr, "MA-BASE-001") || !strings.Contains(r.Stderr, "no job was made") {
		t.Errorf("job submit of a failed image: exit %d\n%s", r.Code, r.Stderr)
	}
	if again, err := e.Client().Jobs(context.Background(), "", "rogue"); err != nil || len(again) != 1 {
		t.Errorf("refused submissions made jobs: %d jobs named rogue*", len(again))
	}
	assertNoLeftovers(t, j.ID)
}

// Auditing first spares a job its audit: the emulator keeps one verdict
// per image, and the job's events and log say it came from the cache.
func TestJobUsesTheVerdictOfAnEarlierAudit(t *testing.T) {
	e, img := jobEnv(t)
	if r := e.Run("image", "audit", img); r.Code != 0 {
		t.Fatalf("image audit %s: exit %d\n%s%s", img, r.Code, r.Stdout, r.Stderr)
	}
	j := submit(t, e, api.JobSpec{Name: "cached", Image: img, AppURL: "s3://code/x/", Command: []string{"true"}})
	j = waitFinal(t, e, j.ID, 3*time.Minute)
	if j.Status != api.StatusCompleted {
		t.Fatalf("status %s (%s)", j.Status, j.Reason)
	}
	events := ""
	for _, ev := range j.Events {
		events += ev.Message + "\n"
	}
	if !strings.Contains(events, "from the cache, audited ") {
		t.Errorf("events do not say the verdict came from the cache:\n%s", events)
	}
	if logs := logsOf(t, e, j.ID, 0); !strings.Contains(logs, "audit verdict from the cache (audited ") {
		t.Errorf("task 0's log does not start with the cached verdict:\n%s", logs)
	}
}

// A fork loop in a training script meets the container's pids limit
// instead of taking the host's: the job fails, the emulator goes on.
func TestJobForkLoopIsContained(t *testing.T) {
	e, img := jobEnv(t, WithArgs("--pids-limit", "64"))
	// The loop's shell dies at its first refused fork; the sleeps it
	// started keep every pid, as a runaway loop's workers do, while the
	// task waits 4 s without forking (reading /proc/uptime) and fails.
	j := submit(t, e, api.JobSpec{Name: "forks", Image: img, AppURL: "s3://code/x/", Command: []string{"/bin/sh", "-c",
		`(i=0; while [ $i -lt 500 ]; do sleep 60 & i=$((i+1)); done; echo "started 500")
read s _ </proc/uptime; s=${s%.*}
while read n _ </proc/uptime; [ ${n%.*} -lt $((s+4)) ]; do :; done
exit 3`}})
	j = waitFinal(t, e, j.ID, 3*time.Minute)
	logs := logsOf(t, e, j.ID, 0)
	if j.Status != api.StatusFailed || strings.Contains(logs, "started 500") {
		t.Fatalf("fork loop under a pids limit of 64: status %s (%s)\n%s", j.Status, j.Reason, logs)
	}
	// The reason names the limit, not only the exit code.
	t.Logf("reason: %s", j.Reason)
	for _, want := range []string{"task 0's processes reached their limit of 64", "--pids-limit", "code 3"} {
		if !strings.Contains(j.Reason, want) {
			t.Errorf("reason %q lacks %q", j.Reason, want)
		}
	}
	if r := e.Run("status"); r.Code != 0 {
		t.Errorf("status after the fork loop: exit %d\n%s", r.Code, r.Stderr)
	}
}
