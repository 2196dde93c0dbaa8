package registry

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var testCreds = Credentials{Username: "malocal", Password: "s3cret-pass"}

// TestAuthTokenFlow checks the distribution token flow with
// go-containerregistry's client: anonymous writes are refused with the
// Bearer challenge, anonymous reads work in eiwizard/ only, and the
// credentials (through the token endpoint) allow everything.
func TestAuthTokenFlow(t *testing.T) {
	reg, addr := serve(t, t.TempDir(), WithCredentials(testCreds))
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	user := remote.WithAuth(&authn.Basic{Username: testCreds.Username, Password: testCreds.Password})

	// Anonymous push: refused with the spec's 401 and the challenge.
	err = remote.Write(ref(t, addr+"/eiwizard/custom-cpu-base:1.0"), img)
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("anonymous push: %v", err)
	}
	// Wrong password: the token endpoint refuses it.
	err = remote.Write(ref(t, addr+"/eiwizard/custom-cpu-base:1.0"), img,
		remote.WithAuth(&authn.Basic{Username: "malocal", Password: "wrong"}))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("push with a wrong password: %v", err)
	}
	for _, r := range []string{"/eiwizard/custom-cpu-base:1.0", "/team/train:1"} {
		if err := remote.Write(ref(t, addr+r), img, user); err != nil {
			t.Fatalf("push %s with credentials: %v", r, err)
		}
	}
	// Anonymous pull: the official bases' namespace only.
	if _, err := remote.Image(ref(t, addr+"/eiwizard/custom-cpu-base:1.0")); err != nil {
		t.Fatalf("anonymous pull of a base: %v", err)
	}
	if _, err := remote.Image(ref(t, addr+"/team/train:1")); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("anonymous pull of a user image: %v", err)
	}
	if _, err := remote.Image(ref(t, addr+"/team/train:1"), user); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if _, err := remote.Catalog(t.Context(), mustRegistry(t, addr)); err == nil {
		t.Fatal("anonymous catalog answered")
	}

	// Raw HTTP: the challenge names realm, service and scope; the body
	// says how to log in.
	resp, err := http.Post("http://"+addr+"/v2/team/train/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ch := resp.Header.Get("WWW-Authenticate")
	want := `Bearer realm="http://` + addr + `/token",service="malocal-registry",scope="repository:team/train:pull,push"`
	if resp.StatusCode != 401 || ch != want {
		t.Fatalf("POST upload anonymously: %d %q; want 401 %q", resp.StatusCode, ch, want)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v2/eiwizard/custom-cpu-base/manifests/1.0", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Errors []struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 401 || len(body.Errors) != 1 || body.Errors[0].Code != "UNAUTHORIZED" ||
		!strings.Contains(body.Errors[0].Message, "malocal registry login") {
		t.Fatalf("DELETE anonymously: %d %+v", resp.StatusCode, body)
	}
	if _, err := reg.Resolve(t.Context(), "eiwizard/custom-cpu-base", "1.0"); err != nil {
		t.Fatalf("tag gone after a refused DELETE: %v", err)
	}

	// Token endpoint: no anonymous token for a user repository, and one
	// for the bases does not open user repositories.
	resp, err = http.Get("http://" + addr + "/token?service=" + Service + "&scope=repository:team/train:pull")
	if err != nil {
		t.Fatal(err)
	}
	body.Errors = nil
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 401 || len(body.Errors) != 1 || !strings.Contains(body.Errors[0].Message, "malocal registry login") {
		t.Fatalf("anonymous token for a user repository: %d %+v", resp.StatusCode, body)
	}
	tok := getToken(t, addr, "", "", "repository:eiwizard/custom-cpu-base:pull")
	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/v2/team/train/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("anonymous token on a user repo: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A tampered token is refused.
	req.Header.Set("Authorization", "Bearer "+getToken(t, addr, testCreds.Username, testCreds.Password, "repository:team/train:pull")+"x")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("tampered token: %d", resp.StatusCode)
	}
	// containerd's OAuth2 POST, then its refresh token.
	resp, err = http.PostForm("http://"+addr+"/token", url.Values{"grant_type": {"password"}, "username": {testCreds.Username},
		"password": {testCreds.Password}, "service": {Service}, "scope": {"repository:team/train:pull"}})
	if err != nil {
		t.Fatal(err)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if resp.StatusCode != 200 || tr.AccessToken == "" || tr.RefreshToken == "" {
		t.Fatalf("OAuth2 password grant: %d %+v", resp.StatusCode, tr)
	}
	req.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("OAuth2 token on tags/list: %d", resp.StatusCode)
	}
}

func getToken(t *testing.T, addr, user, pass, scope string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/token?service="+Service+"&scope="+scope, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 || tr.Token == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return tr.Token
}

// TestManifestSizeMismatch checks that a manifest whose descriptor sizes
// lie about their blobs is refused, as distribution refuses it.
func TestManifestSizeMismatch(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 0)
	m, _ := testImage(t, s, "lie/sizes")
	lying := strings.Replace(string(m), `"size":3000`, `"size":30`, 1)
	_, _, err := s.putManifest("lie/sizes", "1", ociManifest, []byte(lying), nil)
	if err == nil || !strings.Contains(err.Error(), "MANIFEST_INVALID") || !strings.Contains(err.Error(), "says size 30, the blob has 3000 bytes") {
		t.Fatalf("lying layer size: %v", err)
	}
	if _, _, err := s.resolve("lie/sizes", "1"); err == nil {
		t.Fatal("tag written for a refused manifest")
	}
	if _, _, err := s.putManifest("lie/sizes", "1", ociManifest, m, nil); err != nil {
		t.Fatalf("honest manifest: %v", err)
	}
}

// TestDockerLogin drives the real docker CLI (with a config dir of its
// own): push refused without login, login with the password on stdin,
// push, anonymous pull of eiwizard/ works and of other repositories fails.
func TestDockerLogin(t *testing.T) {
	docker := needDocker(t)
	reg := newTestRegistry(t, filepath.Join(t.TempDir(), "registry"), WithCredentials(testCreds))
	_, addr := serveOn(t, "127.0.0.1:0", reg.Handler())
	host := "localhost:" + addr[strings.LastIndex(addr, ":")+1:]
	cfg := t.TempDir()
	dk := func(args ...string) (string, error) {
		out, err := exec.CommandContext(t.Context(), docker, append([]string{"--config", cfg}, args...)...).CombinedOutput()
		return string(out), err
	}
	user, base := host+"/team/hello:1", host+"/eiwizard/hello-base:1"
	t.Cleanup(func() { exec.Command(docker, "rmi", "-f", user, base).Run() })
	run(t, docker, "import", "--change", `CMD ["/hello"]`, "--change", "LABEL malocal.test=1", helloRootfs(t), user)
	run(t, docker, "tag", user, base)

	out, err := dk("push", user)
	if err == nil || !strings.Contains(out, "no basic auth credentials") && !strings.Contains(out, "unauthorized") {
		t.Fatalf("push without login: %v\n%s", err, out)
	}
	t.Logf("docker push without login says: %s", out)
	login := exec.CommandContext(t.Context(), docker, "--config", cfg, "login", "--username", testCreds.Username, "--password-stdin", host)
	login.Stdin = strings.NewReader(testCreds.Password)
	if b, err := login.CombinedOutput(); err != nil || !strings.Contains(string(b), "Login Succeeded") {
		t.Fatalf("docker login: %v\n%s", err, b)
	}
	for _, im := range []string{user, base} {
		if out, err := dk("push", im); err != nil {
			t.Fatalf("push %s after login: %v\n%s", im, err, out)
		}
	}
	run(t, docker, "rmi", user, base)
	// Logged out (a fresh config): the base pulls anonymously, the user
	// image does not.
	cfg = t.TempDir()
	if out, err := dk("pull", base); err != nil {
		t.Fatalf("anonymous pull of a base: %v\n%s", err, out)
	}
	if out, err := dk("pull", user); err == nil || !strings.Contains(out, "denied") && !strings.Contains(out, "unauthorized") {
		t.Fatalf("anonymous pull of a user image: %v\n%s", err, out)
	}
	login = exec.CommandContext(t.Context(), docker, "--config", cfg, "login", "-u", testCreds.Username, "--password-stdin", host)
	login.Stdin = strings.NewReader(testCreds.Password)
	if b, err := login.CombinedOutput(); err != nil {
		t.Fatalf("docker login: %v\n%s", err, b)
	}
	if out, err := dk("pull", user); err != nil {
		t.Fatalf("pull after login: %v\n%s", err, out)
	}
	if out := run(t, docker, "run", "--rm", "--label", "malocal.test=1", user); !strings.Contains(out, "hello from malocal registry") {
		t.Fatalf("docker run output %q", out)
	}
}

// TestSkopeoWithCredentials copies an image in and out with skopeo's
// --creds, and checks skopeo without them is refused.
func TestSkopeoWithCredentials(t *testing.T) {
	skopeo := needTool(t, "skopeo", "")
	reg := newTestRegistry(t, filepath.Join(t.TempDir(), "registry"), WithCredentials(testCreds))
	addr := serveTCP(t, reg.Handler())
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(2000, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "img")
	if err := remote.Write(ref(t, addr+"/skopeo/src:1"), img, remote.WithAuth(&authn.Basic{Username: testCreds.Username, Password: testCreds.Password})); err != nil {
		t.Fatal(err)
	}
	base := []string{"--policy", policy, "copy", "--src-tls-verify=false", "--dest-tls-verify=false"}
	cmd := exec.CommandContext(t.Context(), skopeo, append(base, "docker://"+addr+"/skopeo/src:1", "dir:"+dir)...)
	cmd.Env = append(os.Environ(), "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("skopeo without credentials copied a user image:\n%s", out)
	}
	creds := testCreds.Username + ":" + testCreds.Password
	run(t, skopeo, append(base, "--src-creds", creds, "docker://"+addr+"/skopeo/src:1", "dir:"+dir)...)
	run(t, skopeo, append(base, "--dest-creds", creds, "dir:"+dir, "docker://"+addr+"/skopeo/dst:1")...)
	want := mustDigest(t, img).String()
	if d, err := reg.Resolve(t.Context(), "skopeo/dst", "1"); err != nil || d.Digest != want {
		t.Fatalf("copied in: %+v %v, want %s", d, err, want)
	}
}

// TestCraneWithCredentials builds crane (go-containerregistry's CLI) and
// uses it logged in: push, tag, delete refused without credentials.
func TestCraneWithCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("builds crane")
	}
	crane := filepath.Join(t.TempDir(), "crane")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", crane, "github.com/google/go-containerregistry/cmd/crane")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		missingTool(t, "building crane: "+err.Error()+"\n"+string(out))
	}
	reg := newTestRegistry(t, filepath.Join(t.TempDir(), "registry"), WithCredentials(testCreds))
	addr := serveTCP(t, reg.Handler())
	home := t.TempDir()
	cr := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), crane, append(args, "--insecure")...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+home, "HOME="+home)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	img, err := random.Image(1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "img.tar")
	if err := writeImageTarball(tarball, addr+"/crane/img:1", img); err != nil {
		t.Fatal(err)
	}
	if out, err := cr("push", tarball, addr+"/crane/img:1"); err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "UNAUTHORIZED") {
		t.Fatalf("crane push without login: %v\n%s", err, out)
	}
	if out, err := cr("auth", "login", addr, "-u", testCreds.Username, "-p", testCreds.Password); err != nil {
		t.Fatalf("crane auth login: %v\n%s", err, out)
	}
	if out, err := cr("push", tarball, addr+"/crane/img:1"); err != nil {
		t.Fatalf("crane push: %v\n%s", err, out)
	}
	if out, err := cr("tag", addr+"/crane/img:1", "2"); err != nil {
		t.Fatalf("crane tag: %v\n%s", err, out)
	}
	if out, err := cr("digest", addr+"/crane/img:2"); err != nil || strings.TrimSpace(out) != mustDigest(t, img).String() {
		t.Fatalf("crane digest: %v %q", err, out)
	}
	tags, err := reg.Tags(t.Context(), "crane/img")
	if err != nil || len(tags) != 2 {
		t.Fatalf("tags %v %v", tags, err)
	}
}

func mustRegistry(t *testing.T, addr string) name.Registry {
	t.Helper()
	r, err := name.NewRegistry(addr, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeImageTarball(p, refName string, img v1.Image) error {
	r, err := name.ParseReference(refName, name.Insecure)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(p, r, img)
}
