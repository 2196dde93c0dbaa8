package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/docker"
	"github.com/malocal/malocal/jobs"
)

// Backend runs each job as an Indexed Job and a headless Service in one
// namespace of a cluster.
type Backend struct {
	Client   kubernetes.Interface
	Contract Contract
	// PendingLimit is how long a task may wait to be scheduled or to pull
	// its image before the job fails with the cluster's reason.
	PendingLimit time.Duration
	// Poll is how often pods are read while a job runs.
	Poll time.Duration
}

var _ jobs.Backend = (*Backend)(nil)

// taskState is what the backend knows of one task's pod.
type taskState struct {
	uid       string
	running   bool
	exited    bool
	following bool
}

// Run implements jobs.Backend.
func (b *Backend) Run(ctx context.Context, j *api.Job, rec jobs.Recorder) jobs.Outcome {
	name := ObjectName(j)
	ns := b.Contract.Namespace
	n := j.Spec.Nodes
	failed := func(format string, a ...any) jobs.Outcome {
		return jobs.Outcome{Status: api.StatusFailed, ExitCode: -1, Reason: fmt.Sprintf(format, a...)}
	}
	detached := func() bool { return errors.Is(context.Cause(ctx), jobs.ErrDetach) }

	hosts := Hosts(j)
	for i := range n {
		rec.Task(i, func(t *api.Task) { t.Host = hosts[i] })
	}
	existing, err := b.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		if existing.Labels[LabelJob] != j.ID {
			return failed("the cluster already has a Job %s/%s that malocal did not make for this job; delete it or use another --namespace", ns, name)
		}
		rec.Event(fmt.Sprintf("re-attached to Job %s/%s in the cluster", ns, name))
	case apierrors.IsNotFound(err):
		if j.Tasks[0].Container != "" {
			return failed("Job %s/%s is gone from the cluster (deleted while the emulator was down)", ns, name)
		}
		if err := b.create(ctx, j); err != nil {
			if detached() {
				return jobs.Outcome{Status: api.StatusRunning}
			}
			return failed("%v", err)
		}
		rec.Event(fmt.Sprintf("created Job %s/%s (%d pods) and its headless Service", ns, name, n))
	default:
		if detached() {
			return jobs.Outcome{Status: api.StatusRunning}
		}
		return failed("reading Job %s/%s: %v", ns, name, Explain(err))
	}

	tasks := make([]taskState, n)
	// Log streams outlive a stop (they drain what the tasks printed) but
	// not a detach: the next start follows them again.
	var logs sync.WaitGroup
	lctx, lcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer lcancel()
	out := jobs.Outcome{Status: api.StatusCompleted}
	exited := 0
	pendingSince, attached := time.Now(), time.Now()
	tick := time.NewTicker(b.poll())
	defer tick.Stop()
	for decided := false; !decided; {
		pods, err := b.pods(ctx, name)
		if err != nil && ctx.Err() == nil {
			rec.Event("reading the job's pods: " + Explain(err).Error())
		}
		for _, p := range pods {
			i, ok := taskIndex(p)
			if !ok || i >= n {
				continue
			}
			t := &tasks[i]
			if t.uid != string(p.UID) {
				*t = taskState{uid: string(p.UID)}
				rec.Task(i, func(at *api.Task) { at.Container = p.Name; at.Status = "created" })
			}
			if reason := pullProblem(p); reason != "" {
				out, decided = failed("task %d cannot start: %s", i, reason), true
				break
			}
			if started(p) && !t.running {
				t.running = true
				now := time.Now().UTC()
				rec.Task(i, func(at *api.Task) {
					at.Status = "running"
					if at.Started.IsZero() {
						at.Started = now
					}
				})
			}
			if t.running && !t.following {
				t.following = true
				b.follow(lctx, &logs, rec, i, p.Name)
			}
			if code, done := exitCode(p); done && !t.exited {
				t.exited = true
				exited++
				record(rec, i, code, "")
				switch {
				case j.Spec.Policy == api.PolicyIndex0 && i == 0:
					decided = true
					if code != 0 {
						out = failed("task 0 exited with code %d", code)
						out.ExitCode = code
					}
				case j.Spec.Policy != api.PolicyIndex0 && code != 0:
					decided = true
					out = failed("task %d exited with code %d", i, code)
					out.ExitCode = code
				case exited == n:
					decided = true
				}
			}
		}
		if decided {
			break
		}
		// The cluster ends a job by itself on its time limit.
		if kj, err := b.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			if c := finished(kj); c != nil && exited < n && c.Type == batchv1.JobFailed {
				if c.Reason == batchv1.JobReasonDeadlineExceeded {
					out = jobs.Outcome{Status: api.StatusTimeout, ExitCode: 124, Reason: "time limit of " + time.Duration(j.Spec.Timeout).String() + " reached"}
				} else {
					out = failed("the cluster failed Job %s/%s: %s: %s", ns, name, c.Reason, c.Message)
				}
				break
			}
		} else if apierrors.IsNotFound(err) {
			out = failed("Job %s/%s was deleted from the cluster", ns, name)
			break
		}
		if len(pods) == 0 && err == nil && time.Since(attached) > b.pendingLimit() {
			// Quota, admission or pod security refused them: the Job's
			// events say which.
			out = failed("the cluster made no pod for Job %s/%s within %s (see kubectl -n %s describe job %s)", ns, name, b.pendingLimit(), ns, name)
			break
		}
		if msg := unschedulable(pods); msg != "" && time.Since(pendingSince) > b.pendingLimit() {
			out = failed("the cluster could not schedule the job's pods within %s: %s", b.pendingLimit(), msg)
			break
		} else if msg == "" {
			pendingSince = time.Now()
		}
		select {
		case <-ctx.Done():
			if detached() {
				return jobs.Outcome{Status: api.StatusRunning} // lcancel ends the streams
			}
			out = jobs.Outcome{Status: api.StatusCanceled, ExitCode: -1, Reason: "stopped"}
			decided = true
		case <-tick.C:
		}
	}
	if exited < n {
		how := "deleting"
		if j.Spec.Keep {
			how = "suspending"
		}
		rec.Event(fmt.Sprintf("stopping the %d tasks still running (%s Job %s/%s)", n-exited, how, ns, name))
		b.stop(j, rec, tasks)
	}
	logs.Wait()
	return out
}

func (b *Backend) poll() time.Duration {
	if b.Poll > 0 {
		return b.Poll
	}
	return time.Second
}

func (b *Backend) pendingLimit() time.Duration {
	if b.PendingLimit > 0 {
		return b.PendingLimit
	}
	return 5 * time.Minute
}

func (b *Backend) create(ctx context.Context, j *api.Job) error {
	ns := b.Contract.Namespace
	svc := ServiceObject(j, b.Contract)
	if _, err := b.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Service %s/%s: %w", ns, svc.Name, Explain(err))
	}
	kj := JobObject(j, b.Contract, time.Now())
	if _, err := b.Client.BatchV1().Jobs(ns).Create(ctx, kj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Job %s/%s: %w", ns, kj.Name, Explain(err))
	}
	return nil
}

func (b *Backend) pods(ctx context.Context, name string) ([]*corev1.Pod, error) {
	l, err := b.Client.CoreV1().Pods(b.Contract.Namespace).List(ctx, metav1.ListOptions{LabelSelector: jobNameLabel + "=" + name})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, 0, len(l.Items))
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	// Oldest first: a later pod of the same index replaces an earlier one.
	sort.Slice(out, func(a, c int) bool { return out[a].CreationTimestamp.Before(&out[c].CreationTimestamp) })
	return out, nil
}

// follow streams a pod's log into the task's log file until the container
// ends; lines already stored (before a restart) are skipped by the file.
func (b *Backend) follow(lctx context.Context, wg *sync.WaitGroup, rec jobs.Recorder, i int, pod string) {
	w, err := rec.Log(i)
	if err != nil {
		rec.Event(fmt.Sprintf("task %d: cannot store logs: %v", i, err))
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		pods := b.Client.CoreV1().Pods(b.Contract.Namespace)
		var last time.Time
		for attempt := 0; ; attempt++ {
			opts := &corev1.PodLogOptions{Container: containerName, Follow: true, Timestamps: true}
			if !last.IsZero() {
				opts.SinceTime = &metav1.Time{Time: last}
			}
			s, err := pods.GetLogs(pod, opts).Stream(lctx)
			if err == nil {
				err = copyLines(s, w, &last)
				s.Close()
			}
			// A stream can break while the task runs (API server restart,
			// proxy timeout): follow again from the last line stored.
			p, gerr := pods.Get(lctx, pod, metav1.GetOptions{})
			if lctx.Err() != nil || gerr != nil || p.DeletionTimestamp != nil || !stillRunning(p) || attempt > 100 {
				if err != nil && gerr == nil && lctx.Err() == nil {
					rec.Event(fmt.Sprintf("task %d: log stream: %v", i, err))
				}
				return
			}
			time.Sleep(time.Second)
		}
	}()
}

func stillRunning(p *corev1.Pod) bool {
	s := taskStatus(p)
	return s != nil && s.State.Running != nil
}

// copyLines hands the API server's "<time> <text>" lines to the task log,
// skipping those at or before *last (already stored by an earlier stream),
// and moves *last on. Kubernetes merges stdout and stderr: every line is
// stdout.
func copyLines(r io.Reader, w docker.StreamWriter, last *time.Time) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			ts, _, _ := strings.Cut(string(line), " ")
			t, perr := time.Parse(time.RFC3339Nano, ts)
			if perr == nil && !last.IsZero() && !t.After(*last) {
				line = nil
			} else if perr == nil {
				*last = t
			}
		}
		if len(line) > 0 {
			if werr := w.WriteFrame(docker.Stdout, line); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// stop deletes the Job with foreground propagation (or, for a job that
// asked to keep its objects, suspends it: the cluster ends its running
// pods and keeps the rest) and records how the remaining tasks ended.
func (b *Backend) stop(j *api.Job, rec jobs.Recorder, tasks []taskState) {
	ctx, cancel := context.WithTimeout(context.Background(), b.Contract.StopGrace+time.Minute)
	defer cancel()
	ns, name := b.Contract.Namespace, ObjectName(j)
	var err error
	if j.Spec.Keep {
		_, err = b.Client.BatchV1().Jobs(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{})
	} else {
		fg := metav1.DeletePropagationForeground
		err = b.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		rec.Event(fmt.Sprintf("stopping Job %s/%s: %v", ns, name, Explain(err)))
	}
	for ctx.Err() == nil {
		pods, err := b.pods(ctx, name)
		if err == nil {
			left := false
			for _, p := range pods {
				i, ok := taskIndex(p)
				if !ok || i >= len(tasks) || tasks[i].exited {
					continue
				}
				if code, done := exitCode(p); done {
					tasks[i].exited = true
					record(rec, i, code, "stopped")
					continue
				}
				left = true
			}
			if !left {
				break
			}
		}
		time.Sleep(b.poll())
	}
	for i := range tasks {
		if !tasks[i].exited {
			record(rec, i, -1, "stopped")
		}
	}
}

func record(rec jobs.Recorder, i, code int, status string) {
	rec.Task(i, func(t *api.Task) {
		t.ExitCode = &code
		t.Finished = time.Now().UTC()
		switch {
		case status != "":
			t.Status = status
		case code == 0:
			t.Status = "succeeded"
		default:
			t.Status = "failed"
		}
	})
}

// Cleanup implements jobs.Backend: it deletes the attempt's Job (its pods
// with it) and Service, unless the job asked to keep them.
func (b *Backend) Cleanup(ctx context.Context, j *api.Job) error {
	if j.Spec.Keep {
		return nil
	}
	ns, name := b.Contract.Namespace, ObjectName(j)
	fg := metav1.DeletePropagationForeground
	var errs []error
	if err := b.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting Job %s/%s: %w", ns, name, Explain(err)))
	}
	if err := b.Client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("deleting Service %s/%s: %w", ns, name, Explain(err)))
	}
	return errors.Join(errs...)
}

func finished(kj *batchv1.Job) *batchv1.JobCondition {
	for i, c := range kj.Status.Conditions {
		if (c.Type == batchv1.JobFailed || c.Type == batchv1.JobComplete) && c.Status == corev1.ConditionTrue {
			return &kj.Status.Conditions[i]
		}
	}
	return nil
}

func taskStatus(p *corev1.Pod) *corev1.ContainerStatus {
	for i, s := range p.Status.ContainerStatuses {
		if s.Name == containerName {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func started(p *corev1.Pod) bool {
	s := taskStatus(p)
	return s != nil && (s.State.Running != nil || s.State.Terminated != nil)
}

func exitCode(p *corev1.Pod) (int, bool) {
	if s := taskStatus(p); s != nil && s.State.Terminated != nil {
		return int(s.State.Terminated.ExitCode), true
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return 0, true
	case corev1.PodFailed:
		// Failed before its container ran (evicted, deleted, deadline).
		return -1, true
	}
	return 0, false
}

// pullProblem says why a pod's image cannot be pulled or its container
// cannot be made, once the kubelet has given up on the first try.
func pullProblem(p *corev1.Pod) string {
	s := taskStatus(p)
	if s == nil || s.State.Waiting == nil {
		return ""
	}
	switch w := s.State.Waiting; w.Reason {
	case "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
		return fmt.Sprintf("the cluster's node %s cannot pull image %s (%s: %s); the nodes must reach the registry named by --advertise-registry (or --external-registry), over plain HTTP unless it serves TLS",
			p.Spec.NodeName, s.Image, w.Reason, w.Message)
	case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
		return fmt.Sprintf("%s: %s", w.Reason, w.Message)
	}
	return ""
}

// unschedulable is the scheduler's reason for the first pod it cannot
// place, or "".
func unschedulable(pods []*corev1.Pod) string {
	for _, p := range pods {
		if p.Status.Phase != corev1.PodPending {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return fmt.Sprintf("pod %s: %s: %s", p.Name, c.Reason, c.Message)
			}
		}
	}
	return ""
}
