package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// expectMistake checks that a command a user got wrong exits with code and
// says, in plain words, what to do: every want in its stderr, and none of
// the raw texts of the layers below (SDK request ids, registry codes).
func expectMistake(t *testing.T, what string, r Result, code int, want ...string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.Code, code, r.Stdout, r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("%s: stderr lacks %q:\n%s", what, w, r.Stderr)
		}
	}
	for _, raw := range []string{"RequestID", "HostID", "operation error", "MANIFEST_UNKNOWN", "NAME_UNKNOWN"} {
		if strings.Contains(r.Stderr, raw) {
			t.Errorf("%s: stderr shows the raw %q:\n%s", what, raw, r.Stderr)
		}
	}
}

// TestMistakes makes, on one emulator, the mistakes a new user makes, and
// checks each message's words and exit code.
func TestMistakes(t *testing.T) {
	e := Start(t)
	code := t.TempDir()

	expectMistake(t, "job submit --nodes 0",
		e.Run("job", "submit", "--nodes", "0", "--name", "x", "--image", "a:1", "--app-url", "s3://bkt/x/", "--", "true"),
		1, "--nodes: must be between 1 and 64, got 0")
	expectMistake(t, "run --nodes 0",
		e.Run("run", "--nodes", "0", "--code", code, "--image", "a:1", "--", "true"),
		1, "--nodes: must be between 1 and 64, got 0")
	expectMistake(t, "job submit --retries 11",
		e.Run("job", "submit", "--retries", "11", "--name", "x", "--image", "a:1", "--app-url", "s3://bkt/x/", "--", "true"),
		1, "--retries: must be between 0 and 10, got 11")
	expectMistake(t, "obs --parallel 0", e.Run("obs", "ls", "--parallel", "0"), 1, "--parallel: must be between 1 and 256, got 0")

	expectMistake(t, "obs ls of a missing bucket", e.Run("obs", "ls", "s3://nosuch/"),
		1, "bucket nosuch does not exist: make it with `malocal obs mb s3://nosuch`")
	expectMistake(t, "obs cp into a missing bucket", e.Run("obs", "cp", filepath.Join("..", "README.md"), "s3://nosuch/x"),
		1, "bucket nosuch does not exist", "malocal obs mb s3://nosuch")
	if r := e.Run("obs", "mb", "s3://full"); r.Code != 0 {
		t.Fatalf("obs mb: %s", r.Stderr)
	}
	if r := e.Run("obs", "cp", filepath.Join("..", "README.md"), "s3://full/README.md"); r.Code != 0 {
		t.Fatalf("obs cp: %s", r.Stderr)
	}
	expectMistake(t, "obs rb of a bucket with objects", e.Run("obs", "rb", "s3://full"),
		1, "bucket full is not empty", "malocal obs rb --force s3://full")
	expectMistake(t, "obs cat of a missing object", e.Run("obs", "cat", "s3://full/nope.txt"),
		1, "s3://full/nope.txt: no such object", "malocal obs ls s3://full/")
	expectMistake(t, "obs --api of another emulator", e.Run("--api", "127.0.0.1:1", "obs", "ls"),
		2, "--api 127.0.0.1:1: `malocal obs` works on the emulator of --data-dir", "pass the --data-dir")

	expectMistake(t, "--api with another emulator's token",
		RunCLI(t, []string{"MALOCAL_DATA_DIR=" + e.DataDir, "MALOCAL_TOKEN=not-the-token"}, "--api", e.API, "job", "list"),
		1, "unauthorized", "set MALOCAL_TOKEN to the contents of that emulator's DATA_DIR/api-token")

	expectMistake(t, "image audit of a missing image", e.Run("image", "audit", "nope/missing:1"),
		2, "image nope/missing:1 is not in the registry: `malocal image ls`")
	expectMistake(t, "image rm of a missing tag", e.Run("image", "rm", "nope/missing:1"),
		1, "image nope/missing:1 is not in the registry: `malocal image ls`")

	// image rm REPO:TAG leaves no <none>; gc says what its grace kept and
	// how to collect it now, which then works.
	_, err := os.Stat(BusyboxPath)
	Require(t, err == nil, "the static busybox is missing (apt-get install busybox-static)")
	img := e.BusyboxImage(t, "test/gone", "1")
	if r := e.Run("image", "rm", img); r.Code != 0 || !strings.Contains(r.Stdout, "deleted test/gone:1\ndeleted test/gone@sha256:") {
		t.Errorf("image rm %s: exit %d\n%s%s", img, r.Code, r.Stdout, r.Stderr)
	}
	if r := e.Run("image", "ls", "--all"); strings.Contains(r.Stdout, "<none>") || strings.Contains(r.Stdout, "test/gone") {
		t.Errorf("image ls --all after image rm:\n%s", r.Stdout)
	}
	r := e.Run("registry", "gc")
	if r.Code != 0 || !regexp.MustCompile(`kept [1-9]\d* unreferenced blobs \(.+\) written within the last 1h0m0s, for pushes in flight: `+
		"`malocal registry gc --grace 0s` collects them now").MatchString(r.Stdout) {
		t.Errorf("registry gc: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = e.Run("registry", "gc", "--grace", "0s")
	if r.Code != 0 || !regexp.MustCompile(`deleted [1-9]\d* blobs`).MatchString(r.Stdout) || strings.Contains(r.Stdout, "kept") {
		t.Errorf("registry gc --grace 0s: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestRunIgnoresExportedAPI: after eval "$(malocal env)", MALOCAL_API is
// exported; `malocal run` still starts its throwaway emulator (here it
// finds no image, quickly).
func TestRunIgnoresExportedAPI(t *testing.T) {
	r := newRunEnv(t, nil)
	res := RunCLI(t, []string{"TMPDIR=" + r.tmp, "MALOCAL_DATA_DIR=", "MALOCAL_API=127.0.0.1:1"},
		"run", "--code", r.code, "--image", "malocal-test/nowhere:1", "--", "true")
	expectMistake(t, "run with MALOCAL_API exported", res, 1,
		"started a throwaway emulator", "neither in the emulator's registry nor in the local Docker engine")
	r.assertClean()
}

// TestRunRefusesAnotherBuildOfTheBase: the emulator's base is another
// build than the one the image was made on; run says so in one line with
// both digests and the fix, before it pushes or submits anything.
func TestRunRefusesAnotherBuildOfTheBase(t *testing.T) {
	RequireDocker(t)
	e := Start(t)
	imgs := LoadBusyboxImages(t)
	other, err := mutate.AppendLayers(imgs.BaseImg, fileLayer("etc/malocal-build", "another build\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, imgs.Base, other)
	if r := e.Run("base", "add", imgs.Base); r.Code != 0 {
		t.Fatalf("base add: %s", r.Stderr)
	}
	od, _ := other.Digest()
	code := t.TempDir()
	res := RunCLI(t, []string{"MALOCAL_DATA_DIR=" + e.DataDir}, "run", "--api", e.API, "--code", code, "--image", imgs.Image, "--", "true")
	expectMistake(t, "run on another build of the base", res, 1,
		"image "+imgs.Image+" is built on another build of base "+imgs.Base+" than the emulator's (emulator: "+od.String()+"; local Docker engine: sha256:",
		"`malocal base add "+imgs.Base+"`", "or rebuild "+imgs.Image)
	if js, _ := e.Client().Jobs(t.Context(), "", ""); len(js) != 0 {
		t.Errorf("a job was submitted: %+v", js)
	}
	if strings.Contains(res.Stderr, "pushing") {
		t.Errorf("run pushed before it checked the base:\n%s", res.Stderr)
	}
}
