package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/jobs"
)

func TestRangesMatchTheAPI(t *testing.T) {
	if maxNodes != jobs.MaxNodes {
		t.Errorf("the CLI allows %d nodes, the API %d", maxNodes, jobs.MaxNodes)
	}
}

func TestCheckSpec(t *testing.T) {
	ok := api.JobSpec{Nodes: 1, Port: api.DefaultPort}
	if err := checkSpec(ok, func(string) bool { return true }); err != nil {
		t.Fatalf("a good spec: %v", err)
	}
	for _, c := range []struct {
		change func(*api.JobSpec)
		flags  bool
		want   string
	}{
		{func(s *api.JobSpec) { s.Nodes = 0 }, true, "--nodes: must be between 1 and 64, got 0"},
		{func(s *api.JobSpec) { s.Nodes = 65 }, false, "nodes: must be between 1 and 64, got 65"},
		{func(s *api.JobSpec) { s.Flavor.CPUs = -1 }, true, "--cpus: must not be negative"},
		{func(s *api.JobSpec) { s.Flavor.Memory = 1024 }, false, "flavor.memory: at least 6m"},
		{func(s *api.JobSpec) { s.Flavor.GPUs = -2 }, true, "--gpus: must not be negative, got -2"},
		{func(s *api.JobSpec) { s.Timeout = api.Duration(-time.Second) }, true, "--timeout: must not be negative, got -1s"},
		{func(s *api.JobSpec) { s.Retries = 11 }, true, "--retries: must be between 0 and 10, got 11"},
		{func(s *api.JobSpec) { s.Port = 70000 }, true, "--port: must be between 1 and 65535, got 70000"},
	} {
		s := ok
		c.change(&s)
		err := checkSpec(s, func(string) bool { return c.flags })
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%+v: %v, want %q", s, err, c.want)
		}
	}
}

func TestJobYAMLExampleParses(t *testing.T) {
	spec, err := parseJobFile([]byte(JobYAMLExample))
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name != "mnist" || spec.Nodes != 1 || spec.Flavor.Memory != 1<<30 || spec.Timeout != api.Duration(30*time.Minute) ||
		spec.Env["EPOCHS"] != "1" || len(spec.Command) != 6 || spec.AppURL != "s3://malocal-demo/new/" {
		t.Errorf("parsed %+v", spec)
	}
	if err := checkSpec(spec, func(string) bool { return false }); err != nil {
		t.Error(err)
	}
	// Omitted numbers take the flags' defaults; an explicit 0 is refused.
	spec, err = parseJobFile([]byte("name: a\nimage: b:1\ncommand: [echo]\napp_url: s3://bkt/x/\n"))
	if err != nil || spec.Nodes != 1 || spec.Port != api.DefaultPort {
		t.Errorf("defaults: %+v %v", spec, err)
	}
	spec, _ = parseJobFile([]byte("name: a\nnodes: 0\n"))
	if err := checkSpec(spec, func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "nodes: must be between 1 and 64, got 0") {
		t.Errorf("nodes: 0 in a file: %v", err)
	}
}

func TestNodesZeroRefusedBeforeAnyRequest(t *testing.T) {
	for _, args := range [][]string{
		{"job", "submit", "--nodes", "0", "--name", "x", "--image", "a:1", "--app-url", "s3://bkt/x/", "--", "true"},
		{"run", "--nodes", "0", "--code", t.TempDir(), "--image", "a:1", "--", "true"},
	} {
		var out, errb bytes.Buffer
		code := Execute(t.Context(), append([]string{"--data-dir", t.TempDir()}, args...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "--nodes: must be between 1 and 64, got 0") {
			t.Errorf("%v: exit %d, stderr %q", args[:2], code, errb.String())
		}
	}
}

type fakeAPIError struct{ code, msg string }

func (e fakeAPIError) Error() string {
	return "operation error S3: X, https response error StatusCode: 404, RequestID: 1, HostID: 2, api error " + e.code
}
func (e fakeAPIError) ErrorCode() string             { return e.code }
func (e fakeAPIError) ErrorMessage() string          { return e.msg }
func (e fakeAPIError) ErrorFault() smithy.ErrorFault { return smithy.FaultClient }

func TestOBSErrorInPlainWords(t *testing.T) {
	for _, c := range []struct {
		code string
		args []string
		want string
	}{
		{"NoSuchBucket", []string{"s3://nope/x"}, "bucket nope does not exist: make it with `malocal obs mb s3://nope`"},
		{"BucketNotEmpty", []string{"obs://full"}, "`malocal obs rb --force s3://full`"},
		{"NoSuchKey", []string{"s3://b/k.txt"}, "s3://b/k.txt: no such object: list what is there with `malocal obs ls s3://b/`"},
		{"SlowDown", nil, "the object store refused it: please slow down (SlowDown)"},
	} {
		err := obsError(fakeAPIError{c.code, "please slow down"}, c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "RequestID") {
			t.Errorf("%s: %v, want %q", c.code, err, c.want)
		}
	}
}

func TestImageListingAndRemoval(t *testing.T) {
	imgs := []api.Image{
		{Repository: "a", Tag: "1", Digest: "sha256:aa"},
		{Repository: "a", Tag: "2", Digest: "sha256:aa"},
		{Repository: "a", Tag: "3", Digest: "sha256:bb"},
		{Repository: "a", Digest: "sha256:cc"},
		{Repository: "i", Tag: "1", Digest: "sha256:ix", MediaType: "application/vnd.oci.image.index.v1+json"},
		{Repository: "i", Digest: "sha256:child"},
		{Repository: "i", Tag: "c", Digest: "sha256:child"},
	}
	shown, hidden := visibleImages(imgs, false)
	if len(shown) != 5 || hidden != 2 {
		t.Errorf("shown %v, hidden %d", shown, hidden)
	}
	if shown, hidden = visibleImages(imgs, true); len(shown) != 7 || hidden != 0 {
		t.Errorf("--all: shown %v, hidden %d", shown, hidden)
	}
	for ref, want := range map[string]string{"1": "", "3": "sha256:bb", "sha256:bb": "", "9": ""} {
		if got := danglingAfterUntag(imgs, "a", ref); got != want {
			t.Errorf("rm a:%s: removes manifest %q, want %q", ref, got, want)
		}
	}
	if got := danglingAfterUntag(imgs, "i", "c"); got != "" {
		t.Errorf("a manifest an index may use was removed: %q", got)
	}
}

func TestGCReportSaysWhatWasKept(t *testing.T) {
	r := gcReport(&api.GCResult{BlobsKept: 3, BytesKept: 2048, Grace: api.Duration(time.Hour)})
	for _, w := range []string{"deleted 0 blobs (0 B)", "kept 3 unreferenced blobs (2.0 KiB) written within the last 1h0m0s", "`malocal registry gc --grace 0s` collects them now"} {
		if !strings.Contains(r, w) {
			t.Errorf("report lacks %q:\n%s", w, r)
		}
	}
	if r := gcReport(&api.GCResult{BlobsDeleted: 1, BytesFreed: 10}); strings.Contains(r, "kept") {
		t.Errorf("nothing kept, yet: %s", r)
	}
}
