package registry

import (
	"bufio"
	"bytes"
	"crypto/rand"
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

// childEnv makes the test binary act as a registry server on the root it
// names, printing its address; the crash test kills it with SIGKILL.
const childEnv = "MALOCAL_REGISTRY_TEST_CHILD"

func TestMain(m *testing.M) {
	if root := os.Getenv(childEnv); root != "" {
		reg, err := New(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		addr := os.Getenv(childEnv + "_ADDR")
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(ln.Addr().String())
		fmt.Fprintln(os.Stderr, http.Serve(ln, reg.Handler()))
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// startChild starts a server process on root; addr "" picks a port.
func startChild(t *testing.T, root, addr string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+root, childEnv+"_ADDR="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return cmd, strings.TrimSpace(line)
}

// TestKillDuringPush kills the server (SIGKILL) in the middle of a blob
// upload and checks that nothing partial is visible and that the same push
// then succeeds against a restarted server.
func TestKillDuringPush(t *testing.T) {
	root := filepath.Join(t.TempDir(), "registry")
	cmd, addr := startChild(t, root, "")

	layer := make([]byte, 32<<20)
	if _, err := rand.Read(layer); err != nil {
		t.Fatal(err)
	}
	d := digestOf("sha256", layer)
	resp, err := http.Post("http://"+addr+"/v2/crash/img/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")

	// Stream the layer in a PATCH and kill the server half way through.
	pr, pw := io.Pipe()
	go func() {
		pw.Write(layer[:16<<20])
		// Let the server write what it got, then kill it mid-request.
		time.Sleep(300 * time.Millisecond)
		cmd.Process.Kill()
		pw.Write(layer[16<<20:])
		pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPatch, "http://"+addr+loc, pr)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("PATCH survived the kill: %s", resp.Status)
	}
	cmd.Wait()

	if exists(filepath.Join(root, "blobs", "sha256", d.hex[:2], d.hex)) {
		t.Fatal("partial blob visible after kill")
	}
	if n := countFiles(t, filepath.Join(root, "repos")); n != 0 {
		t.Fatalf("%d repository files after kill", n)
	}

	// Restart and push the full image: it works.
	_, addr = startChild(t, root, "")
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	r := ref(t, addr+"/crash/img:1")
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateLayers(got); err != nil {
		t.Fatal(err)
	}
	// And the blob upload that was cut off can be done again from scratch.
	resp, err = http.Post("http://"+addr+"/v2/crash/img/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic push after crash: %s", resp.Status)
	}
}

// checkNoPartial fails if any stored blob does not hash to its name or any
// manifest is visible.
func checkNoPartial(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(root, "blobs"), func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		alg := filepath.Base(filepath.Dir(filepath.Dir(p)))
		if got := digestOf(alg, b); got.hex != e.Name() {
			t.Fatalf("blob %s holds content of %s", e.Name(), got)
		}
		return nil
	})
	filepath.WalkDir(filepath.Join(root, "repos"), func(p string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() && e.Name() == "_manifests" {
			t.Fatalf("manifest visible after kill: %s", p)
		}
		return nil
	})
}

// TestDockerKillDuringPush kills the server with SIGKILL while the real
// docker CLI pushes a 32 MiB layer, then pushes again after a restart.
func TestDockerKillDuringPush(t *testing.T) {
	docker := needDocker(t)
	root := filepath.Join(t.TempDir(), "registry")
	cmd, addr := startChild(t, root, "")
	port := addr[strings.LastIndex(addr, ":")+1:]
	image := "localhost:" + port + "/malocal-test/crash:1"
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", image).Run() })

	// hello plus 32 MiB of noise that gzip cannot shrink.
	rootfs := helloRootfs(t)
	noise := make([]byte, 32<<20)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "rootfs.tar")
	writeTar(t, big, map[string][]byte{"noise": noise}, rootfs)
	run(t, docker, "import", "--change", `CMD ["/hello"]`, "--change", "LABEL malocal.test=1", big, image)

	push := exec.CommandContext(t.Context(), docker, "push", image)
	var out bytes.Buffer
	push.Stdout, push.Stderr = &out, &out
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once the layer is streaming into an upload session.
	deadline := time.Now().Add(2 * time.Minute)
	for dirBytes(t, filepath.Join(root, "uploads")) < 4<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("upload never started:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	checkNoPartial(t, root)

	// Restart on the same port. docker retries the failed layer upload on
	// its own (after 5 s); whether that retry or our second push does it,
	// the push must now go through.
	startChild(t, root, addr)
	if err := push.Wait(); err != nil {
		t.Logf("first push failed after the kill (as it may): %v\n%s", err, out.String())
	}
	run(t, docker, "push", image)
	run(t, docker, "rmi", image)
	run(t, docker, "pull", image)
	if out := run(t, docker, "run", "--rm", "--label", "malocal.test=1", image); !strings.Contains(out, "hello from malocal") {
		t.Fatalf("docker run output %q", out)
	}
}
