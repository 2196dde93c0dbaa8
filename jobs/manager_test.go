package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeImages resolves every image to one digest.
type fakeImages struct{}

func (fakeImages) Resolve(_ context.Context, image string) (string, string, error) {
	if image == "missing:1" {
		return "", "", Invalidf("image: missing:1 is not in the registry")
	}
	return "team/" + image, "sha256:abc", nil
}

// fakeBackend runs tasks that end when the test says so.
type fakeBackend struct {
	mu      sync.Mutex
	runs    map[string]*fakeRun
	started chan string
	cleaned []string
	runErr  error
	// reattach is what the engine knows of a job's tasks after a
	// restart: "running", "exited:<code>" or "gone".
	reattach map[int]string
	exitedAt time.Time
}

type fakeRun struct {
	j     *Job
	r     Reporter
	exits chan [2]int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{runs: map[string]*fakeRun{}, started: make(chan string, 100)}
}

func (b *fakeBackend) Run(ctx context.Context, j *Job, r Reporter) error {
	if b.runErr != nil {
		return b.runErr
	}
	run := &fakeRun{j: j, r: r, exits: make(chan [2]int, 16)}
	left := map[int]bool{}
	for i, t := range j.Tasks {
		if t.Status.Final() {
			continue
		}
		if t.Container != "" && b.reattach != nil {
			switch st := b.reattach[i]; {
			case st == "gone":
				r.Exited(i, Exit{Code: -1, Reason: "container " + t.Container + " is gone (removed while the emulator was down)"})
				continue
			case strings.HasPrefix(st, "exited:"):
				var code int
				fmt.Sscanf(st, "exited:%d", &code)
				r.Exited(i, Exit{Code: code, At: b.exitedAt})
				continue
			}
			left[i] = true
			continue
		}
		r.Created(i, fmt.Sprintf("c-%s-%d", j.ID, i), nil)
		r.Running(i, time.Now())
		left[i] = true
	}
	if l, err := r.Log(0); err == nil {
		io.WriteString(l.Stdout(), time.Now().UTC().Format(time.RFC3339Nano)+" attempt "+fmt.Sprint(j.Attempt)+"\n")
	}
	b.mu.Lock()
	b.runs[j.ID] = run
	b.mu.Unlock()
	b.started <- j.ID
	for len(left) > 0 {
		select {
		case e := <-run.exits:
			if left[e[0]] {
				delete(left, e[0])
				r.Exited(e[0], Exit{Code: e[1]})
			}
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrDetach) {
				return nil
			}
			for i := range left {
				r.Exited(i, Exit{Code: 137, Stopped: true})
			}
			return nil
		}
	}
	return nil
}

func (b *fakeBackend) Cleanup(_ context.Context, j *Job) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleaned = append(b.cleaned, j.ID)
	return nil
}

// exit ends task i of a running job with code.
func (b *fakeBackend) exit(t *testing.T, id string, i, code int) {
	t.Helper()
	b.mu.Lock()
	run := b.runs[id]
	b.mu.Unlock()
	if run == nil {
		t.Fatalf("job %s is not running", id)
	}
	run.exits <- [2]int{i, code}
}

// waitStarted waits for the backend to run job id.
func (b *fakeBackend) waitStarted(t *testing.T, id string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-b.started:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("job %s never started", id)
		}
	}
}

// fakeAuditor answers a verdict, after release when blocking.
type fakeAuditor struct {
	verdict Verdict
	err     error
	cached  *Verdict
	block   chan struct{}
}

func (a *fakeAuditor) Audit(ctx context.Context, _, _ string) (Verdict, error) {
	if a.block != nil {
		select {
		case <-a.block:
		case <-ctx.Done():
			return Verdict{}, ctx.Err()
		}
	}
	return a.verdict, a.err
}

func (a *fakeAuditor) Cached(context.Context, string) (Verdict, bool, error) {
	if a.cached == nil {
		return Verdict{}, false, nil
	}
	return *a.cached, true, nil
}

// fakeCreds issues "AK-<job>" keys and remembers revocations.
type fakeCreds struct {
	mu      sync.Mutex
	grants  map[string][]Grant
	revoked []string
}

func (c *fakeCreds) Issue(_ context.Context, id string, g []Grant) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.grants == nil {
		c.grants = map[string][]Grant{}
	}
	c.grants[id] = g
	return "AK-" + id, "SK-" + id, nil
}

func (c *fakeCreds) Revoke(_ context.Context, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revoked = append(c.revoked, id)
	return nil
}

type env struct {
	m   *Manager
	b   *fakeBackend
	cfg Config
}

func newEnv(t *testing.T, change func(*Config)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := OpenStore(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	cfg := Config{Store: st, Backend: b, LogDir: filepath.Join(dir, "logs"), Images: fakeImages{}, Capacity: Capacity{GPUs: 4}}
	if change != nil {
		change(&cfg)
	}
	return startEnv(t, cfg, b)
}

func startEnv(t *testing.T, cfg Config, b *fakeBackend) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m, err := NewManager(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		m.Shutdown()
		cfg.Store.Close()
	})
	return &env{m: m, b: b, cfg: cfg}
}

func spec(name string, nodes int) Spec {
	return Spec{Name: name, Image: "img:1", Command: []string{"train"}, Nodes: nodes, AppURL: "s3://bkt/code/"}
}

func (e *env) submit(t *testing.T, s Spec) *Job {
	t.Helper()
	j, err := e.m.Submit(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (e *env) wait(t *testing.T, id string, what string, ok func(*Job) bool) *Job {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		j, err := e.m.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: waited for %s; it is %s (%s), tasks %+v", id, what, j.Status, j.Reason, j.Tasks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) waitStatus(t *testing.T, id string, s JobStatus) *Job {
	t.Helper()
	return e.wait(t, id, string(s), func(j *Job) bool { return j.Status == s })
}

func (e *env) waitFinal(t *testing.T, id string) *Job {
	t.Helper()
	return e.wait(t, id, "a final status", func(j *Job) bool { return j.Status.Final() })
}

func taskStatuses(j *Job) string {
	var s []string
	for _, t := range j.Tasks {
		s = append(s, string(t.Status))
	}
	return strings.Join(s, ",")
}

func TestQueueIsFirstComeFirstServedWithPositions(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Capacity.CPUs = 2 })
	s := spec("q", 1)
	s.Flavor.CPUs = 2
	a := e.submit(t, s)
	e.b.waitStarted(t, a.ID)
	// Audits finish in any order; the queue keeps submission order.
	b, c := e.submit(t, s), e.submit(t, s)
	e.waitStatus(t, b.ID, StatusPending)
	e.waitStatus(t, c.ID, StatusPending)
	if jb, _ := e.m.Get(context.Background(), b.ID); jb.QueuePosition != 1 {
		t.Errorf("b's position %d, want 1", jb.QueuePosition)
	}
	if jc, _ := e.m.Get(context.Background(), c.ID); jc.QueuePosition != 2 {
		t.Errorf("c's position %d, want 2", jc.QueuePosition)
	}
	list, _ := e.m.List(context.Background(), string(StatusPending), "")
	if len(list) != 2 || list[0].ID != b.ID || list[0].QueuePosition != 1 || list[1].QueuePosition != 2 {
		t.Errorf("pending list %+v", list)
	}
	e.b.exit(t, a.ID, 0, 0)
	e.b.waitStarted(t, b.ID)
	if jc, _ := e.m.Get(context.Background(), c.ID); jc.QueuePosition != 1 || jc.Status != StatusPending {
		t.Errorf("c: %s at %d, want pending at 1", jc.Status, jc.QueuePosition)
	}
	if ja := e.waitFinal(t, a.ID); ja.Status != StatusCompleted || *ja.ExitCode != 0 {
		t.Errorf("a: %s", ja.Status)
	}
}

func TestCapacityCountsCPUsMemoryAndGPUs(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Capacity = Capacity{CPUs: 8, Memory: 8 << 30, GPUs: 2} })
	for _, c := range []struct {
		name  string
		first Flavor
		next  Flavor
	}{
		{"gpus", Flavor{GPUs: 2}, Flavor{GPUs: 1}},
		{"memory", Flavor{Memory: 6 << 30}, Flavor{Memory: 4 << 30}},
		{"cpus", Flavor{CPUs: 6}, Flavor{CPUs: 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := spec("cap", 1)
			s.Flavor = c.first
			a := e.submit(t, s)
			e.b.waitStarted(t, a.ID)
			s.Flavor = c.next
			b := e.submit(t, s)
			e.waitStatus(t, b.ID, StatusPending)
			time.Sleep(20 * time.Millisecond)
			if j, _ := e.m.Get(context.Background(), b.ID); j.Status != StatusPending {
				t.Fatalf("second job %s while the first holds the %s", j.Status, c.name)
			}
			e.b.exit(t, a.ID, 0, 0)
			e.b.waitStarted(t, b.ID)
			e.b.exit(t, b.ID, 0, 0)
			e.waitFinal(t, b.ID)
		})
	}
	s := spec("big", 2)
	s.Flavor.GPUs = 2
	if _, err := e.m.Submit(context.Background(), s); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "flavor.gpus") {
		t.Errorf("4 GPUs on a 2-GPU machine: %v", err)
	}
	s = spec("big", 1)
	s.Flavor.CPUs = 9
	if _, err := e.m.Submit(context.Background(), s); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "flavor.cpus") {
		t.Errorf("9 CPUs of 8: %v", err)
	}
	s.Flavor = Flavor{Memory: 9 << 30}
	if _, err := e.m.Submit(context.Background(), s); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "flavor.memory") {
		t.Errorf("9g of 8g: %v", err)
	}
}

func TestPolicyAllFailsOnTheFirstFailureAndStopsTheRest(t *testing.T) {
	e := newEnv(t, nil)
	j := e.submit(t, spec("all", 3))
	e.b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 0, 0)
	e.b.exit(t, j.ID, 1, 3)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusFailed || *got.ExitCode != 3 || got.Reason != "task 1 exited with code 3" {
		t.Errorf("job: %s %v %q", got.Status, *got.ExitCode, got.Reason)
	}
	if s := taskStatuses(got); s != "succeeded,failed,stopped" {
		t.Errorf("tasks %s", s)
	}
	if len(e.b.cleaned) != 1 {
		t.Errorf("cleanups %v", e.b.cleaned)
	}
}

func TestPolicyAllCompletesWhenEveryTaskSucceeds(t *testing.T) {
	e := newEnv(t, nil)
	j := e.submit(t, spec("all", 2))
	e.b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 1, 0)
	e.b.exit(t, j.ID, 0, 0)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusCompleted || got.Reason != "" || taskStatuses(got) != "succeeded,succeeded" {
		t.Errorf("job: %s %q %s", got.Status, got.Reason, taskStatuses(got))
	}
	if ev := got.Events[len(got.Events)-1]; ev.Status != StatusCompleted || ev.Message != "all tasks done" {
		t.Errorf("last event %+v", ev)
	}
}

func TestPolicyIndex0LetsTaskZeroDecide(t *testing.T) {
	e := newEnv(t, nil)
	s := spec("i0", 3)
	s.Policy = PolicyIndex0
	j := e.submit(t, s)
	e.b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 1, 5) // a failed peer does not decide
	time.Sleep(30 * time.Millisecond)
	if got, _ := e.m.Get(context.Background(), j.ID); got.Status != StatusRunning {
		t.Fatalf("a peer's failure decided an index0 job: %s", got.Status)
	}
	e.b.exit(t, j.ID, 0, 0)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusCompleted || taskStatuses(got) != "succeeded,failed,stopped" {
		t.Errorf("job: %s, tasks %s", got.Status, taskStatuses(got))
	}

	j = e.submit(t, s)
	e.b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 0, 2)
	got = e.waitFinal(t, j.ID)
	if got.Status != StatusFailed || *got.ExitCode != 2 || got.Reason != "task 0 exited with code 2" {
		t.Errorf("job: %s %q", got.Status, got.Reason)
	}
}

func TestRetriesRunEveryTaskAgain(t *testing.T) {
	e := newEnv(t, nil)
	s := spec("retry", 2)
	s.Retries = 1
	j := e.submit(t, s)
	e.b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 1, 1)
	e.b.waitStarted(t, j.ID)
	mid, _ := e.m.Get(context.Background(), j.ID)
	if mid.Attempt != 1 || !strings.Contains(mid.Events[len(mid.Events)-1].Message, "retrying (attempt 2 of 2)") &&
		!hasEvent(mid, "retrying (attempt 2 of 2)") {
		t.Errorf("after the first failure: attempt %d, events %+v", mid.Attempt, mid.Events)
	}
	e.b.exit(t, j.ID, 0, 0)
	e.b.exit(t, j.ID, 1, 0)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusCompleted || got.Attempt != 1 {
		t.Errorf("job: %s attempt %d", got.Status, got.Attempt)
	}

	// No retry left: the second failure is final.
	j = e.submit(t, s)
	for range 2 {
		e.b.waitStarted(t, j.ID)
		e.b.exit(t, j.ID, 0, 7)
	}
	if got := e.waitFinal(t, j.ID); got.Status != StatusFailed || got.Attempt != 1 || *got.ExitCode != 7 {
		t.Errorf("job: %s attempt %d", got.Status, got.Attempt)
	}
}

func hasEvent(j *Job, part string) bool {
	for _, ev := range j.Events {
		if strings.Contains(ev.Message, part) {
			return true
		}
	}
	return false
}

func TestTimeLimitEndsTheJob(t *testing.T) {
	e := newEnv(t, nil)
	s := spec("slow", 2)
	s.Timeout = 100 * time.Millisecond
	s.Retries = 3
	j := e.submit(t, s)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusTimeout || *got.ExitCode != 124 || got.Reason != "time limit of 100ms reached" || got.Attempt != 0 {
		t.Errorf("job: %s %q attempt %d", got.Status, got.Reason, got.Attempt)
	}
	if taskStatuses(got) != "stopped,stopped" {
		t.Errorf("tasks %s", taskStatuses(got))
	}
}

func TestStopInEveryState(t *testing.T) {
	block := make(chan struct{})
	aud := &fakeAuditor{verdict: Verdict{Passed: true, Lines: []string{"ok"}}, block: block}
	e := newEnv(t, func(c *Config) { c.Auditor = aud; c.Capacity.CPUs = 1 })
	ctx := context.Background()

	// Auditing.
	a := e.submit(t, spec("auditing", 2))
	e.waitStatus(t, a.ID, StatusAuditing)
	if _, err := e.m.Stop(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	close(block)
	got := e.waitFinal(t, a.ID)
	if got.Status != StatusCanceled || taskStatuses(got) != "canceled,canceled" {
		t.Errorf("stopped while auditing: %s, tasks %s", got.Status, taskStatuses(got))
	}

	// Running, and queued behind it.
	s := spec("running", 1)
	s.Flavor.CPUs = 1
	r := e.submit(t, s)
	e.b.waitStarted(t, r.ID)
	q := e.submit(t, s)
	e.waitStatus(t, q.ID, StatusPending)
	if _, err := e.m.Stop(ctx, q.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.waitFinal(t, q.ID); got.Status != StatusCanceled || got.Reason != "stopped by the user before it ran" || got.QueuePosition != 0 {
		t.Errorf("stopped while queued: %s %q", got.Status, got.Reason)
	}
	if _, err := e.m.Stop(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	got = e.waitFinal(t, r.ID)
	if got.Status != StatusCanceled || *got.ExitCode != -1 || taskStatuses(got) != "stopped" {
		t.Errorf("stopped while running: %s, tasks %s", got.Status, taskStatuses(got))
	}

	// Final: a conflict that says the status.
	if _, err := e.m.Stop(ctx, r.ID); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "already canceled") {
		t.Errorf("stop of a final job: %v", err)
	}
	if _, err := e.m.Stop(ctx, "job-nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stop of no job: %v", err)
	}
}

func TestSubmitFailsWhenTheJobCannotBeStored(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Store.db.Close()
	_, err := e.m.Submit(context.Background(), spec("lost", 1))
	if err == nil || !strings.Contains(err.Error(), "not submitted") {
		t.Fatalf("submit with a broken store: %v", err)
	}
	select {
	case id := <-e.b.started:
		t.Errorf("job %s ran though it was never stored", id)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestSubmitRefusesBadInputAndMissingImages(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Buckets = fakeBuckets{"bkt": true} })
	if _, err := e.m.Submit(context.Background(), Spec{Name: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty spec: %v", err)
	}
	s := spec("img", 1)
	s.Image = "missing:1"
	if _, err := e.m.Submit(context.Background(), s); !errors.Is(err, ErrInvalid) {
		t.Errorf("missing image: %v", err)
	}
	s = spec("bkt", 1)
	s.TrainURL = "s3://nobucket/out/"
	if _, err := e.m.Submit(context.Background(), s); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `train_url: bucket "nobucket"`) {
		t.Errorf("missing bucket: %v", err)
	}
}

type fakeBuckets map[string]bool

func (b fakeBuckets) BucketExists(_ context.Context, name string) (bool, error) { return b[name], nil }

func TestBackendErrorFailsTheJob(t *testing.T) {
	e := newEnv(t, nil)
	e.b.runErr = errors.New("the engine refused: no space left")
	j := e.submit(t, spec("err", 2))
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusFailed || got.Reason != "the engine refused: no space left" || taskStatuses(got) != "canceled,canceled" {
		t.Errorf("job: %s %q tasks %s", got.Status, got.Reason, taskStatuses(got))
	}
}

func TestCachedFailingVerdictRefusesTheJob(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	aud := &fakeAuditor{cached: &Verdict{Passed: false, Cached: true, AuditedAt: at, Lines: []string{"image team/img:1", "R3 layer 2 /bin/ls modified", "verdict: FAIL"}}}
	e := newEnv(t, func(c *Config) { c.Auditor = aud })
	_, err := e.m.Submit(context.Background(), spec("bad", 1))
	var ar *AuditRefusedError
	if !errors.As(err, &ar) || ar.Digest != "sha256:abc" || len(ar.Verdict.Lines) != 3 || !strings.Contains(err.Error(), "R3 layer 2 /bin/ls") {
		t.Fatalf("submit of a failed image: %v", err)
	}
	if list, _ := e.m.List(context.Background(), "", ""); len(list) != 0 {
		t.Errorf("a refused job was made: %+v", list)
	}
}

func TestAuditReportHeadsTaskZerosLog(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	aud := &fakeAuditor{verdict: Verdict{Passed: true, Cached: true, AuditedAt: at, Lines: []string{"image team/img:1@sha256:abc", "verdict: PASS"}}}
	e := newEnv(t, func(c *Config) { c.Auditor = aud })
	j := e.submit(t, spec("ok", 2))
	e.b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 0, 0)
	e.b.exit(t, j.ID, 1, 0)
	got := e.waitFinal(t, j.ID)
	if !hasEvent(got, "audit passed (from the cache, audited 2026-01-02T03:04:05Z); queued") {
		t.Errorf("events %+v", got.Events)
	}
	var lines []string
	e.m.Logs(context.Background(), j.ID, 0, false, func(l LogLine) error { lines = append(lines, l.Text); return nil })
	want := []string{"image team/img:1@sha256:abc", "verdict: PASS", "audit verdict from the cache (audited 2026-01-02T03:04:05Z)", "attempt 0"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("task 0's log: %q", lines)
	}
}

func TestFailedAuditEndsTheTasks(t *testing.T) {
	aud := &fakeAuditor{verdict: Verdict{Passed: false, Lines: []string{"R2 layer 1 /tmp/eicar: EICAR test file", "verdict: FAIL"}}}
	e := newEnv(t, func(c *Config) { c.Auditor = aud })
	j := e.submit(t, spec("bad", 2))
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusAuditFailed || taskStatuses(got) != "canceled,canceled" || len(got.Audit) != 2 {
		t.Errorf("job: %s tasks %s audit %q", got.Status, taskStatuses(got), got.Audit)
	}
	aud.err = errors.New("layer 2: corrupt stream")
	j = e.submit(t, spec("broken", 1))
	if got := e.waitFinal(t, j.ID); got.Status != StatusAuditFailed || !strings.Contains(got.Reason, "corrupt stream") {
		t.Errorf("job: %s %q", got.Status, got.Reason)
	}
}

func TestJobsGetTheirOwnKeyRevokedAtTheEnd(t *testing.T) {
	creds := &fakeCreds{}
	e := newEnv(t, func(c *Config) { c.Credentials = creds })
	s := spec("keyed", 1)
	s.TrainURL = "s3://bkt/out/"
	j := e.submit(t, s)
	e.b.waitStarted(t, j.ID)
	e.b.mu.Lock()
	run := e.b.runs[j.ID]
	e.b.mu.Unlock()
	if run.j.AccessKey != "AK-"+j.ID || run.j.SecretKey != "SK-"+j.ID {
		t.Errorf("the backend got keys %q %q", run.j.AccessKey, run.j.SecretKey)
	}
	if g := creds.grants[j.ID]; len(g) != 2 || g[0].Write || !g[1].Write {
		t.Errorf("grants %+v", g)
	}
	e.b.exit(t, j.ID, 0, 0)
	e.waitFinal(t, j.ID)
	deadline := time.Now().Add(2 * time.Second)
	for {
		creds.mu.Lock()
		n := len(creds.revoked)
		creds.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(creds.revoked) != 1 || creds.revoked[0] != j.ID {
		t.Errorf("revoked %v", creds.revoked)
	}
}

func TestReattachAfterRestartTellsWhatHappenedToEachTask(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().UTC().Add(-time.Minute)
	j := &Job{ID: "job-0001", Spec: spec("back", 3), Status: StatusRunning, Created: started, Started: started, ImageRepo: "r", ImageDigest: "d"}
	Normalize(&j.Spec)
	for i := range 3 {
		j.Tasks = append(j.Tasks, Task{Index: i, Host: HostName(j, i), Container: fmt.Sprintf("c%d", i), Status: TaskRunning, Started: started})
	}
	if err := st.Put(j); err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	exitedAt := started.Add(30 * time.Second)
	b.reattach, b.exitedAt = map[int]string{0: "running", 1: "exited:0", 2: "gone"}, exitedAt
	e := startEnv(t, Config{Store: st, Backend: b, LogDir: filepath.Join(dir, "logs"), Images: fakeImages{}}, b)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusFailed || got.Reason != "task 2's container c2 is gone (removed while the emulator was down)" {
		t.Errorf("job: %s %q", got.Status, got.Reason)
	}
	t1, t2 := got.Tasks[1], got.Tasks[2]
	if t1.Status != TaskSucceeded || *t1.ExitCode != 0 || !t1.Finished.Equal(exitedAt) {
		t.Errorf("task 1 (exited while down): %+v", t1)
	}
	if t2.Status != TaskFailed || *t2.ExitCode != -1 || t2.Reason == "" || t2.Finished.IsZero() {
		t.Errorf("task 2 (gone): %+v", t2)
	}
	if got.Tasks[0].Status != TaskStopped {
		t.Errorf("task 0 (running): %+v", got.Tasks[0])
	}
	if !hasEvent(got, "emulator restarted: re-attaching") {
		t.Errorf("events %+v", got.Events)
	}
}

func TestShutdownDetachesAndTheNextStartReattaches(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	cfg := Config{Store: st, Backend: b, LogDir: filepath.Join(dir, "logs"), Images: fakeImages{}}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := NewManager(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	j, err := m.Submit(context.Background(), spec("detach", 1))
	if err != nil {
		t.Fatal(err)
	}
	b.waitStarted(t, j.ID)
	cancel()
	m.Shutdown()
	if len(b.cleaned) != 0 {
		t.Errorf("a detached job was cleaned up: %v", b.cleaned)
	}
	stored, _ := st.Get(j.ID)
	if stored.Status != StatusRunning || stored.Tasks[0].Status != TaskRunning {
		t.Fatalf("stored after shutdown: %s %s", stored.Status, stored.Tasks[0].Status)
	}
	b.reattach = map[int]string{0: "running"}
	e := startEnv(t, cfg, b)
	b.waitStarted(t, j.ID)
	e.b.exit(t, j.ID, 0, 0)
	if got := e.waitFinal(t, j.ID); got.Status != StatusCompleted {
		t.Errorf("after re-attach: %s %q", got.Status, got.Reason)
	}
}

func TestQueuedAndAuditingJobsResumeAfterRestart(t *testing.T) {
	dir := t.TempDir()
	st, _ := OpenStore(filepath.Join(dir, "store.db"))
	now := time.Now().UTC()
	for i, s := range []JobStatus{StatusAuditing, StatusPending} {
		j := &Job{ID: fmt.Sprintf("job-%d", i), Spec: spec("resume", 1), Status: s, Created: now.Add(time.Duration(i) * time.Second)}
		Normalize(&j.Spec)
		j.Tasks = []Task{{Index: 0, Status: TaskWaiting}}
		st.Put(j)
	}
	b := newFakeBackend()
	e := startEnv(t, Config{Store: st, Backend: b, LogDir: filepath.Join(dir, "logs"), Images: fakeImages{}}, b)
	for _, id := range []string{"job-0", "job-1"} {
		b.waitStartedAny(t, 2)
		_ = id
	}
	for _, id := range []string{"job-0", "job-1"} {
		e.b.exit(t, id, 0, 0)
		if got := e.waitFinal(t, id); got.Status != StatusCompleted {
			t.Errorf("%s: %s", id, got.Status)
		}
	}
}

// waitStartedAny waits until n jobs run.
func (b *fakeBackend) waitStartedAny(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.runs)
		b.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs run, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeleteRemovesAFinishedJobAndItsLogs(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	j := e.submit(t, spec("del", 1))
	e.b.waitStarted(t, j.ID)
	if err := e.m.Delete(ctx, j.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("delete of a running job: %v", err)
	}
	e.b.exit(t, j.ID, 0, 0)
	e.waitFinal(t, j.ID)
	if err := e.m.Delete(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.cfg.LogDir, j.ID)); !os.IsNotExist(err) {
		t.Errorf("logs left: %v", err)
	}
	if _, err := e.m.Get(ctx, j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: %v", err)
	}
}

func TestLogsFollowUntilTheJobEnds(t *testing.T) {
	e := newEnv(t, nil)
	j := e.submit(t, spec("logs", 2))
	e.b.waitStarted(t, j.ID)
	done := make(chan []string)
	go func() {
		var got []string
		e.m.Logs(context.Background(), j.ID, -1, true, func(l LogLine) error { got = append(got, fmt.Sprintf("%d:%s", l.Task, l.Text)); return nil })
		done <- got
	}()
	e.b.mu.Lock()
	r := e.b.runs[j.ID].r
	e.b.mu.Unlock()
	l, _ := r.Log(1)
	io.WriteString(l.Stderr(), time.Now().UTC().Format(time.RFC3339Nano)+" from one\n")
	e.b.exit(t, j.ID, 0, 0)
	e.b.exit(t, j.ID, 1, 0)
	select {
	case got := <-done:
		if s := strings.Join(got, "|"); !strings.Contains(s, "0:attempt 0") || !strings.Contains(s, "1:from one") {
			t.Errorf("followed %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with the job")
	}
	if err := e.m.Logs(context.Background(), j.ID, 5, false, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("task 5 of 2: %v", err)
	}
}

// hostNamer is a backend that names its tasks' hosts.
type hostNamer struct{ *fakeBackend }

func (hostNamer) Hosts(j *Job) []string {
	out := make([]string, j.Spec.Nodes)
	for i := range out {
		out[i] = fmt.Sprintf("h%d-a%d", i, j.Attempt)
	}
	return out
}

func TestABackendNamesItsHostsPerAttempt(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Backend = hostNamer{e.b}
	e.m.cfg.Backend = e.cfg.Backend
	s := spec("hosts", 2)
	s.Retries = 1
	j := e.submit(t, s)
	e.b.waitStarted(t, j.ID)
	if got, _ := e.m.Get(context.Background(), j.ID); got.Tasks[1].Host != "h1-a0" {
		t.Errorf("host %q", got.Tasks[1].Host)
	}
	e.b.exit(t, j.ID, 0, 1)
	e.b.waitStarted(t, j.ID)
	if got, _ := e.m.Get(context.Background(), j.ID); got.Tasks[1].Host != "h1-a1" {
		t.Errorf("a retry's host %q", got.Tasks[1].Host)
	}
}

// meetingBackend's Cleanup and meetingUploader's UploadDir each wait for
// the other to have begun: run at once they meet; one after the other,
// the first gives up after a while and says so.
type meetingBackend struct {
	*fakeBackend
	cleaning, uploading chan struct{}
	serial              atomic.Bool
}

func (b *meetingBackend) meet(mine, theirs chan struct{}) {
	close(mine)
	select {
	case <-theirs:
	case <-time.After(2 * time.Second):
		b.serial.Store(true)
	}
}

func (b *meetingBackend) Cleanup(ctx context.Context, j *Job) error {
	b.meet(b.cleaning, b.uploading)
	return b.fakeBackend.Cleanup(ctx, j)
}

type meetingUploader struct{ b *meetingBackend }

func (u meetingUploader) UploadDir(context.Context, string, string) error {
	u.b.meet(u.b.uploading, u.b.cleaning)
	return nil
}

func TestTheLastAttemptIsCleanedUpWhileItsLogsAreUploaded(t *testing.T) {
	b := &meetingBackend{fakeBackend: newFakeBackend(), cleaning: make(chan struct{}), uploading: make(chan struct{})}
	dir := t.TempDir()
	st, err := OpenStore(filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Backend: b, LogDir: filepath.Join(dir, "logs"), Images: fakeImages{}, Uploader: meetingUploader{b}}
	e := startEnv(t, cfg, b.fakeBackend)
	s := spec("meet", 2)
	s.LogURL = "s3://bkt/logs/"
	j := e.submit(t, s)
	b.waitStarted(t, j.ID)
	b.exit(t, j.ID, 0, 0)
	b.exit(t, j.ID, 1, 0)
	got := e.waitFinal(t, j.ID)
	if got.Status != StatusCompleted {
		t.Fatalf("job %s %s", got.Status, got.Reason)
	}
	if b.serial.Load() {
		t.Error("the cleanup and the log upload ran one after the other")
	}
	if len(b.cleaned) != 1 {
		t.Errorf("cleanups %v", b.cleaned)
	}
	var uploaded bool
	for _, ev := range got.Events {
		uploaded = uploaded || strings.HasPrefix(ev.Message, "logs uploaded to s3://bkt/logs/"+j.ID+"/")
	}
	if !uploaded {
		t.Errorf("no upload among the events %+v", got.Events)
	}
}
