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

var (
	_ jobs.Backend   = (*Backend)(nil)
	_ jobs.HostNamer = (*Backend)(nil)
)

// Hosts implements jobs.HostNamer: the tasks' names in the cluster's DNS.
func (b *Backend) Hosts(j *jobs.Job) []string { return Hosts(j) }

// taskState is what the backend knows of one task's pod.
type taskState struct {
	uid       string
	running   bool
	exited    bool
	following bool
}

// run is one Run of a job: its tasks' states and log streams.
type run struct {
	b     *Backend
	j     *jobs.Job
	r     jobs.Reporter
	why   string // why the tasks still running are stopped, when the cluster gave up
	name  string
	tasks []taskState
	left  int
	logs  sync.WaitGroup
	lctx  context.Context
}

// Run implements jobs.Backend.
func (b *Backend) Run(ctx context.Context, j *jobs.Job, r jobs.Reporter) error {
	ru := &run{b: b, j: j, r: r, name: ObjectName(j), tasks: make([]taskState, j.Spec.Nodes)}
	for i, t := range j.Tasks {
		if t.Status.Final() {
			ru.tasks[i].exited = true
		} else {
			ru.left++
		}
	}
	if ru.left == 0 {
		return nil
	}
	gone, err := b.ensure(ctx, j, r)
	if err != nil {
		if errors.Is(context.Cause(ctx), jobs.ErrDetach) {
			return nil
		}
		return err
	}
	if gone {
		for i := range ru.tasks {
			if !ru.tasks[i].exited {
				r.Exited(i, jobs.Exit{Code: -1, Reason: fmt.Sprintf("pod is gone: Job %s/%s was deleted from the cluster while the emulator was down", b.Contract.Namespace, ru.name)})
			}
		}
		return nil
	}
	// Log streams outlive a stop (they drain what the tasks printed) but
	// not a detach: the next start follows them again.
	lctx, lcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer lcancel()
	ru.lctx = lctx
	err = ru.loop(ctx)
	if errors.Is(context.Cause(ctx), jobs.ErrDetach) {
		return nil // lcancel ends the streams
	}
	if ru.left > 0 {
		if err != nil && !errors.Is(err, jobs.ErrTimeLimit) {
			// The cluster's own reason ends the tasks still there.
			ru.why = err.Error()
		}
		ru.stop()
	}
	ru.logs.Wait()
	return err
}

// ensure finds the attempt's Job in the cluster, or creates it with its
// Service and Secrets. gone: it was made before a restart and deleted since.
func (b *Backend) ensure(ctx context.Context, j *jobs.Job, r jobs.Reporter) (gone bool, err error) {
	ns, name := b.Contract.Namespace, ObjectName(j)
	existing, err := b.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		if existing.Labels[LabelJob] != j.ID {
			return false, fmt.Errorf("the cluster already has a Job %s/%s that malocal did not make for this job; delete it or use another --namespace", ns, name)
		}
		r.Event(fmt.Sprintf("re-attached to Job %s/%s in the cluster", ns, name))
		return false, nil
	case apierrors.IsNotFound(err):
		for _, t := range j.Tasks {
			if t.Container != "" {
				r.Event(fmt.Sprintf("after the restart: Job %s/%s is gone from the cluster (deleted while the emulator was down): its tasks failed", ns, name))
				return true, nil
			}
		}
		if err := b.create(ctx, j); err != nil {
			return false, err
		}
		r.Event(fmt.Sprintf("created Job %s/%s (%d pods) and its headless Service", ns, name, j.Spec.Nodes))
		return false, nil
	}
	return false, fmt.Errorf("reading Job %s/%s: %w", ns, name, Explain(err))
}

// loop reads the pods until every task has exited, the cluster gives up
// on the job, or ctx ends.
func (ru *run) loop(ctx context.Context) error {
	b, ns := ru.b, ru.b.Contract.Namespace
	pendingSince, attached := time.Now(), time.Now()
	tick := time.NewTicker(b.poll())
	defer tick.Stop()
	for ru.left > 0 {
		pods, err := b.pods(ctx, ru.name)
		if err != nil && ctx.Err() == nil {
			ru.r.Event("reading the job's pods: " + Explain(err).Error())
		}
		if err := ru.observe(pods); err != nil {
			return err
		}
		if ru.left == 0 {
			return nil
		}
		if err := ru.clusterGaveUp(ctx); err != nil {
			return err
		}
		if len(pods) == 0 && err == nil && time.Since(attached) > b.pendingLimit() {
			// Quota, admission or pod security refused them: the Job's
			// events say which.
			return fmt.Errorf("the cluster made no pod for Job %s/%s within %s (see kubectl -n %s describe job %s)", ns, ru.name, b.pendingLimit(), ns, ru.name)
		}
		if msg := unschedulable(pods); msg != "" && time.Since(pendingSince) > b.pendingLimit() {
			return fmt.Errorf("the cluster could not schedule the job's pods within %s: %s", b.pendingLimit(), msg)
		} else if msg == "" {
			pendingSince = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// observe reports what the pods show: new pods, running tasks (whose logs
// it starts to follow) and exits.
func (ru *run) observe(pods []*corev1.Pod) error {
	for _, p := range pods {
		i, ok := taskIndex(p)
		if !ok || i >= len(ru.tasks) {
			continue
		}
		t := &ru.tasks[i]
		if t.exited {
			continue
		}
		if t.uid != string(p.UID) {
			*t = taskState{uid: string(p.UID)}
			ru.r.Created(i, p.Name, nil)
		}
		if reason := pullProblem(p); reason != "" {
			return fmt.Errorf("task %d cannot start: %s", i, reason)
		}
		if started(p) && !t.running {
			t.running = true
			ru.r.Running(i, time.Now())
		}
		if t.running && !t.following {
			t.following = true
			ru.b.follow(ru.lctx, &ru.logs, ru.r, i, p.Name)
		}
		if e, done := exitOf(p); done {
			t.exited = true
			ru.left--
			ru.r.Exited(i, e)
		}
	}
	return nil
}

// clusterGaveUp is the cluster's own end of the Job: its time limit
// (jobs.ErrTimeLimit) or another failure.
func (ru *run) clusterGaveUp(ctx context.Context) error {
	ns := ru.b.Contract.Namespace
	kj, err := ru.b.Client.BatchV1().Jobs(ns).Get(ctx, ru.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the Kubernetes Job %s/%s was deleted from the cluster", ns, ru.name)
	}
	if err != nil {
		return nil
	}
	c := finished(kj)
	if c == nil || c.Type != batchv1.JobFailed {
		return nil
	}
	if c.Reason == batchv1.JobReasonDeadlineExceeded {
		return fmt.Errorf("the cluster ended Job %s/%s: %w", ns, ru.name, jobs.ErrTimeLimit)
	}
	return fmt.Errorf("the cluster failed Job %s/%s: %s: %s", ns, ru.name, c.Reason, c.Message)
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

func (b *Backend) create(ctx context.Context, j *jobs.Job) error {
	ns := b.Contract.Namespace
	for _, sec := range Secrets(j, b.Contract) {
		if _, err := b.Client.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Secret %s/%s: %w", ns, sec.Name, Explain(err))
		}
	}
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
func (b *Backend) follow(lctx context.Context, wg *sync.WaitGroup, rec jobs.Reporter, i int, pod string) {
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
				err = copyLines(s, w.Stdout(), &last)
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
func copyLines(r io.Reader, w io.Writer, last *time.Time) error {
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
			if _, werr := w.Write(line); werr != nil {
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
// pods and keeps the rest) and reports how the remaining tasks ended.
func (ru *run) stop() {
	b, j := ru.b, ru.j
	ctx, cancel := context.WithTimeout(context.Background(), b.Contract.StopGrace+time.Minute)
	defer cancel()
	ns, name := b.Contract.Namespace, ru.name
	how := "deleting"
	if j.Spec.Keep {
		how = "suspending"
	}
	ru.r.Event(fmt.Sprintf("stopping the %d tasks still running (%s Job %s/%s)", ru.left, how, ns, name))
	var err error
	if j.Spec.Keep {
		_, err = b.Client.BatchV1().Jobs(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{})
	} else {
		fg := metav1.DeletePropagationForeground
		err = b.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		ru.r.Event(fmt.Sprintf("stopping Job %s/%s: %v", ns, name, Explain(err)))
	}
	for ctx.Err() == nil && ru.left > 0 {
		pods, err := b.pods(ctx, name)
		if err == nil {
			pending := false
			for _, p := range pods {
				i, ok := taskIndex(p)
				if !ok || i >= len(ru.tasks) || ru.tasks[i].exited {
					continue
				}
				if e, done := exitOf(p); done {
					ru.exit(i, e)
					continue
				}
				pending = true
			}
			if !pending {
				break
			}
		}
		time.Sleep(b.poll())
	}
	for i := range ru.tasks {
		if !ru.tasks[i].exited {
			ru.exit(i, jobs.Exit{Code: -1})
		}
	}
}

func (ru *run) exit(i int, e jobs.Exit) {
	if e.Reason == "" {
		e.Reason = ru.why
	}
	ru.tasks[i].exited = true
	ru.left--
	e.Stopped = true
	ru.r.Exited(i, e)
}

// Cleanup implements jobs.Backend: it deletes the attempt's Job (its pods
// with it) and Service, unless the job asked to keep them.
func (b *Backend) Cleanup(ctx context.Context, j *jobs.Job) error {
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
	for _, sec := range Secrets(j, b.Contract) {
		if err := b.Client.CoreV1().Secrets(ns).Delete(ctx, sec.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting Secret %s/%s: %w", ns, sec.Name, Explain(err)))
		}
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

// exitOf is how a pod's task ended, once it has.
func exitOf(p *corev1.Pod) (jobs.Exit, bool) {
	if s := taskStatus(p); s != nil && s.State.Terminated != nil {
		term := s.State.Terminated
		e := jobs.Exit{Code: int(term.ExitCode), At: term.FinishedAt.Time}
		if term.Reason == "OOMKilled" {
			e.Reason = fmt.Sprintf("container was killed for exceeding its memory limit (exit code %d)", term.ExitCode)
		}
		return e, true
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded:
		return jobs.Exit{}, true
	case corev1.PodFailed:
		// Failed before its container ran (evicted, deleted, deadline).
		reason := "pod failed before its container ran"
		if p.Status.Reason != "" {
			reason += ": " + p.Status.Reason
		}
		return jobs.Exit{Code: -1, Reason: reason}, true
	}
	return jobs.Exit{}, false
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
