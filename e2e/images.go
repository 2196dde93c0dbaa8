package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/baseimage"
)

// BusyboxPath is the static busybox (Debian's busybox-static) that test
// images are made of: a shell and the usual tools in a 2 MB layer, built
// with no registry at all.
const BusyboxPath = "/bin/busybox"

// BusyboxImage builds a small custom image, as users build theirs on an
// official base: the base is the host's static busybox with user work
// (1101), published as test/busybox-base:1 and recorded in the data dir's
// base catalog; the image adds one layer on it. Both are pushed to the
// emulator's registry; it returns repo:tag, which passes the audit.
func (e *Emulator) BusyboxImage(t testing.TB, repo, tag string) string {
	t.Helper()
	_, err := os.Stat(BusyboxPath)
	Require(t, err == nil, "the static busybox is missing (apt-get install busybox-static)")
	base, err := BusyboxV1Image()
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "test/busybox-base:1", base)
	d, _ := base.Digest()
	cf, _ := base.ConfigFile()
	rec := baseimage.Record{Name: "test/busybox-base", Tag: "1", Digest: d.String(), Source: "test", Created: time.Now().UTC()}
	for _, h := range cf.RootFS.DiffIDs {
		rec.DiffIDs = append(rec.DiffIDs, h.String())
	}
	if _, err := baseimage.OpenCatalog(e.DataDir).Add(rec); err != nil {
		t.Fatalf("recording the test base: %v", err)
	}
	img, err := mutate.AppendLayers(base, fileLayer("home/work/app/README", "built on the busybox base\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, repo+":"+tag, img)
	return repo + ":" + tag
}

// push pushes img to the emulator's registry as repo:tag.
func (e *Emulator) push(t testing.TB, repoTag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(e.Registry+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(e.RegistryAuth())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// RegistryAuth is the emulator's registry credentials, for pushes.
func (e *Emulator) RegistryAuth() authn.Authenticator {
	return &authn.Basic{Username: e.Creds.RegistryUsername, Password: e.Creds.RegistryPassword}
}

// DockerLogin logs the docker CLI in to the emulator's registry (host, as
// docker names it) with `docker login --password-stdin`, in a config dir
// of the test's own (the user's docker config is left alone); pass the
// dir to docker as --config.
func DockerLogin(t testing.TB, e *Emulator, host string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("docker", "--config", dir, "login", "--username", e.Creds.RegistryUsername, "--password-stdin", host)
	cmd.Stdin = strings.NewReader(e.Creds.RegistryPassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker login %s: %v\n%s", host, err, out)
	}
	return dir
}

// fileLayer is a layer holding one root-owned file, mode 0644.
func fileLayer(path, content string) v1.Layer { return modeLayer(path, content, 0o644) }

// modeLayer is a layer holding one root-owned file of the given mode.
func modeLayer(path, content string, mode int64) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(content)), ModTime: time.Unix(0, 0)})
	tw.Write([]byte(content))
	tw.Close()
	data := buf.Bytes()
	l, _ := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	return l
}

// BusyboxV1Image returns the busybox test image.
func BusyboxV1Image() (v1.Image, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, err
	}
	list, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(0, 0)
	dir := func(n string, uid int) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: 0o755, Uid: uid, Gid: uid, ModTime: mt})
	}
	file := func(n string, b []byte, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: mode, Size: int64(len(b)), ModTime: mt})
		tw.Write(b)
	}
	for _, d := range []string{"bin/", "etc/", "home/", "cache/"} {
		dir(d, 0)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mt})
	dir("home/work/", 1101)
	file("bin/busybox", bb, 0o755)
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" {
			continue
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mt})
	}
	file("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nwork:x:1101:1101:work:/home/work:/bin/sh\n"), 0o644)
	file("etc/group", []byte("root:x:0:\nwork:x:1101:\n"), 0o644)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.User = "work"
	cf.Config.WorkingDir = "/home/work"
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Cmd = []string{"/bin/sh"}
	return mutate.ConfigFile(img, cf)
}
