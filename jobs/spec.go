package jobs

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/docker"
)

// Labels put on every container and network of a job.
const (
	LabelJob     = "malocal.job"
	LabelTask    = "malocal.task"
	LabelDataDir = "malocal.data-dir"
)

// Contract is what the emulator supplies to every container: how to reach
// the object store from the job's network, and the image to run.
type Contract struct {
	S3Endpoint string // http://<gateway>:<port>
	AccessKey  string
	SecretKey  string
	Region     string
	Image      string // the engine's reference: host:port/repo@sha256:…
	Network    string // the job's network name
	DataDir    string // the emulator's data dir, for labels
	// Hosts are the tasks' hostnames when the backend names them itself
	// (Kubernetes: pod hostname and subdomain); empty means HostName.
	Hosts []string
}

// taskPrelude finds the container's own IP with shell builtins only (any
// image with /bin/sh works), exports it under both platforms' names, then
// runs the command.
const taskPrelude = `read -r h < /etc/hostname; ip=; while read -r a b _; do if [ "$b" = "$h" ]; then ip=$a; break; fi; done < /etc/hosts; export BATCH_TASK_CURRENT_HOST_IP="$ip" MA_CURRENT_IP="$ip"; exec "$@"`

// Env is the environment of task i: DESIGN 1.3, exactly.
func Env(j *api.Job, i int, c Contract, gpus []string) []string {
	s := j.Spec
	n := s.Nodes
	hosts := c.Hosts
	if len(hosts) != n {
		hosts = make([]string, n)
		for k := range n {
			hosts[k] = HostName(j, k)
		}
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
		"AWS_ACCESS_KEY_ID":           c.AccessKey,
		"AWS_SECRET_ACCESS_KEY":       c.SecretKey,
		"AWS_DEFAULT_REGION":          c.Region,
		"AWS_REGION":                  c.Region,
		"S3_USE_HTTPS":                "0",
		"S3_VERIFY_SSL":               "0",
	}
	for k := range n {
		env[fmt.Sprintf("BATCH_CUSTOM%d_HOSTS", k)] = fmt.Sprintf("%s:%d", hosts[k], s.Port)
	}
	if len(gpus) > 0 {
		env["NVIDIA_VISIBLE_DEVICES"] = strings.Join(gpus, ",")
	} else if s.Flavor.GPUs == 0 {
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
func Command(s api.JobSpec) []string {
	if len(s.Command) == 1 && strings.ContainsAny(s.Command[0], " \t;&|$") {
		return []string{"/bin/sh", "-c", s.Command[0]}
	}
	return s.Command
}

// ContainerSpec is the engine's create body for task i: a pure function of
// the job, so it is tested without Docker. gpus are the device IDs
// allocated to this task.
func ContainerSpec(j *api.Job, i int, c Contract, gpus []string) docker.ContainerConfig {
	s := j.Spec
	cmd := Command(s)
	host := HostName(j, i)
	init := true
	cfg := docker.ContainerConfig{
		Image:      c.Image,
		Hostname:   host,
		Env:        Env(j, i, c, gpus),
		Entrypoint: []string{"/bin/sh", "-c", taskPrelude, "malocal-task"},
		Cmd:        cmd,
		Labels: map[string]string{
			LabelJob:     j.ID,
			LabelTask:    strconv.Itoa(i),
			LabelDataDir: c.DataDir,
		},
		HostConfig: docker.HostConfig{
			NetworkMode: c.Network,
			NanoCPUs:    int64(s.Flavor.CPUs * 1e9),
			Memory:      int64(s.Flavor.Memory),
			ShmSize:     64 << 20,
			Init:        &init,
			SecurityOpt: []string{"no-new-privileges:true"},
		},
		NetworkingConfig: &docker.NetworkingConfig{EndpointsConfig: map[string]docker.EndpointSettings{
			c.Network: {Aliases: []string{host}},
		}},
	}
	if len(gpus) > 0 {
		cfg.HostConfig.DeviceRequests = []docker.DeviceRequest{{Driver: "nvidia", DeviceIDs: gpus, Capabilities: [][]string{{"gpu"}}}}
		cfg.HostConfig.ShmSize = 1 << 30
	}
	return cfg
}
