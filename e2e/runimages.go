package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/baseimage"
)

// EngineImages are a custom image and the official base it is built on,
// loaded into the local Docker engine (not into any emulator), as a user
// of `malocal run` has them after `docker build`.
type EngineImages struct {
	Base  string // name:tag of the base, e.g. malocal-test/busybox-base:t123
	Image string // name:tag of the custom image built on it
	// BaseImg is the base, for tests that build more images on it.
	BaseImg v1.Image
}

// LoadBusyboxImages loads into the Docker engine a busybox base that passes
// baseimage.CheckBase (the toolkit layer of baseimage.Assemble on the
// static busybox, with a stand-in /usr/bin/python3 that is a shell script,
// so run_train.sh itself cannot run: commands use /bin/sh) and an image
// built on it that inherits its org.malocal.base.* labels. The names are
// unique to the test; both are removed when it ends.
func LoadBusyboxImages(t testing.TB) EngineImages {
	t.Helper()
	_, err := os.Stat(BusyboxPath)
	Require(t, err == nil, "the static busybox is missing (apt-get install busybox-static)")
	bb, err := BusyboxV1Image()
	if err != nil {
		t.Fatal(err)
	}
	bb, err = mutate.AppendLayers(bb, fileLayer("usr/bin/python3", "#!/bin/sh\necho 'python3 stand-in of the busybox test base' >&2\nexit 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("t%d", time.Now().UnixNano())
	base, err := baseimage.Assemble(bb, baseimage.AssembleOptions{Name: "malocal-test/busybox-base", Tag: tag})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, fileLayer("home/work/app/README", "built on the busybox base\n"))
	if err != nil {
		t.Fatal(err)
	}
	imgs := EngineImages{Base: "malocal-test/busybox-base:" + tag, Image: "malocal-test/busybox-train:" + tag, BaseImg: base}
	LoadImage(t, imgs.Base, base)
	LoadImage(t, imgs.Image, img)
	return imgs
}

// LoadPythonBase loads into the Docker engine a real Debian base (python3,
// pip, numpy: the baseimage tests' CI base), built by `malocal base build
// --output-tar` from the cached mmdebstrap root filesystem, so run_train.sh,
// its downloader and moxing work. It returns the base's name:tag, unique
// to the test, and removes it when the test ends. The base, run as an
// image itself, carries its own org.malocal.base.* labels.
func LoadPythonBase(t testing.TB) string {
	t.Helper()
	rootfs := cachedRootfs(t, []string{"python3", "python3-pip", "python3-numpy"})
	tag := fmt.Sprintf("t%d", time.Now().UnixNano())
	ref := "malocal-test/python-base:" + tag
	tarPath := filepath.Join(t.TempDir(), "base.tar")
	// The binary, not this process: a race-instrumented test would take
	// minutes to hash and compress the 300 MB layer.
	res := RunCLI(t, nil, "base", "build", "--name", "malocal-test/python-base", "--tag", tag,
		"--from", "rootfs:"+rootfs, "--output-tar", tarPath)
	if res.Code != 0 {
		t.Fatalf("malocal base build: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if out, err := exec.Command("docker", "load", "-i", tarPath).CombinedOutput(); err != nil {
		t.Fatalf("docker load %s: %v: %s", tarPath, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "rmi", ref).CombinedOutput(); err != nil {
			t.Logf("docker rmi %s: %v: %s", ref, err, out)
		}
	})
	return ref
}

// cachedRootfs returns the bookworm root filesystem that baseimage's tests
// cache under os.TempDir()/malocal-test-cache (the same file name: the
// package list's hash). Under CI it is made with mmdebstrap when missing;
// elsewhere the test is skipped, as making it needs the Debian mirror.
func cachedRootfs(t testing.TB, include []string) string {
	t.Helper()
	p := RootfsCachePath(include)
	dir := filepath.Dir(p)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	Require(t, InCI(), "no cached Debian root filesystem at "+p+" (run the baseimage tests once, or set CI=true to build it with mmdebstrap)")
	RequireTool(t, "mmdebstrap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := baseimage.Mmdebstrap(ctx, "bookworm", include, p, io.Discard); err != nil {
		t.Fatal(err)
	}
	return p
}

// LoadImage loads img into the Docker engine as ref (docker load) and
// removes that tag when the test ends.
func LoadImage(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(tag, img, pw)) }()
	cmd := exec.Command("docker", "load")
	cmd.Stdin = pr
	out, err := cmd.CombinedOutput()
	pr.CloseWithError(io.EOF)
	if err != nil {
		t.Fatalf("docker load %s: %v: %s", ref, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "rmi", ref).CombinedOutput(); err != nil {
			t.Logf("docker rmi %s: %v: %s", ref, err, out)
		}
	})
}
