package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/malocal/malocal/jobs"
)

// reporter records what the backend reports.
type reporter struct {
	mu      sync.Mutex
	created map[int]string
	running map[int]bool
	exits   map[int]jobs.Exit
	events  []string
}

func newReporter() *reporter {
	return &reporter{created: map[int]string{}, running: map[int]bool{}, exits: map[int]jobs.Exit{}}
}

func (r *reporter) Event(msg string) { r.mu.Lock(); r.events = append(r.events, msg); r.mu.Unlock() }
func (r *reporter) Created(i int, c string, _ []string) {
	r.mu.Lock()
	r.created[i] = c
	r.mu.Unlock()
}
func (r *reporter) Running(i int, _ time.Time) { r.mu.Lock(); r.running[i] = true; r.mu.Unlock() }
func (r *reporter) Exited(i int, e jobs.Exit) {
	r.mu.Lock()
	r.exits[i] = e
	r.mu.Unlock()
}
func (r *reporter) Log(int) (jobs.TaskLog, error) { return discardLog{}, nil }

func (r *reporter) exit(i int) (jobs.Exit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.exits[i]
	return e, ok
}

type discardLog struct{}

func (discardLog) Stdout() io.Writer { return io.Discard }
func (discardLog) Stderr() io.Writer { return io.Discard }
func (discardLog) Resume() time.Time { return time.Time{} }

func runJob(nodes int) *jobs.Job {
	j := testJob()
	j.Spec.Nodes = nodes
	for i := range nodes {
		j.Tasks = append(j.Tasks, jobs.Task{Index: i, Status: jobs.TaskWaiting})
	}
	return j
}

// pod is task i's pod in the given container state.
func pod(j *jobs.Job, i int, st corev1.ContainerState) *corev1.Pod {
	name := ObjectName(j)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d-x", name, i), Namespace: testContract.Namespace, UID: types.UID(fmt.Sprintf("uid-%d", i)),
			Labels: map[string]string{jobNameLabel: name}, Annotations: map[string]string{indexAnnot: fmt.Sprint(i)}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, State: st}}},
	}
}

var (
	running    = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	terminated = func(code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, FinishedAt: metav1.Now()}}
	}
)

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func start(t *testing.T, b *Backend, ctx context.Context, j *jobs.Job, r *reporter) chan error {
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, j, r) }()
	return done
}

func TestRunReportsEveryPodsStateAndExit(t *testing.T) {
	cs := fake.NewSimpleClientset()
	b := &Backend{Client: cs, Contract: testContract, Poll: 5 * time.Millisecond}
	j := runJob(2)
	r := newReporter()
	done := start(t, b, context.Background(), j, r)
	ns, name := testContract.Namespace, ObjectName(j)
	pods := cs.CoreV1().Pods(ns)
	ctx := context.Background()
	waitFor(t, "the Job", func() bool { _, err := cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); return err == nil })
	if _, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("no headless Service: %v", err)
	}
	pods.Create(ctx, pod(j, 0, running), metav1.CreateOptions{})
	pods.Create(ctx, pod(j, 1, terminated(3)), metav1.CreateOptions{})
	waitFor(t, "task 1's exit", func() bool { _, ok := r.exit(1); return ok })
	if e, _ := r.exit(1); e.Code != 3 || e.Stopped || e.At.IsZero() {
		t.Errorf("task 1's exit %+v", e)
	}
	r.mu.Lock()
	if !r.running[0] || r.created[0] != name+"-0-x" {
		t.Errorf("task 0: running %v, pod %q", r.running[0], r.created[0])
	}
	r.mu.Unlock()
	p0 := pod(j, 0, terminated(0))
	pods.Update(ctx, p0, metav1.UpdateOptions{})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return once every task exited")
	}
	if e, _ := r.exit(0); e.Code != 0 {
		t.Errorf("task 0's exit %+v", e)
	}
}

func TestRunStopsTheRestWhenTheCoreDecides(t *testing.T) {
	cs := fake.NewSimpleClientset()
	b := &Backend{Client: cs, Contract: testContract, Poll: 5 * time.Millisecond}
	j := runJob(2)
	r := newReporter()
	ctx, cancel := context.WithCancelCause(context.Background())
	done := start(t, b, ctx, j, r)
	ns, name := testContract.Namespace, ObjectName(j)
	pods := cs.CoreV1().Pods(ns)
	bg := context.Background()
	waitFor(t, "the Job", func() bool { _, err := cs.BatchV1().Jobs(ns).Get(bg, name, metav1.GetOptions{}); return err == nil })
	pods.Create(bg, pod(j, 0, running), metav1.CreateOptions{})
	pods.Create(bg, pod(j, 1, running), metav1.CreateOptions{})
	waitFor(t, "both running", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.running[0] && r.running[1] })
	cancel(errors.New("the policy decided"))
	waitFor(t, "the Job deleted", func() bool { _, err := cs.BatchV1().Jobs(ns).Get(bg, name, metav1.GetOptions{}); return err != nil })
	// The kubelet ends the pods.
	pods.Update(bg, pod(j, 0, terminated(143)), metav1.UpdateOptions{})
	pods.Update(bg, pod(j, 1, terminated(143)), metav1.UpdateOptions{})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the stop")
	}
	for i := range 2 {
		if e, _ := r.exit(i); !e.Stopped || e.Code != 143 {
			t.Errorf("task %d's exit %+v, want stopped with 143", i, e)
		}
	}
}

func TestRunDetachLeavesTheJob(t *testing.T) {
	cs := fake.NewSimpleClientset()
	b := &Backend{Client: cs, Contract: testContract, Poll: 5 * time.Millisecond}
	j := runJob(1)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := start(t, b, ctx, j, newReporter())
	ns, name := testContract.Namespace, ObjectName(j)
	bg := context.Background()
	waitFor(t, "the Job", func() bool { _, err := cs.BatchV1().Jobs(ns).Get(bg, name, metav1.GetOptions{}); return err == nil })
	cancel(jobs.ErrDetach)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := cs.BatchV1().Jobs(ns).Get(bg, name, metav1.GetOptions{}); err != nil {
		t.Errorf("a detach deleted the Job: %v", err)
	}
}

func TestRunAfterRestartFindsTheJobGone(t *testing.T) {
	cs := fake.NewSimpleClientset()
	b := &Backend{Client: cs, Contract: testContract, Poll: 5 * time.Millisecond}
	j := runJob(2)
	j.Tasks[0].Container, j.Tasks[0].Status = "malocal-x-0", jobs.TaskRunning
	r := newReporter()
	if err := b.Run(context.Background(), j, r); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if e, ok := r.exit(i); !ok || e.Code != -1 || !strings.Contains(e.Reason, "deleted from the cluster while the emulator was down") {
			t.Errorf("task %d: %+v", i, e)
		}
	}
	if _, err := cs.BatchV1().Jobs(testContract.Namespace).Get(context.Background(), ObjectName(j), metav1.GetOptions{}); err == nil {
		t.Error("a gone Job was made again")
	}
}

func TestRunReportsTheClustersTimeLimit(t *testing.T) {
	cs := fake.NewSimpleClientset()
	b := &Backend{Client: cs, Contract: testContract, Poll: 5 * time.Millisecond}
	j := runJob(1)
	r := newReporter()
	done := start(t, b, context.Background(), j, r)
	ns, name := testContract.Namespace, ObjectName(j)
	bg := context.Background()
	waitFor(t, "the Job", func() bool { _, err := cs.BatchV1().Jobs(ns).Get(bg, name, metav1.GetOptions{}); return err == nil })
	kj, _ := cs.BatchV1().Jobs(ns).Get(bg, name, metav1.GetOptions{})
	kj.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: batchv1.JobReasonDeadlineExceeded}}
	cs.BatchV1().Jobs(ns).UpdateStatus(bg, kj, metav1.UpdateOptions{})
	// The cluster removes the pods; none is left to wait for.
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return on the cluster's deadline")
	}
	if !errors.Is(err, jobs.ErrTimeLimit) {
		t.Errorf("Run: %v, want the time limit", err)
	}
	if e, ok := r.exit(0); !ok || !e.Stopped {
		t.Errorf("task 0: %+v", e)
	}
}

func TestSecretsCarryTheJobsKeyAndThePullLogin(t *testing.T) {
	j := testJob()
	c := testContract
	if len(Secrets(j, c)) != 0 || JobObject(j, c, j.Started).Spec.Template.Spec.ImagePullSecrets != nil {
		t.Fatal("secrets made with neither a job key nor a registry login")
	}
	j.AccessKey, j.SecretKey = "JOBAK", "JOBSK"
	c.RegistryAuth = jobs.RegistryAuth{Username: "u", Password: "p"}
	secs := Secrets(j, c)
	if len(secs) != 2 || secs[0].StringData["AWS_ACCESS_KEY_ID"] != "JOBAK" || secs[1].Type != corev1.SecretTypeDockerConfigJson ||
		!strings.Contains(string(secs[1].Data[corev1.DockerConfigJsonKey]), `"10.0.0.5:7082"`) {
		t.Errorf("secrets %+v", secs)
	}
	pod := JobObject(j, c, j.Started).Spec.Template.Spec
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != PullSecretName(j) {
		t.Errorf("pull secrets %+v", pod.ImagePullSecrets)
	}
	for _, e := range pod.Containers[0].Env {
		if e.Name == "AWS_SECRET_ACCESS_KEY" && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef.Name != SecretName(j)) {
			t.Errorf("the job's key is in the pod spec: %+v", e)
		}
	}

	// Run makes them, Cleanup deletes them.
	cs := fake.NewSimpleClientset()
	b := &Backend{Client: cs, Contract: c, Poll: 5 * time.Millisecond}
	ctx := context.Background()
	rj := runJob(1)
	rj.AccessKey, rj.SecretKey = "JOBAK", "JOBSK"
	if err := b.create(ctx, rj); err != nil {
		t.Fatal(err)
	}
	if l, _ := cs.CoreV1().Secrets(c.Namespace).List(ctx, metav1.ListOptions{}); len(l.Items) != 2 {
		t.Errorf("%d secrets made", len(l.Items))
	}
	if err := b.Cleanup(ctx, rj); err != nil {
		t.Fatal(err)
	}
	if l, _ := cs.CoreV1().Secrets(c.Namespace).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("%d secrets left", len(l.Items))
	}
}
