package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func testJob(nodes, gpus int) *Job {
	s := Spec{Name: "My Job_1", Image: "x:1", Nodes: nodes, AppURL: "s3://bkt/new/", DataURL: "obs://bkt/d/",
		TrainURL: "s3://bkt/o/", Command: []string{"python", "t.py"}, Flavor: Flavor{CPUs: 2, Memory: 1 << 30, GPUs: gpus}}
	if err := Normalize(&s); err != nil {
		panic(err)
	}
	return &Job{ID: "job-1234", Spec: s}
}

var contract = Contract{S3Endpoint: "http://172.18.0.1:7081", AccessKey: "AK", SecretKey: "SK", Region: "r"}

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
	env := envMap(Env(j, 1, contract))
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

func TestOneStringCommandRunsInAShell(t *testing.T) {
	j := testJob(1, 0)
	j.Spec.Command = []string{"bash /home/work/run_train.sh python a.py --x 1"}
	if c := Command(j.Spec); strings.Join(c, "|") != "/bin/sh|-c|bash /home/work/run_train.sh python a.py --x 1" {
		t.Errorf("cmd %q", c)
	}
	j.Spec.Command = []string{"python", "a b.py"}
	if c := Command(j.Spec); strings.Join(c, "|") != "python|a b.py" {
		t.Errorf("argv kept: %q", c)
	}
}

func TestEnvUsesTheJobsOwnKey(t *testing.T) {
	j := testJob(1, 1)
	j.AccessKey, j.SecretKey = "JOBAK", "JOBSK"
	env := envMap(Env(j, 0, contract))
	if env["AWS_ACCESS_KEY_ID"] != "JOBAK" || env["AWS_SECRET_ACCESS_KEY"] != "JOBSK" {
		t.Errorf("keys: %s %s", env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
	}
	if _, ok := env["NVIDIA_VISIBLE_DEVICES"]; ok {
		t.Error("the core set GPU device ids: only a backend knows them")
	}
}

func TestGrantsReadCodeAndDataWriteOutputAndLogs(t *testing.T) {
	s := testJob(1, 0).Spec
	s.LogURL = "s3://logs/l/"
	got := Grants(s)
	want := []Grant{{"bkt", "new/", false}, {"bkt", "d/", false}, {"bkt", "o/", true}, {"logs", "l/", true}}
	if len(got) != len(want) {
		t.Fatalf("grants %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("grant %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestNormalizeNamesTheField(t *testing.T) {
	ok := Spec{Name: "a", Image: "i", Command: []string{"x"}, AppURL: "s3://bkt/a/"}
	for _, c := range []struct {
		change func(*Spec)
		field  string
	}{
		{func(s *Spec) { s.Name = " " }, "name:"},
		{func(s *Spec) { s.Image = "" }, "image:"},
		{func(s *Spec) { s.Command = []string{" "} }, "command:"},
		{func(s *Spec) { s.Nodes = 65 }, "nodes:"},
		{func(s *Spec) { s.AppURL = "" }, "app_url:"},
		{func(s *Spec) { s.AppURL = "s3://UPPER/x" }, "app_url:"},
		{func(s *Spec) { s.TrainURL = "s3://bkt/../x" }, "train_url:"},
		{func(s *Spec) { s.Env = map[string]string{"DLS_TASK_INDEX": "9"} }, "env:"},
		{func(s *Spec) { s.Env = map[string]string{"1x": "9"} }, "env:"},
		{func(s *Spec) { s.Flavor.Memory = 1024 }, "flavor.memory:"},
		{func(s *Spec) { s.Policy = "any" }, "policy:"},
		{func(s *Spec) { s.Description = strings.Repeat("x", 1025) }, "description:"},
		{func(s *Spec) { s.Retries = 11 }, "retries:"},
		{func(s *Spec) { s.Timeout = -time.Second }, "timeout:"},
	} {
		s := ok
		c.change(&s)
		err := Normalize(&s)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("want an error naming %s, got %v", c.field, err)
		}
	}
	s := ok
	if err := Normalize(&s); err != nil || s.Nodes != 1 || s.Policy != PolicyAll || s.Port != DefaultPort {
		t.Errorf("defaults: %+v %v", s, err)
	}
}
