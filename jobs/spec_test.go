package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/docker"
)

func testJob(nodes, gpus int) *api.Job {
	s := api.JobSpec{Name: "My Job_1", Image: "x:1", Nodes: nodes, AppURL: "s3://bkt/new/", DataURL: "obs://bkt/d/",
		TrainURL: "s3://bkt/o/", Command: []string{"python", "t.py"}, Flavor: api.Flavor{CPUs: 2, Memory: 1 << 30, GPUs: gpus}}
	if err := Normalize(&s); err != nil {
		panic(err)
	}
	return &api.Job{ID: "job-1234", Spec: s}
}

var contract = Contract{S3Endpoint: "http://172.18.0.1:7081", AccessKey: "AK", SecretKey: "SK", Region: "r",
	Image: "127.0.0.1:7082/x@sha256:abc", Network: "malocal-job-1234", DataDir: "/d"}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestEnvIsThePlatformContract(t *testing.T) {
	j := testJob(3, 0)
	env := envMap(Env(j, 1, contract, nil))
	want := map[string]string{
		"DLS_TASK_INDEX": "1", "DLS_TASK_NUMBER": "3", "DLS_APP_URL": "s3://bkt/new/", "DLS_DATA_URL": "obs://bkt/d/",
		"DLS_TRAIN_URL": "s3://bkt/o/", "DLS_JOB_ID": "job-1234", "BATCH_JOB_ID": "job-1234",
		"BATCH_TASK_CURRENT_INSTANCE": "my-job-1-1",
		"BATCH_CUSTOM0_HOSTS":         "my-job-1-0:2222", "BATCH_CUSTOM1_HOSTS": "my-job-1-1:2222", "BATCH_CUSTOM2_HOSTS": "my-job-1-2:2222",
		"MA_NUM_HOSTS": "3", "MA_NUM_GPUS": "0", "VC_TASK_INDEX": "1", "VC_WORKER_NUM": "3",
		"VC_WORKER_HOSTS":  "my-job-1-0,my-job-1-1,my-job-1-2",
		"AWS_ENDPOINT_URL": "http://172.18.0.1:7081", "S3_ENDPOINT": "http://172.18.0.1:7081",
		"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_DEFAULT_REGION": "r",
		"NVIDIA_VISIBLE_DEVICES": "void",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["BATCH_CUSTOM3_HOSTS"]; ok {
		t.Error("BATCH_CUSTOM3_HOSTS set for a 3-node job")
	}
}

func TestContainerSpecResourcesAndGPUs(t *testing.T) {
	j := testJob(2, 2)
	c := ContainerSpec(j, 1, contract, []string{"2", "3"})
	if c.Image != contract.Image || c.Hostname != "my-job-1-1" || c.HostConfig.NetworkMode != contract.Network {
		t.Errorf("identity: %+v", c)
	}
	if c.HostConfig.NanoCPUs != 2e9 || c.HostConfig.Memory != 1<<30 {
		t.Errorf("resources: %+v", c.HostConfig)
	}
	want := []docker.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"2", "3"}, Capabilities: [][]string{{"gpu"}}}}
	if len(c.HostConfig.DeviceRequests) != 1 || strings.Join(c.HostConfig.DeviceRequests[0].DeviceIDs, ",") != "2,3" ||
		c.HostConfig.DeviceRequests[0].Capabilities[0][0] != want[0].Capabilities[0][0] {
		t.Errorf("GPU requests: %+v", c.HostConfig.DeviceRequests)
	}
	env := envMap(c.Env)
	if env["NVIDIA_VISIBLE_DEVICES"] != "2,3" || env["MA_NUM_GPUS"] != "2" {
		t.Errorf("GPU env: %s %s", env["NVIDIA_VISIBLE_DEVICES"], env["MA_NUM_GPUS"])
	}
	if c.Labels[LabelJob] != "job-1234" || c.Labels[LabelTask] != "1" || c.Labels[LabelDataDir] != "/d" {
		t.Errorf("labels: %v", c.Labels)
	}
	if len(c.NetworkingConfig.EndpointsConfig[contract.Network].Aliases) != 1 {
		t.Errorf("no network alias: %+v", c.NetworkingConfig)
	}
	// Nothing that widens the container's reach.
	if c.HostConfig.NetworkMode == "host" || len(c.HostConfig.SecurityOpt) == 0 {
		t.Errorf("isolation: %+v", c.HostConfig)
	}
	// A CPU job gets no device request.
	if d := ContainerSpec(testJob(1, 0), 0, contract, nil).HostConfig.DeviceRequests; len(d) != 0 {
		t.Errorf("CPU job with device requests: %+v", d)
	}
}

func TestOneStringCommandRunsInAShell(t *testing.T) {
	j := testJob(1, 0)
	j.Spec.Command = []string{"bash /home/work/run_train.sh python a.py --x 1"}
	c := ContainerSpec(j, 0, contract, nil)
	if strings.Join(c.Cmd, "|") != "/bin/sh|-c|bash /home/work/run_train.sh python a.py --x 1" {
		t.Errorf("cmd %q", c.Cmd)
	}
	j.Spec.Command = []string{"python", "a b.py"}
	if c := ContainerSpec(j, 0, contract, nil); strings.Join(c.Cmd, "|") != "python|a b.py" {
		t.Errorf("argv kept: %q", c.Cmd)
	}
}

func TestNormalizeNamesTheField(t *testing.T) {
	ok := api.JobSpec{Name: "a", Image: "i", Command: []string{"x"}, AppURL: "s3://bkt/a/"}
	for _, c := range []struct {
		change func(*api.JobSpec)
		field  string
	}{
		{func(s *api.JobSpec) { s.Name = " " }, "name:"},
		{func(s *api.JobSpec) { s.Image = "" }, "image:"},
		{func(s *api.JobSpec) { s.Command = []string{" "} }, "command:"},
		{func(s *api.JobSpec) { s.Nodes = 65 }, "nodes:"},
		{func(s *api.JobSpec) { s.AppURL = "" }, "app_url:"},
		{func(s *api.JobSpec) { s.AppURL = "s3://UPPER/x" }, "app_url:"},
		{func(s *api.JobSpec) { s.TrainURL = "s3://bkt/../x" }, "train_url:"},
		{func(s *api.JobSpec) { s.Env = map[string]string{"DLS_TASK_INDEX": "9"} }, "env:"},
		{func(s *api.JobSpec) { s.Env = map[string]string{"1x": "9"} }, "env:"},
		{func(s *api.JobSpec) { s.Flavor.Memory = 1024 }, "flavor.memory:"},
		{func(s *api.JobSpec) { s.Policy = "any" }, "policy:"},
		{func(s *api.JobSpec) { s.Retries = 11 }, "retries:"},
		{func(s *api.JobSpec) { s.Timeout = api.Duration(-time.Second) }, "timeout:"},
	} {
		s := ok
		c.change(&s)
		err := Normalize(&s)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("want an error naming %s, got %v", c.field, err)
		}
	}
	s := ok
	if err := Normalize(&s); err != nil || s.Nodes != 1 || s.Policy != api.PolicyAll || s.Port != api.DefaultPort {
		t.Errorf("defaults: %+v %v", s, err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]api.ByteSize{"4g": 4 << 30, "512m": 512 << 20, "1Gi": 1 << 30, "100": 100, "1.5k": 1536} {
		if got, err := api.ParseByteSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	if _, err := api.ParseByteSize("lots"); err == nil {
		t.Error("lots parsed")
	}
}
