package baseimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testInclude is the package list of the test base (the CI base).
var testInclude = []string{"python3", "python3-pip", "python3-numpy"}

// cachedRootfs returns a bookworm root filesystem tarball made by
// mmdebstrap, cached under os.TempDir()/malocal-test-cache by package list
// so that later tests and runs reuse it (never in the repository).
func cachedRootfs(t *testing.T, include []string) string {
	t.Helper()
	needTool(t, "mmdebstrap", "building a base offline from debian:bookworm")
	pkgs := IncludeList(include)
	sum := sha256.Sum256([]byte(strings.Join(pkgs, ",")))
	dir := filepath.Join(os.TempDir(), "malocal-test-cache")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "rootfs-bookworm-"+hex.EncodeToString(sum[:6])+".tar")
	if _, err := os.Stat(p); err == nil {
		t.Logf("using cached rootfs %s (%s)", p, strings.Join(pkgs, ","))
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var log bytes.Buffer
	if err := Mmdebstrap(ctx, "bookworm", include, p, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	st, _ := os.Stat(p)
	t.Logf("mmdebstrap %s: %s, %.0f MB", strings.Join(pkgs, ","), time.Since(start).Round(time.Second), float64(st.Size())/1e6)
	return p
}

// needDocker checks that the Docker engine answers. Under -short (make
// unit: "no Docker") the Docker tests do not run.
func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the Docker engine: not in -short")
	}
	needTool(t, "docker", "running containers from a base")
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		if inCI {
			t.Fatalf("the Docker engine is required under CI=true: %v\n%s", err, out)
		}
		t.Skipf("the Docker engine does not answer: %v\n%s", err, out)
	}
}

func docker(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// TestBaseInDocker builds a base offline from mmdebstrap, pushes it to
// malocal's registry, pulls it with the Docker engine and runs containers
// from it: the user, the dirs, the toolkit, and run_train.sh downloading
// from fakeobs, passing exit codes through and giving 127 on a failed
// download.
func TestBaseInDocker(t *testing.T) {
	needDocker(t)
	removeTestImages(t) // left by a run that timed out before its cleanup
	rootfs := cachedRootfs(t, testInclude)
	host := startRegistry(t)
	cat := OpenCatalog(t.TempDir())
	ctx := t.Context() // bounded by go test -timeout: builds under -race are slow

	start := time.Now()
	var progress bytes.Buffer
	res, err := Build(ctx, BuildOptions{
		Name: "malocal-test/custom-cpu-base", Tag: "t" + time.Now().Format("150405.000000")[7:],
		From: "rootfs:" + rootfs, Registry: host, Catalog: cat, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Logf("build and push: %s\n%s", time.Since(start).Round(time.Millisecond), progress.String())
	ref := res.Ref
	t.Cleanup(func() { docker(t, "rmi", "-f", ref) })

	start = time.Now()
	if out, rc := docker(t, "pull", ref); rc != 0 {
		t.Fatalf("docker pull %s: %s", ref, out)
	}
	t.Logf("docker pull: %s", time.Since(start).Round(time.Millisecond))
	if out, _ := docker(t, "image", "inspect", "--format", "{{.Id}} {{.Config.User}} {{.Config.WorkingDir}} {{index .Config.Labels \"org.malocal.base.name\"}}", ref); !strings.Contains(out, " work /home/work malocal-test/custom-cpu-base") {
		t.Errorf("image inspect: %s", out)
	}

	run := func(args ...string) (string, int) {
		return docker(t, append([]string{"run", "--rm", "--label", "malocal.test=1"}, args...)...)
	}
	out, rc := run(ref, "bash", "-c", `id; pwd; stat -c '%n %u:%g %a' /cache /home/work /home/work/run_train.sh /home/work/user-job-dir;
touch /cache/x && echo cache-writable; grep '^work:' /etc/passwd /etc/group;
python3 -c 'import moxing as mox, numpy; print("moxing", mox.file.copy_parallel.__name__, "numpy", numpy.__version__)'; pip3 --version`)
	if rc != 0 {
		t.Fatalf("container checks exited %d:\n%s", rc, out)
	}
	for _, w := range []string{"uid=1101(work) gid=1101(work)", "\n/home/work\n", "/cache 1101:1101 755", "/home/work 1101:1101 755",
		"/home/work/run_train.sh 0:0 755", "/home/work/user-job-dir 1101:1101", "cache-writable",
		"/etc/passwd:work:x:1101:1101::/home/work:/bin/bash", "/etc/group:work:x:1101:", "moxing copy_parallel numpy", "pip "} {
		if !strings.Contains(out, w) {
			t.Errorf("container output lacks %q:\n%s", w, out)
		}
	}

	if out, rc := run(ref, "bash", "/home/work/run_train.sh", "python3", "-c", "import sys; print('hello'); sys.exit(5)"); rc != 5 || !strings.Contains(out, "hello") || !strings.Contains(out, "user: work") {
		t.Errorf("exit code passthrough: exit %d, want 5\n%s", rc, out)
	}
	if out, rc := run("-e", "DLS_APP_URL=s3://bkt/code/", "-e", "AWS_ENDPOINT_URL=http://127.0.0.1:9", ref, "bash", "/home/work/run_train.sh", "true"); rc != 127 || !strings.Contains(out, "download of s3://bkt/code/ failed") {
		t.Errorf("failed download: exit %d, want 127\n%s", rc, out)
	}

	// A real download from fakeobs, over the host's loopback.
	env := startFakeobs(t)
	code := t.TempDir()
	writeTree(t, code, codeTree)
	runPython(t, env, "tests/e2e_fakeobs.py", "seed", "bkt", code)
	args := []string{"--network", "host", "-e", "DLS_APP_URL=obs://bkt/x/new", "-e", "DLS_TASK_INDEX=0", "-e", "DLS_LOG_URL=s3://bkt/logs/"}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	args = append(args, ref, "bash", "/home/work/run_train.sh", "python3", "/home/work/user-job-dir/new/main.py", "4")
	out, rc = run(args...)
	if rc != 4 {
		t.Fatalf("run_train.sh with a code dir from fakeobs: exit %d, want 4\n%s", rc, out)
	}
	for _, w := range []string{"user: work", "downloaded 7 files", "main running in /home/work/user-job-dir/new W = 42", "read: non-ascii ✓", "uploaded log to s3://bkt/logs/dls-task-0.log"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if ps, _ := docker(t, "ps", "-aq", "--filter", "label=malocal.test=1", "--filter", "ancestor="+ref); strings.TrimSpace(ps) != "" {
		t.Errorf("containers left behind: %s", ps)
	}
}

// removeTestImages removes the images of earlier runs of these tests (their
// repositories are malocal-test/…, local or on a loopback registry).
func removeTestImages(t *testing.T) {
	t.Helper()
	out, _ := docker(t, "images", "--format", "{{.Repository}}:{{.Tag}}")
	for _, ref := range strings.Fields(out) {
		if strings.HasPrefix(ref, "malocal-test/") || strings.HasPrefix(ref, "127.0.0.1:") && strings.Contains(ref, "/malocal-test/") {
			docker(t, "rmi", "-f", ref)
		}
	}
}

// TestBuildFromDockerEngine builds a GPU-marked base from an image of the
// Docker engine (docker:REF, read with docker save): a small root
// filesystem imported into the engine.
func TestBuildFromDockerEngine(t *testing.T) {
	needDocker(t)
	var entries []entry
	for _, e := range baseEntries() {
		if e.typ != tar.TypeChar { // no device node: docker import needs none
			entries = append(entries, e)
		}
	}
	local := "malocal-test/tiny-cuda:" + time.Now().Format("150405.000000")[7:]
	if out, rc := docker(t, "import", "--change", "ENV CUDA_VERSION=12.4", writeRootfs(t, entries, false), local); rc != 0 {
		t.Fatalf("docker import: %s", out)
	}
	t.Cleanup(func() { docker(t, "rmi", "-f", local) })
	src, cleanup, err := Open(t.Context(), "docker:"+local, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	want := diffIDs(t, src)

	host := startRegistry(t)
	cat := OpenCatalog(t.TempDir())
	res, err := Build(t.Context(), BuildOptions{Name: "malocal-test/custom-gpu-base", Tag: "1.0", From: "docker:" + local, GPU: true, Registry: host, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 1 || len(res.DiffIDs) != 2 || res.DiffIDs[0] != want[0].String() {
		t.Errorf("diff_ids %v, want the engine's %v plus the toolkit layer", res.DiffIDs, want)
	}
	if res.Record == nil || !res.Record.GPU {
		t.Errorf("record %+v", res.Record)
	}
	ref, _ := name.ParseReference(res.Ref, name.Insecure)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Labels[LabelGPU] != "true" || !strings.Contains(strings.Join(cf.Config.Env, " "), "CUDA_VERSION=12.4") || cf.Config.User != "work" {
		t.Errorf("config: labels %v env %v user %q", cf.Config.Labels, cf.Config.Env, cf.Config.User)
	}
	if _, _, err := Open(t.Context(), "docker:malocal-test/no-such-image:0", nil, nil); err == nil || !strings.Contains(err.Error(), "docker save malocal-test/no-such-image:0") {
		t.Errorf("a missing engine image: %v", err)
	}
}
