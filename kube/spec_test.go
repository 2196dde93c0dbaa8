package kube

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/malocal/malocal/jobs"
)

func testJob() *jobs.Job {
	return &jobs.Job{ID: "job-0badcafe", ImageRepo: "team/train", ImageDigest: "sha256:abc",
		Started: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC),
		Spec: jobs.Spec{Name: "Mnist PS", Nodes: 4, Port: 2222, AppURL: "s3://code/new/", DataURL: "obs://data/mnist/",
			TrainURL: "s3://out/", Command: []string{"python3 main.py --x=$(echo 1)"},
			Env:    map[string]string{"EXTRA": "a $(b) c"},
			Flavor: jobs.Flavor{CPUs: 1.5, Memory: 2 << 30, GPUs: 1}, Timeout: time.Hour}}
}

var testContract = Contract{Namespace: "ml", Registry: "10.0.0.5:7082", S3Endpoint: "http://10.0.0.5:7081",
	AccessKey: "AK", SecretKey: "SK", Region: "r1", DataDir: "/data", Instance: "i1", StopGrace: 10 * time.Second}

var ref = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// resolve does what the kubelet does with a pod's env for task i.
func resolve(env []corev1.EnvVar, i int, ip string) map[string]string {
	out := map[string]string{}
	for _, e := range env {
		v := e.Value
		if e.ValueFrom != nil {
			switch p := e.ValueFrom.FieldRef.FieldPath; {
			case strings.Contains(p, batchv1.JobCompletionIndexAnnotation):
				v = strconv.Itoa(i)
			case p == "status.podIP":
				v = ip
			}
		} else {
			v = ref.ReplaceAllStringFunc(v, func(m string) string {
				if m == "$$" {
					return "$"
				}
				name := m[2 : len(m)-1]
				if val, ok := out[name]; ok {
					return val
				}
				return m
			})
		}
		out[e.Name] = v
	}
	return out
}

// Every task sees exactly what jobs.Env gives it, with the cluster's hostnames.
func TestPodEnvIsTheContractOfEveryTask(t *testing.T) {
	j := testJob()
	env := PodEnv(j, testContract)
	hosts := Hosts(j)
	for i := range j.Spec.Nodes {
		got := resolve(env, i, "10.1.0.9")
		want := map[string]string{}
		for _, kv := range jobs.Env(j, i, jobs.Contract{S3Endpoint: testContract.S3Endpoint, AccessKey: "AK", SecretKey: "SK", Region: "r1", Hosts: hosts}) {
			k, v, _ := strings.Cut(kv, "=")
			want[k] = v
		}
		want["BATCH_TASK_CURRENT_HOST_IP"], want["MA_CURRENT_IP"] = "10.1.0.9", "10.1.0.9"
		for k, v := range want {
			if got[k] != v {
				t.Errorf("task %d: %s=%q, want %q", i, k, got[k], v)
			}
		}
		if len(got) != len(want) {
			t.Errorf("task %d: %d variables, want %d", i, len(got), len(want))
		}
	}
	if got := resolve(env, 2, "")["BATCH_CUSTOM3_HOSTS"]; got != "malocal-job-0badcafe-3.malocal-job-0badcafe:2222" {
		t.Errorf("BATCH_CUSTOM3_HOSTS=%q", got)
	}
	if got := resolve(env, 0, "")["EXTRA"]; got != "a $(b) c" {
		t.Errorf("a user's $( was expanded: %q", got)
	}
}

func TestJobObject(t *testing.T) {
	j := testJob()
	now := j.Started.Add(10 * time.Minute)
	kj := JobObject(j, testContract, now)
	s := kj.Spec
	if *s.CompletionMode != batchv1.IndexedCompletion || *s.Completions != 4 || *s.Parallelism != 4 {
		t.Errorf("not an Indexed Job of 4: %v %d %d", *s.CompletionMode, *s.Completions, *s.Parallelism)
	}
	if *s.BackoffLimit != 0 || s.SuccessPolicy != nil {
		t.Errorf("policy all: backoffLimit %d, success policy %v", *s.BackoffLimit, s.SuccessPolicy)
	}
	if *s.ActiveDeadlineSeconds != 3000 {
		t.Errorf("activeDeadlineSeconds %d, want the 50 minutes left", *s.ActiveDeadlineSeconds)
	}
	pod := s.Template.Spec
	if pod.Subdomain != kj.Name || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("subdomain %q restart %q", pod.Subdomain, pod.RestartPolicy)
	}
	c := pod.Containers[0]
	if c.Image != "10.0.0.5:7082/team/train@sha256:abc" {
		t.Errorf("image %s", c.Image)
	}
	if strings.Join(c.Command, "|") != "/bin/sh|-c|python3 main.py --x=$(echo 1)" {
		t.Errorf("command %q", c.Command)
	}
	lim := c.Resources.Limits
	if lim.Cpu().MilliValue() != 1500 || lim.Memory().Value() != 2<<30 || lim.Name(gpuResource, "").Value() != 1 {
		t.Errorf("limits %v", lim)
	}
	if !c.Resources.Requests.Cpu().Equal(*lim.Cpu()) {
		t.Errorf("requests %v differ from limits", c.Resources.Requests)
	}
	if kj.Labels[LabelJob] != j.ID || s.Template.Labels[LabelJob] != j.ID || kj.Labels[LabelInstance] != "i1" {
		t.Errorf("labels %v / %v", kj.Labels, s.Template.Labels)
	}

	j.Spec.Policy = jobs.PolicyIndex0
	j.Attempt = 1
	kj = JobObject(j, testContract, now)
	if kj.Name != "malocal-job-0badcafe-r1" {
		t.Errorf("a retry's name %s", kj.Name)
	}
	sp := kj.Spec.SuccessPolicy
	if sp == nil || len(sp.Rules) != 1 || *sp.Rules[0].SucceededIndexes != "0" || *kj.Spec.BackoffLimitPerIndex != 0 {
		t.Errorf("policy index0: success policy %+v", sp)
	}
	svc := ServiceObject(j, testContract)
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[batchv1.JobNameLabel] != kj.Name || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("service %+v", svc.Spec)
	}
}
