// Package kube runs malocal's jobs on a Kubernetes cluster: each job is an
// Indexed Job (one pod per task) plus a headless Service that gives every
// task a stable hostname, with the same environment contract as the Docker
// backend (jobs.Env). It implements jobs.Backend.
package kube

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/malocal/malocal/jobs"
)

// Labels and annotations on every object malocal creates in the cluster;
// after a restart it finds its jobs by them.
const (
	LabelJob      = jobs.LabelJob      // malocal's job id
	LabelInstance = "malocal.instance" // which emulator (data dir) made it
	LabelManaged  = "malocal.managed"  // "true": made by malocal
	AnnotDataDir  = "malocal/data-dir" // the emulator's data dir, in full
	indexAnnot    = batchv1.JobCompletionIndexAnnotation
	jobNameLabel  = batchv1.JobNameLabel
	gpuResource   = corev1.ResourceName("nvidia.com/gpu")
	containerName = "task"
)

// Contract is what every job's pods get from the emulator.
type Contract struct {
	Namespace  string
	Registry   string // host:port the nodes pull images from
	S3Endpoint string // URL the pods reach the object store at
	AccessKey  string
	SecretKey  string
	Region     string
	DataDir    string
	Instance   string // label value naming this emulator
	StopGrace  time.Duration
	// RegistryAuth is the login the nodes pull job images with, through
	// an imagePullSecret per job; empty: anonymous.
	RegistryAuth jobs.RegistryAuth
}

// ObjectName is the Job's and the Service's name for a job's attempt:
// a retry gets fresh objects, so a kept failed attempt stays inspectable.
func ObjectName(j *jobs.Job) string {
	if j.Attempt > 0 {
		return fmt.Sprintf("malocal-%s-r%d", j.ID, j.Attempt)
	}
	return "malocal-" + j.ID
}

// Hosts are the tasks' hostnames: "<job>-<k>.<service>", which the
// cluster's DNS resolves from any pod of the namespace.
func Hosts(j *jobs.Job) []string {
	name := ObjectName(j)
	out := make([]string, j.Spec.Nodes)
	for k := range out {
		out[k] = fmt.Sprintf("%s-%d.%s", name, k, name)
	}
	return out
}

// Image is the reference the nodes pull.
func Image(j *jobs.Job, registry string) string {
	return registry + "/" + j.ImageRepo + "@" + j.ImageDigest
}

func labels(j *jobs.Job, c Contract) map[string]string {
	return map[string]string{LabelJob: j.ID, LabelInstance: c.Instance, LabelManaged: "true"}
}

// ServiceObject is the headless Service that makes task hostnames resolve.
func ServiceObject(j *jobs.Job, c Contract) *corev1.Service {
	name := ObjectName(j)
	port := int32(j.Spec.Port)
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: labels(j, c),
			Annotations: map[string]string{AnnotDataDir: c.DataDir}},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{jobNameLabel: name},
			// Peers look each other up before they are ready.
			PublishNotReadyAddresses: true,
			Ports:                    []corev1.ServicePort{{Name: "task", Port: port}},
		},
	}
}

// JobObject is the Indexed Job of a job's attempt: a pure function of the
// job, so it is tested without a cluster. now is when it is created, for
// the time limit that remains.
func JobObject(j *jobs.Job, c Contract, now time.Time) *batchv1.Job {
	s := j.Spec
	name := ObjectName(j)
	n := int32(s.Nodes)
	indexed := batchv1.IndexedCompletion
	zero := int32(0)
	grace := int64(c.StopGrace.Seconds())
	noEscalation := false
	lb := labels(j, c)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: lb,
			Annotations: map[string]string{AnnotDataDir: c.DataDir}},
		Spec: batchv1.JobSpec{
			CompletionMode: &indexed,
			Completions:    &n,
			Parallelism:    &n,
			// malocal retries a failed job as a whole (every task again),
			// as the platform does; the cluster never restarts one task alone.
			BackoffLimit: &zero,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lb},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					Subdomain:                     name,
					TerminationGracePeriodSeconds: &grace,
					EnableServiceLinks:            new(bool),
					Containers: []corev1.Container{{
						Name:            containerName,
						Image:           Image(j, c.Registry),
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         jobs.Command(s),
						Env:             PodEnv(j, c),
						Resources:       resources(s.Flavor),
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &noEscalation},
					}},
				},
			},
		},
	}
	if j.AccessKey != "" {
		// The job's own key, from its Secret rather than the pod spec.
		c := &job.Spec.Template.Spec.Containers[0]
		for k := range c.Env {
			switch c.Env[k].Name {
			case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY":
				c.Env[k] = fromSecret(c.Env[k].Name, SecretName(j), c.Env[k].Name)
			}
		}
	}
	if pullSecret(c) {
		job.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: PullSecretName(j)}}
	}
	if d := s.Timeout; d > 0 && !j.Started.IsZero() {
		// The limit counts from the job's first start, across retries.
		left := int64(math.Ceil(j.Started.Add(d).Sub(now).Seconds()))
		job.Spec.ActiveDeadlineSeconds = new(max(left, 1))
	}
	if s.Policy == jobs.PolicyIndex0 {
		// Task 0 decides: its success ends the job (the rest are stopped);
		// a failed peer does not fail the job on its own.
		job.Spec.BackoffLimit = nil
		job.Spec.BackoffLimitPerIndex = &zero
		job.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{{SucceededIndexes: new("0")}}}
	}
	return job
}

func resources(f jobs.Flavor) corev1.ResourceRequirements {
	rl := corev1.ResourceList{}
	if f.CPUs > 0 {
		rl[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Round(f.CPUs*1000)), resource.DecimalSI)
	}
	if f.Memory > 0 {
		rl[corev1.ResourceMemory] = *resource.NewQuantity(int64(f.Memory), resource.BinarySI)
	}
	if f.GPUs > 0 {
		rl[gpuResource] = *resource.NewQuantity(int64(f.GPUs), resource.DecimalSI)
	}
	if len(rl) == 0 {
		return corev1.ResourceRequirements{}
	}
	// Requests equal limits: the pod gets what the flavor says, no more.
	return corev1.ResourceRequirements{Requests: rl, Limits: rl.DeepCopy()}
}

// PodEnv is jobs.Env for the pod template that every task shares: the
// values that differ per task come from the pod itself (its completion
// index and IP) through the downward API.
func PodEnv(j *jobs.Job, c Contract) []corev1.EnvVar {
	hosts := Hosts(j)
	base := jobs.Env(j, 0, jobs.Contract{S3Endpoint: c.S3Endpoint, AccessKey: c.AccessKey, SecretKey: c.SecretKey,
		Region: c.Region, Hosts: hosts})
	name := ObjectName(j)
	index := "$(DLS_TASK_INDEX)"
	perTask := map[string]string{
		"VC_TASK_INDEX":               index,
		"BATCH_TASK_CURRENT_INSTANCE": fmt.Sprintf("%s-%s.%s", name, index, name),
	}
	if _, user := j.Spec.Env["DLS_TASK_INDEX"]; user {
		perTask = nil // the user's value wins, as with Docker
	}
	out := []corev1.EnvVar{
		fromField("DLS_TASK_INDEX", "metadata.annotations['"+indexAnnot+"']"),
		fromField("BATCH_TASK_CURRENT_HOST_IP", "status.podIP"),
		fromField("MA_CURRENT_IP", "status.podIP"),
	}
	set := map[string]bool{}
	for _, e := range out {
		set[e.Name] = true
	}
	var rest []corev1.EnvVar
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if _, user := j.Spec.Env[k]; user {
			rest = append(rest, corev1.EnvVar{Name: k, Value: escape(v)})
			continue
		}
		if set[k] {
			continue
		}
		if pv, ok := perTask[k]; ok {
			rest = append(rest, corev1.EnvVar{Name: k, Value: pv})
			continue
		}
		rest = append(rest, corev1.EnvVar{Name: k, Value: escape(v)})
	}
	sort.Slice(rest, func(a, b int) bool { return rest[a].Name < rest[b].Name })
	// A user's own DLS_TASK_INDEX and the like replace the derived ones.
	filtered := out[:0]
	for _, e := range out {
		if _, user := j.Spec.Env[e.Name]; !user {
			filtered = append(filtered, e)
		}
	}
	return append(filtered, rest...)
}

func fromSecret(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
}

func fromField(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// escape keeps the kubelet from expanding $(NAME) in a literal value.
func escape(v string) string { return strings.ReplaceAll(v, "$(", "$$(") }

// taskIndex reads a pod's completion index.
func taskIndex(p *corev1.Pod) (int, bool) {
	v, ok := p.Annotations[indexAnnot]
	if !ok {
		v, ok = p.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(v)
	return i, err == nil
}

// SecretName is the Secret holding a job's own object-store key.
func SecretName(j *jobs.Job) string { return "malocal-" + j.ID + "-key" }

// PullSecretName is the imagePullSecret of a job's pods.
func PullSecretName(j *jobs.Job) string { return "malocal-" + j.ID + "-pull" }

func pullSecret(c Contract) bool {
	return c.RegistryAuth.Username != "" || c.RegistryAuth.Password != ""
}

// Secrets are the Secrets a job's pods need: its own object-store key
// (when it has one) and the registry login (when there is one). They
// belong to the job and are deleted with it.
func Secrets(j *jobs.Job, c Contract) []*corev1.Secret {
	var out []*corev1.Secret
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: labels(j, c), Annotations: map[string]string{AnnotDataDir: c.DataDir}}
	}
	if j.AccessKey != "" {
		out = append(out, &corev1.Secret{ObjectMeta: meta(SecretName(j)), Type: corev1.SecretTypeOpaque,
			StringData: map[string]string{"AWS_ACCESS_KEY_ID": j.AccessKey, "AWS_SECRET_ACCESS_KEY": j.SecretKey}})
	}
	if pullSecret(c) {
		auth := base64.StdEncoding.EncodeToString([]byte(c.RegistryAuth.Username + ":" + c.RegistryAuth.Password))
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{c.Registry: map[string]string{
			"username": c.RegistryAuth.Username, "password": c.RegistryAuth.Password, "auth": auth}}})
		out = append(out, &corev1.Secret{ObjectMeta: meta(PullSecretName(j)), Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}})
	}
	return out
}
