package dockerbackend

import (
	"strings"
	"testing"

	"github.com/malocal/malocal/jobs"
)

func testJob(nodes, gpus int) *jobs.Job {
	s := jobs.Spec{Name: "My Job_1", Image: "x:1", Nodes: nodes, AppURL: "s3://bkt/new/", Command: []string{"python", "t.py"},
		Flavor: jobs.Flavor{CPUs: 2, Memory: 1 << 30, GPUs: gpus}}
	if err := jobs.Normalize(&s); err != nil {
		panic(err)
	}
	return &jobs.Job{ID: "job-1234", Spec: s}
}

var contract = Contract{Contract: jobs.Contract{S3Endpoint: "http://172.18.0.1:7081", AccessKey: "AK", SecretKey: "SK", Region: "r"},
	Image: "127.0.0.1:7082/x@sha256:abc", Network: "malocal-job-1234", DataDir: "/d", PidsLimit: 4096, DefaultMemory: 8 << 30}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestContainerSpecResourcesAndGPUs(t *testing.T) {
	j := testJob(2, 2)
	c := ContainerSpec(j, 1, contract, []string{"2", "3"})
	cfg, hc := c.Config, c.HostConfig
	if c.Name != "malocal-job-1234-1" || cfg.Image != contract.Image || cfg.Hostname != "my-job-1-1" || string(hc.NetworkMode) != contract.Network {
		t.Errorf("identity: %+v %+v", c, cfg)
	}
	if hc.NanoCPUs != 2e9 || hc.Memory != 1<<30 || hc.PidsLimit == nil || *hc.PidsLimit != 4096 {
		t.Errorf("resources: %+v", hc.Resources)
	}
	if len(hc.DeviceRequests) != 1 || strings.Join(hc.DeviceRequests[0].DeviceIDs, ",") != "2,3" || hc.DeviceRequests[0].Capabilities[0][0] != "gpu" {
		t.Errorf("GPU requests: %+v", hc.DeviceRequests)
	}
	env := envMap(cfg.Env)
	if env["NVIDIA_VISIBLE_DEVICES"] != "2,3" || env["MA_NUM_GPUS"] != "2" || env["DLS_TASK_INDEX"] != "1" || env["AWS_ACCESS_KEY_ID"] != "AK" {
		t.Errorf("env: %v", env)
	}
	if cfg.Labels[jobs.LabelJob] != "job-1234" || cfg.Labels[jobs.LabelTask] != "1" || cfg.Labels[jobs.LabelDataDir] != "/d" {
		t.Errorf("labels: %v", cfg.Labels)
	}
	if a := c.NetworkingConfig.EndpointsConfig[contract.Network].Aliases; len(a) != 1 || a[0] != "my-job-1-1" {
		t.Errorf("network alias: %+v", a)
	}
	// Nothing that widens the container's reach.
	if hc.NetworkMode == "host" || hc.Privileged || len(hc.CapAdd) > 0 || len(hc.Binds) > 0 || len(hc.SecurityOpt) == 0 {
		t.Errorf("isolation: %+v", hc)
	}
	// A CPU job gets no device request, and no GPU at all from a runtime.
	cpu := ContainerSpec(testJob(1, 0), 0, contract, nil)
	if d := cpu.HostConfig.DeviceRequests; len(d) != 0 || envMap(cpu.Config.Env)["NVIDIA_VISIBLE_DEVICES"] != "void" {
		t.Errorf("CPU job: %+v", d)
	}
}

func TestContainerSpecDefaultsMemoryAndPids(t *testing.T) {
	j := testJob(1, 0)
	j.Spec.Flavor.Memory = 0
	c := ContainerSpec(j, 0, contract, nil)
	if c.HostConfig.Memory != 8<<30 {
		t.Errorf("memory without a flavor: %d", c.HostConfig.Memory)
	}
	none := contract
	none.PidsLimit, none.DefaultMemory = 0, 0
	c = ContainerSpec(j, 0, none, nil)
	if c.HostConfig.PidsLimit != nil || c.HostConfig.Memory != 0 {
		t.Errorf("no bounds asked: %+v", c.HostConfig.Resources)
	}
}

func TestContainerSpecUsesTheJobsOwnKey(t *testing.T) {
	j := testJob(1, 0)
	j.AccessKey, j.SecretKey = "JOB", "JOBSECRET"
	env := envMap(ContainerSpec(j, 0, contract, nil).Config.Env)
	if env["AWS_ACCESS_KEY_ID"] != "JOB" || env["AWS_SECRET_ACCESS_KEY"] != "JOBSECRET" {
		t.Errorf("keys %s %s", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
	}
}

func TestGPUsAreHandedOutByIDAndFreedAtCleanup(t *testing.T) {
	b := New(Config{GPUs: []string{"0", "1", "2"}})
	a, err := b.takeGPUs("job-a", 2)
	if err != nil || strings.Join(a, ",") != "0,1" {
		t.Fatalf("job-a: %v %v", a, err)
	}
	if _, err := b.takeGPUs("job-b", 2); err == nil {
		t.Error("two GPUs handed out of one free")
	}
	// A re-attached job keeps the devices it had.
	c := testJob(1, 1)
	c.ID = "job-c"
	c.Tasks = []jobs.Task{{Index: 0, Status: jobs.TaskRunning, Devices: []string{"2"}}}
	b.claimGPUs(c)
	if _, err := b.takeGPUs("job-b", 1); err == nil {
		t.Error("a re-attached job's GPU handed out again")
	}
	b.mu.Lock()
	for d, owner := range b.gpuOwner {
		if owner == "job-a" {
			delete(b.gpuOwner, d)
		}
	}
	b.mu.Unlock()
	if got, err := b.takeGPUs("job-b", 2); err != nil || strings.Join(got, ",") != "0,1" {
		t.Errorf("after job-a ended: %v %v", got, err)
	}
}
