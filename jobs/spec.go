package jobs

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Labels put on every container, network and cluster object of a job.
const (
	LabelJob     = "malocal.job"
	LabelTask    = "malocal.task"
	LabelDataDir = "malocal.data-dir"
)

// Contract is what the emulator supplies to every task, whatever runs it:
// how to reach the object store from where the task runs.
type Contract struct {
	S3Endpoint string // http://<gateway>:<port>
	AccessKey  string // the emulator's key; a job's own key replaces it
	SecretKey  string
	Region     string
	// Hosts are the tasks' hostnames when the backend names them itself
	// (Kubernetes: pod hostname and subdomain); empty means HostName.
	Hosts []string
}

// Env is the environment of task i: DESIGN 1.3, exactly. Backends add
// what only they know (the Docker backend: the GPU device ids).
func Env(j *Job, i int, c Contract) []string {
	s := j.Spec
	n := s.Nodes
	hosts := c.Hosts
	if len(hosts) != n {
		hosts = make([]string, n)
		for k := range n {
			hosts[k] = HostName(j, k)
		}
	}
	ak, sk := c.AccessKey, c.SecretKey
	if j.AccessKey != "" {
		ak, sk = j.AccessKey, j.SecretKey
	}
	env := map[string]string{
		"DLS_TASK_INDEX":              strconv.Itoa(i),
		"DLS_TASK_NUMBER":             strconv.Itoa(n),
		"DLS_APP_URL":                 s.AppURL,
		"DLS_DATA_URL":                s.DataURL,
		"DLS_TRAIN_URL":               s.TrainURL,
		"DLS_LOG_URL":                 s.LogURL,
		"DLS_JOB_ID":                  j.ID,
		"BATCH_JOB_ID":                j.ID,
		"BATCH_TASK_CURRENT_INSTANCE": hosts[i],
		"MA_NUM_HOSTS":                strconv.Itoa(n),
		"MA_NUM_GPUS":                 strconv.Itoa(s.Flavor.GPUs),
		"MA_JOB_ID":                   j.ID,
		"VC_TASK_INDEX":               strconv.Itoa(i),
		"VC_WORKER_NUM":               strconv.Itoa(n),
		"VC_WORKER_HOSTS":             strings.Join(hosts, ","),
		"AWS_ENDPOINT_URL":            c.S3Endpoint,
		"S3_ENDPOINT":                 c.S3Endpoint,
		"AWS_ACCESS_KEY_ID":           ak,
		"AWS_SECRET_ACCESS_KEY":       sk,
		"AWS_DEFAULT_REGION":          c.Region,
		"AWS_REGION":                  c.Region,
		"S3_USE_HTTPS":                "0",
		"S3_VERIFY_SSL":               "0",
	}
	for k := range n {
		env[fmt.Sprintf("BATCH_CUSTOM%d_HOSTS", k)] = fmt.Sprintf("%s:%d", hosts[k], s.Port)
	}
	if s.Flavor.GPUs == 0 {
		// Keeps an NVIDIA runtime from exposing every GPU to a CPU job.
		env["NVIDIA_VISIBLE_DEVICES"] = "void"
	}
	for k, v := range s.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Command is the task's command: one string is a shell command line, as
// the console's run command is.
func Command(s Spec) []string {
	if len(s.Command) == 1 && strings.ContainsAny(s.Command[0], " \t;&|$") {
		return []string{"/bin/sh", "-c", s.Command[0]}
	}
	return s.Command
}
