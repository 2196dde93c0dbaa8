package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
)

// TestRegistryCredentials drives SWR's login flow against `malocal up`:
// the credentials in `malocal env`, `malocal registry login` logging the
// docker CLI in, docker push refused without it, anonymous DELETE refused
// with the tag unchanged, a manifest with lying sizes refused, and a
// malformed image reference answered 400.
func TestRegistryCredentials(t *testing.T) {
	RequireDocker(t)
	e := Start(t)
	out := e.Run("env")
	for _, want := range []string{"export MALOCAL_REGISTRY_USERNAME=" + e.Creds.RegistryUsername, "export MALOCAL_REGISTRY_PASSWORD=" + e.Creds.RegistryPassword} {
		if e.Creds.RegistryPassword == "" || !strings.Contains(out.Stdout, want) {
			t.Fatalf("malocal env lacks %q:\n%s", want, out.Stdout)
		}
	}
	if st, err := os.Stat(filepath.Join(e.DataDir, "credentials.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", st, err)
	}
	host := "localhost:" + e.Registry[strings.LastIndexByte(e.Registry, ':')+1:]
	image := e.BusyboxImage(t, "team/hello", "1") // pushed with the credentials

	// docker push with no login: refused, saying how to log in.
	src := host + "/" + image
	dst := host + "/team/pushed:1"
	cfg := t.TempDir()
	dk := func(args ...string) (string, error) {
		b, err := exec.Command("docker", append([]string{"--config", cfg}, args...)...).CombinedOutput()
		return string(b), err
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", src, dst).Run() })
	if out, err := dk("pull", src); err == nil || !strings.Contains(out, "malocal registry login") {
		t.Fatalf("anonymous pull of a user image: %v\n%s", err, out)
	}
	// `malocal registry login`, in the config dir given by DOCKER_CONFIG.
	r := RunCLI(t, []string{"MALOCAL_DATA_DIR=" + e.DataDir, "DOCKER_CONFIG=" + cfg}, "registry", "login")
	if r.Code != 0 || !strings.Contains(r.Stdout+r.Stderr, "Login Succeeded") {
		t.Fatalf("malocal registry login: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if out, err := dk("pull", src); err != nil {
		t.Fatalf("pull after login: %v\n%s", err, out)
	}
	if out, err := dk("tag", src, dst); err != nil {
		t.Fatal(out)
	}
	if out, err := dk("push", dst); err != nil {
		t.Fatalf("push after login: %v\n%s", err, out)
	}
	cfg = t.TempDir() // logged out
	if out, err := dk("push", dst); err == nil || !strings.Contains(out, "malocal registry login") {
		t.Fatalf("push without login: %v\n%s", err, out)
	}

	// DELETE of the base's tag without credentials: 401, tag unchanged.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+e.Registry+"/v2/test/busybox-base/manifests/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
		t.Fatalf("anonymous DELETE: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if imgs, err := e.Client().Images(context.Background()); err != nil || !hasImage(imgs, "test/busybox-base", "1") {
		t.Fatalf("the base's tag after a refused DELETE: %v %v", imgs, err)
	}

	// A manifest whose layer size lies: MANIFEST_INVALID.
	ref, _ := name.ParseReference(e.Registry+"/"+image, name.Insecure)
	d, err := remote.Get(ref, remote.WithAuth(e.RegistryAuth()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(d.Manifest, &m)
	layers := m["layers"].([]any)
	layers[len(layers)-1].(map[string]any)["size"] = 12
	body, _ := json.Marshal(m)
	req, _ = http.NewRequest(http.MethodPut, "http://"+e.Registry+"/v2/team/hello/manifests/liar", bytes.NewReader(body))
	req.Header.Set("Content-Type", string(d.MediaType))
	req.SetBasicAuth(e.Creds.RegistryUsername, e.Creds.RegistryPassword)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var eb struct {
		Errors []struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 400 || len(eb.Errors) == 0 || eb.Errors[0].Code != "MANIFEST_INVALID" || !strings.Contains(eb.Errors[0].Message, "says size 12") {
		t.Fatalf("lying manifest: %d %+v", resp.StatusCode, eb)
	}

	// A malformed image reference: 400 naming it, no job.
	_, err = e.Client().SubmitJob(context.Background(), api.JobSpec{Name: "bad", Image: "../../x", Command: []string{"true"}, Nodes: 1, AppURL: "s3://no-such-bucket/new/"})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "../../x") {
		t.Fatalf("job with image ../../x: %v", err)
	}
}

func hasImage(imgs []api.Image, repo, tag string) bool {
	for _, i := range imgs {
		if i.Repository == repo && i.Tag == tag {
			return true
		}
	}
	return false
}

// TestAuditVerdicts checks the one verdict per image: `malocal image audit`
// goes through the running emulator and its cache; hostile images (device
// node, FIFO, cross-layer hardlink) fail; an image approved before its
// base is superseded stays approved and says so, while a never-audited one
// on the old base fails MA-BASE-003.
func TestAuditVerdicts(t *testing.T) {
	RequireDocker(t)
	e := Start(t)
	good := e.BusyboxImage(t, "team/good", "1")

	audit := func(ref string, want int) string {
		t.Helper()
		r := e.Run("image", "audit", ref)
		if r.Code != want {
			t.Fatalf("malocal image audit %s: exit %d, want %d\n%s%s", ref, r.Code, want, r.Stdout, r.Stderr)
		}
		return r.Stdout
	}
	out := audit(good, 0)
	if strings.Contains(out, "cached:") {
		t.Fatalf("first audit served from a cache:\n%s", out)
	}
	logs := auditLogCount(t, e)
	if out := audit(good, 0); !strings.Contains(out, "cached:") {
		t.Fatalf("second audit not from the emulator's cache:\n%s", out)
	}
	if n := auditLogCount(t, e); n != logs {
		t.Fatalf("audit log entries %d -> %d: the image was audited twice", logs, n)
	}
	// The console sees the same verdict the CLI got.
	a, err := e.Client().ImageAudit(context.Background(), "team/good", "1")
	if err != nil || a.Verdict != "pass" {
		t.Fatalf("console verdict: %+v %v", a, err)
	}

	// Hostile: a device node, a FIFO and a hardlink to a lower layer's
	// /etc/passwd, in one layer on the base.
	base, err := BusyboxV1Image()
	if err != nil {
		t.Fatal(err)
	}
	hostile, err := mutate.AppendLayers(base, specialLayer(t))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "team/hostile:1", hostile)
	out = audit("team/hostile:1", 1)
	for _, want := range []string{"MA-DEV-001", "/opt/mem", "char device 1:1", "/opt/pipe", "MA-LAYER-001", "/tmp/pw", "not an earlier file of the same layer"} {
		if !strings.Contains(out, want) {
			t.Errorf("hostile image report lacks %q:\n%s", want, out)
		}
	}

	// Supersede the base: a new build of test/busybox-base:1.
	if _, err := baseimage.OpenCatalog(e.DataDir).Add(baseimage.Record{Name: "test/busybox-base", Tag: "1",
		Digest: "sha256:" + strings.Repeat("1", 64), DiffIDs: []string{"sha256:" + strings.Repeat("2", 64)}, Source: "test", Created: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	out = audit(good, 0)
	if !strings.Contains(out, "its base has since been superseded") || !strings.Contains(out, "verdict: PASS") {
		t.Fatalf("approved image after the supersede:\n%s", out)
	}
	if a, err := e.Client().ImageAudit(context.Background(), "team/good", "1"); err != nil || a.Verdict != "pass" || !strings.Contains(a.Note, "its base has since been superseded") {
		t.Fatalf("console after the supersede: %+v %v", a, err)
	}
	fresh, err := mutate.AppendLayers(base, fileLayer("home/work/app/NEW", "never audited\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "team/fresh:1", fresh)
	if out := audit("team/fresh:1", 1); !strings.Contains(out, "MA-BASE-003") {
		t.Fatalf("never-audited image on the superseded base:\n%s", out)
	}
}

// auditLogCount counts the audits the emulator's audit log holds (not
// the verdicts it served from its cache).
func auditLogCount(t *testing.T, e *Emulator) int {
	t.Helper()
	n := 0
	files, _ := filepath.Glob(filepath.Join(e.DataDir, "audit", "logs", "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "\nlog:\n") - strings.Count(string(b), "served from the cache")
	}
	return n
}

// specialLayer holds a char device 1:1 (mode 0666), a FIFO and a hardlink
// to /etc/passwd, which lives in a lower layer.
func specialLayer(t *testing.T) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "opt/", Mode: 0o755},
		{Typeflag: tar.TypeChar, Name: "opt/mem", Mode: 0o666, Devmajor: 1, Devminor: 1},
		{Typeflag: tar.TypeFifo, Name: "opt/pipe", Mode: 0o644},
		{Typeflag: tar.TypeLink, Name: "tmp/pw", Linkname: "etc/passwd"},
	} {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(fmt.Errorf("special layer: %w", err))
	}
	return l
}
