package runner

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
)

func TestOptionsCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	ok := func() Options {
		return Options{Code: dir, Image: "img:1", Command: []string{"true"}}
	}
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"no code", func(o *Options) { o.Code = "" }, "--code: required"},
		{"missing code", func(o *Options) { o.Code = filepath.Join(dir, "nope") }, "no such file"},
		{"code is a file", func(o *Options) { o.Code = file }, "not a directory"},
		{"no image", func(o *Options) { o.Image = "" }, "--image: required"},
		{"no command", func(o *Options) { o.Command = nil }, "give it after --"},
		{"data and data url", func(o *Options) { o.Data, o.DataURL = dir, "s3://b/d/" }, "give one of them"},
		{"data is a file", func(o *Options) { o.Data = file }, "not a directory"},
		{"local data url", func(o *Options) { o.DataURL = "/data" }, "want an s3:// or obs:// URL"},
		{"negative timeout", func(o *Options) { o.Timeout = -time.Second }, "must not be negative"},
	} {
		o := ok()
		c.mod(&o)
		if err := o.check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
	o := ok()
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	if o.Nodes != 1 || o.Bucket != DefaultBucket || o.Docker != "docker" || o.Name != jobName(dir) || o.Stdout == nil || o.Stderr == nil {
		t.Errorf("defaults: %+v", o)
	}
}

func TestJobName(t *testing.T) {
	for in, want := range map[string]string{
		"./src": "src", "/work/My Code_v2/": "my-code-v2", "/x/___": "run",
		"/x/" + strings.Repeat("a", 70): strings.Repeat("a", 40), "/x/-Train-": "train",
	} {
		if got := jobName(in); got != want {
			t.Errorf("jobName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := CodeDirName("/a/b/src/"); got != "src" {
		t.Errorf("CodeDirName = %q", got)
	}
}

func TestMatchTag(t *testing.T) {
	refs := []string{"<none>:<none>", "reg.example:5000/team/base:1.0", "team/base:1.0-rc", "team/base:1.0"}
	if got := matchTag(refs, "team/base:1.0"); got != "team/base:1.0" {
		t.Errorf("exact: %q", got)
	}
	if got := matchTag(refs[:3], "team/base:1.0"); got != "reg.example:5000/team/base:1.0" {
		t.Errorf("suffix: %q", got)
	}
	if got := matchTag([]string{"myteam/base:1.0"}, "team/base:1.0"); got != "" {
		t.Errorf("a name that only ends in the same letters matched: %q", got)
	}
}

func TestLoopback(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:7082": "127.0.0.1:7082", "[::]:7082": "127.0.0.1:7082", ":7082": "127.0.0.1:7082",
		"127.0.0.1:1": "127.0.0.1:1", "10.0.0.5:9": "10.0.0.5:9",
	} {
		if got := loopback(in); got != want {
			t.Errorf("loopback(%q) = %q, want %q", in, got, want)
		}
	}
}

func intp(i int) *int { return &i }

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		j    api.Job
		want int
	}{
		{api.Job{Status: api.StatusCompleted, ExitCode: intp(0)}, 0},
		{api.Job{Status: api.StatusFailed, ExitCode: intp(7)}, 7},
		{api.Job{Status: api.StatusFailed}, ExitError},
		{api.Job{Status: api.StatusCanceled, ExitCode: intp(-1)}, ExitError},
		{api.Job{Status: api.StatusTimeout, ExitCode: intp(124)}, ExitTimeout},
		{api.Job{Status: api.StatusAuditFailed}, ExitAuditFailed},
	} {
		if got := exitCode(&c.j); got != c.want {
			t.Errorf("%s: %d, want %d", c.j.Status, got, c.want)
		}
	}
}

type report struct {
	Suites []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Cases    []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestJUnit(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := &api.Job{Spec: api.JobSpec{Name: "mnist"}, Status: api.StatusFailed, Created: t0, Started: t0, Finished: t0.Add(3 * time.Second),
		Tasks: []api.Task{
			{Index: 0, Host: "mnist-0", Status: "succeeded", ExitCode: intp(0), Started: t0, Finished: t0.Add(time.Second)},
			{Index: 1, Host: "mnist-1", Status: "failed", ExitCode: intp(3), Started: t0, Finished: t0.Add(2 * time.Second)},
			{Index: 2, Host: "mnist-2", Status: "waiting"},
		}}
	b, err := JUnit(j, map[int][]string{1: {"loss nan", "Traceback <x> & \x1b[31m"}})
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := xml.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	s := rep.Suites[0]
	if s.Name != "malocal run mnist" || s.Tests != 3 || s.Failures != 2 || s.Cases[0].Failure != nil {
		t.Fatalf("report:\n%s", b)
	}
	if f := s.Cases[1].Failure; f.Message != "exit code 3" || f.Type != "failed" || !strings.HasPrefix(f.Text, "loss nan\nTraceback <x> & ") {
		t.Errorf("task 1 failure: %+v", f)
	}
	if f := s.Cases[2].Failure; f.Message != "task waiting" {
		t.Errorf("task 2 failure: %+v", f)
	}
	if !strings.Contains(string(b), `time="2.000"`) {
		t.Errorf("task times:\n%s", b)
	}

	j = &api.Job{Spec: api.JobSpec{Name: "m"}, Status: api.StatusAuditFailed, Audit: []string{"rule A", "rule B"},
		Tasks: []api.Task{{Index: 0, Host: "m-0", Status: "waiting"}}}
	b, _ = JUnit(j, nil)
	rep = report{}
	xml.Unmarshal(b, &rep)
	if f := rep.Suites[0].Cases[0].Failure; f == nil || f.Message != "the image failed the audit" || f.Text != "rule A\nrule B" {
		t.Errorf("audit failure:\n%s", b)
	}

	j = &api.Job{Spec: api.JobSpec{Name: "m"}, Status: api.StatusTimeout, Reason: "time limit of 3s reached",
		Tasks: []api.Task{{Index: 0, Host: "m-0", Status: "stopped", ExitCode: intp(137)}}}
	b, _ = JUnit(j, nil)
	if !strings.Contains(string(b), `message="exit code 137: time limit of 3s reached" type="timeout"`) {
		t.Errorf("timeout failure:\n%s", b)
	}
}

// TestDefaultBaseNeedsMmdebstrap: the default base, found neither in the
// emulator nor in the engine, is built offline; without mmdebstrap the
// error says what to install.
func TestDefaultBaseNeedsMmdebstrap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case api.Prefix + "/images":
			w.Write([]byte("[]"))
		case "/v2/":
			w.Write([]byte("{}"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	bin := t.TempDir()
	docker := filepath.Join(bin, "docker")
	os.WriteFile(docker, []byte("#!/bin/sh\necho 'Error: No such image: '\"$5\" >&2\nexit 1\n"), 0o755)
	t.Setenv("PATH", bin) // no mmdebstrap
	addr := strings.TrimPrefix(srv.URL, "http://")
	r := &run{o: Options{Image: baseimage.DefaultCPUName + ":1.0", Docker: docker, Stderr: &strings.Builder{}},
		t: &target{client: api.NewClient(addr, "t"), registry: addr, dataDir: t.TempDir()}, start: time.Now()}
	_, err := r.ensureImage(context.Background())
	if !errors.Is(err, baseimage.ErrNoMmdebstrap) || !strings.Contains(err.Error(), "apt-get install mmdebstrap") ||
		!strings.Contains(err.Error(), "neither in the emulator nor in the local Docker engine") {
		t.Errorf("err = %v", err)
	}

	r.o.Image = "team/other:1"
	if _, err := r.ensureImage(context.Background()); err == nil || !strings.Contains(err.Error(), "neither in the emulator's registry nor in the local Docker engine") {
		t.Errorf("an image found nowhere: %v", err)
	}
}
