package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// run runs a command and returns its combined output, failing the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// needDocker returns the docker CLI if a daemon answers.
func needDocker(t *testing.T) string {
	t.Helper()
	docker := needTool(t, "docker", "")
	if out, err := exec.CommandContext(t.Context(), docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missingTool(t, fmt.Sprintf("docker daemon unreachable: %v: %s", err, bytes.TrimSpace(out)))
	}
	return docker
}

// helloRootfs builds a static hello binary and returns a rootfs tarball
// holding it as /hello: the smallest image docker can run without a base.
func helloRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from malocal registry\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "hello", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build hello: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "rootfs.tar")
	writeTar(t, p, map[string][]byte{"hello": bin}, "")
	return p
}

// writeTar writes a tarball of files (mode 0755) to p, after the entries
// of the tarball base when base is not empty.
func writeTar(t *testing.T, p string, files map[string][]byte, base string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if base != "" {
		f, err := os.Open(base)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(tw, tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveOn serves h on addr (possibly the port a closed server had).
func serveOn(t *testing.T, addr string, h http.Handler) (*http.Server, string) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String()
}

// TestDockerPushPullRun pushes an image with the real docker CLI, restarts
// the registry, then pulls and runs it.
func TestDockerPushPullRun(t *testing.T) {
	docker := needDocker(t)
	root := filepath.Join(t.TempDir(), "registry")
	reg := newTestRegistry(t, root)
	srv, addr := serveOn(t, "127.0.0.1:0", reg.Handler())
	port := addr[strings.LastIndex(addr, ":")+1:]
	image := "localhost:" + port + "/malocal-test/hello:1"
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	run(t, docker, "import", "--change", `CMD ["/hello"]`, "--change", "LABEL malocal.test=1", helloRootfs(t), image)
	run(t, docker, "push", image)
	run(t, docker, "rmi", image)

	// Restart: a new Registry on the same root, on the same port.
	reg2 := newTestRegistry(t, root)
	img, err := reg2.Image(t.Context(), "malocal-test/hello", "1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "/hello" || cfg.Config.Labels["malocal.test"] != "1" {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
	if err := validateLayers(img); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	serveOn(t, addr, reg2.Handler())

	run(t, docker, "pull", image)
	out := run(t, docker, "run", "--rm", "--label", "malocal.test=1", image)
	if !strings.Contains(out, "hello from malocal registry") {
		t.Fatalf("docker run output %q", out)
	}
}

// TestSkopeoCopy copies an image out of the registry with skopeo (to a
// dir: layout) and back in under another name, checking the manifest
// digest survives both ways.
func TestSkopeoCopy(t *testing.T) {
	skopeo := needTool(t, "skopeo", "")
	reg := newTestRegistry(t, filepath.Join(t.TempDir(), "registry"))
	addr := serveTCP(t, reg.Handler())
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(200_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := mustDigest(t, img).String()
	if err := remote.Write(ref(t, addr+"/skopeo/out:1"), img); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "copy")
	base := []string{"--policy", policy, "copy", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false"}
	run(t, skopeo, append(base, "docker://"+addr+"/skopeo/out:1", "dir:"+dir)...)
	m, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || digestOf("sha256", m).String() != want {
		t.Fatalf("copied out manifest differs: %v", err)
	}
	run(t, skopeo, append(base, "dir:"+dir, "docker://"+addr+"/skopeo/in:1")...)
	desc, err := reg.Resolve(t.Context(), "skopeo/in", "1")
	if err != nil || desc.Digest != want {
		t.Fatalf("copied in = %+v, %v; want %s", desc, err, want)
	}
	in, err := reg.Image(t.Context(), "skopeo/in", "1")
	if err != nil {
		t.Fatal(err)
	}
	if err := validateLayers(in); err != nil {
		t.Fatal(err)
	}
}

// TestDockerPushOverQuota checks that docker push over the quota fails
// with the registry's message, leaves no blob of the layer behind, and
// that GC leaves the data dir empty of it.
func TestDockerPushOverQuota(t *testing.T) {
	docker := needDocker(t)
	root := filepath.Join(t.TempDir(), "registry")
	reg := newTestRegistry(t, root, WithQuota(8<<20))
	_, addr := serveOn(t, "127.0.0.1:0", reg.Handler())
	image := "localhost:" + addr[strings.LastIndex(addr, ":")+1:] + "/malocal-test/quota:1"
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	noise := randBytes(t, 16<<20)
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	writeTar(t, tarball, map[string][]byte{"noise": noise}, "")
	run(t, docker, "import", "--change", "LABEL malocal.test=1", tarball, image)
	out, err := exec.CommandContext(t.Context(), docker, "push", image).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "quota") {
		t.Fatalf("docker push over quota: %v\n%s", err, out)
	}
	t.Logf("docker says: %s", strings.TrimSpace(string(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:])))
	checkNoPartial(t, root)
	if reg.Used() > 8<<20 {
		t.Fatalf("used %d over the quota", reg.Used())
	}
	if _, err := newTestRegistry(t, root, WithGCGrace(0)).GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := dirBytes(t, filepath.Join(root, "uploads")); n != 0 {
		t.Fatalf("%d upload bytes left after GC", n)
	}
}
