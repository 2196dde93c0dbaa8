package dockerbackend

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/malocal/malocal/jobs"
)

// Contract is what every container of a job gets from the emulator.
type Contract struct {
	jobs.Contract
	Image   string // the engine's reference: host:port/repo@sha256:…
	Network string // the job's network name
	DataDir string // the emulator's data dir, for labels
	// PidsLimit bounds each container's processes; 0: no bound.
	PidsLimit int64
	// DefaultMemory bounds each container's memory when the flavor
	// gives none; 0: no bound.
	DefaultMemory int64
}

// ContainerName is task i's container name, unique across jobs.
func ContainerName(j *jobs.Job, i int) string { return fmt.Sprintf("malocal-%s-%d", j.ID, i) }

// NetworkName is the job's private network.
func NetworkName(j *jobs.Job) string { return "malocal-" + j.ID }

// taskPrelude finds the container's own IP with shell builtins only (any
// image with /bin/sh works), exports it under both platforms' names, then
// runs the command.
const taskPrelude = `read -r h < /etc/hostname; ip=; while read -r a b _; do if [ "$b" = "$h" ]; then ip=$a; break; fi; done < /etc/hosts; export BATCH_TASK_CURRENT_HOST_IP="$ip" MA_CURRENT_IP="$ip"; exec "$@"`

// ContainerSpec is the engine's create request for task i: a pure
// function of the job, so it is tested without Docker. gpus are the
// device ids given to this task.
func ContainerSpec(j *jobs.Job, i int, c Contract, gpus []string) client.ContainerCreateOptions {
	s := j.Spec
	host := jobs.HostName(j, i)
	env := jobs.Env(j, i, c.Contract)
	if len(gpus) > 0 {
		env = setEnv(env, "NVIDIA_VISIBLE_DEVICES", strings.Join(gpus, ","))
	}
	mem := s.Flavor.Memory
	if mem == 0 {
		mem = c.DefaultMemory
	}
	init := true
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(c.Network),
		ShmSize:     64 << 20,
		Init:        &init,
		SecurityOpt: []string{"no-new-privileges:true"},
		Resources: container.Resources{
			NanoCPUs: int64(s.Flavor.CPUs * 1e9),
			Memory:   mem,
		},
	}
	if c.PidsLimit > 0 {
		hc.Resources.PidsLimit = &c.PidsLimit
	}
	if len(gpus) > 0 {
		hc.Resources.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: gpus, Capabilities: [][]string{{"gpu"}}}}
		hc.ShmSize = 1 << 30
	}
	return client.ContainerCreateOptions{
		Name: ContainerName(j, i),
		Config: &container.Config{
			Image:      c.Image,
			Hostname:   host,
			Env:        env,
			Entrypoint: []string{"/bin/sh", "-c", taskPrelude, "malocal-task"},
			Cmd:        jobs.Command(s),
			Labels: map[string]string{
				jobs.LabelJob:     j.ID,
				jobs.LabelTask:    strconv.Itoa(i),
				jobs.LabelDataDir: c.DataDir,
			},
		},
		HostConfig: hc,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			c.Network: {Aliases: []string{host}},
		}},
	}
}

// setEnv replaces (or adds) one variable of a sorted KEY=value list.
func setEnv(env []string, k, v string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, k+"=") {
			out = append(out, kv)
		}
	}
	return append(out, k+"="+v)
}
