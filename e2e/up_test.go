package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
)

func TestMain(m *testing.M) { Main(m) }

func TestUpStatusAndCleanStop(t *testing.T) {
	e := Start(t)

	st, err := e.Client().Status(context.Background())
	if err != nil {
		t.Fatalf("GET /api/v1/status: %v", err)
	}
	want := map[string]string{"api": e.API, "s3": e.S3, "registry": e.Registry}
	if len(st.Services) != len(want) {
		t.Fatalf("status lists %d services, want %d: %+v", len(st.Services), len(want), st.Services)
	}
	for _, s := range st.Services {
		if want[s.Name] != s.Address {
			t.Errorf("service %s at %q, want %q", s.Name, s.Address, want[s.Name])
		}
		if s.Name == "api" && !s.Ready {
			t.Errorf("the API is not reported ready: %+v", s)
		}
		if !s.Ready && s.Message == "" {
			t.Errorf("service %s is not ready and says nothing why", s.Name)
		}
	}
	if st.PID != e.PID() {
		t.Errorf("status pid %d, process pid %d", st.PID, e.PID())
	}

	r := e.Run("status")
	if r.Code != 0 {
		t.Fatalf("malocal status exited %d: %s", r.Code, r.Stderr)
	}
	for _, s := range []string{"SERVICE", "api", "s3", "registry", "http://" + e.API} {
		if !strings.Contains(r.Stdout, s) {
			t.Errorf("malocal status output lacks %q:\n%s", s, r.Stdout)
		}
	}
	r = e.Run("status", "-o", "json")
	var js api.Status
	if err := json.Unmarshal([]byte(r.Stdout), &js); err != nil || len(js.Services) != 3 {
		t.Fatalf("malocal status -o json: %v: %s", err, r.Stdout)
	}

	for _, l := range []string{"service=api", "service=s3", "service=registry", "path=/api/v1/status"} {
		if !strings.Contains(e.Log(), l) {
			t.Errorf("log lacks %q:\n%s", l, e.Log())
		}
	}

	if code := e.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit code %d, want 0\n%s", code, e.Log())
	}
	if _, err := os.Stat(filepath.Join(e.DataDir, "runtime.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("runtime.json left after a clean stop: %v", err)
	}
	r = e.Run("status")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no emulator is running") {
		t.Errorf("status after stop: code %d, stderr %q", r.Code, r.Stderr)
	}
	// The lock is released: a new instance starts on the same data dir.
	e.Restart().Stop()
}

func TestDataDirLayout(t *testing.T) {
	e := Start(t)
	for name, mode := range map[string]os.FileMode{".": 0o700, "credentials.json": 0o600, "api-token": 0o600} {
		fi, err := os.Stat(filepath.Join(e.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.DataDir, "layout-version")); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("layout-version: %q, %v", b, err)
	}
	if len(e.Creds.AccessKey) < 16 || len(e.Creds.SecretKey) < 32 {
		t.Errorf("weak generated credentials: %+v", e.Creds)
	}
	// Credentials survive a restart unchanged.
	old := e.Creds
	e.Stop()
	if e2 := e.Restart(); e2.Creds != old {
		t.Errorf("credentials changed across restart: %+v then %+v", old, e2.Creds)
	}
}

func TestSecondInstanceRefused(t *testing.T) {
	e := Start(t)
	_, err := StartErr(t, WithDataDir(e.DataDir))
	if err == nil {
		t.Fatal("a second malocal up on the same data dir started")
	}
	msg := err.Error()
	if !strings.Contains(msg, "in use") || !strings.Contains(msg, "pid "+itoa(e.PID())) {
		t.Errorf("refusal does not name the other process (pid %d):\n%s", e.PID(), msg)
	}
	// The first one is unharmed.
	if _, err := e.Client().Status(context.Background()); err != nil {
		t.Errorf("first instance broken after the refused second: %v", err)
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, c := range []struct{ flag, env string }{
		{"--s3-addr", "MALOCAL_S3_ADDR"}, {"--registry-addr", "MALOCAL_REGISTRY_ADDR"}, {"--api-addr", "MALOCAL_API_ADDR"},
	} {
		r := RunCLI(t, nil, "up", "--data-dir", filepath.Join(t.TempDir(), "d"),
			"--api-addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
			c.flag, ln.Addr().String())
		if r.Code == 0 {
			t.Fatalf("%s on a taken port: exit 0", c.flag)
		}
		for _, s := range []string{"already in use", ln.Addr().String(), c.flag, c.env} {
			if !strings.Contains(r.Stderr, s) {
				t.Errorf("%s on a taken port: error lacks %q:\n%s", c.flag, s, r.Stderr)
			}
		}
	}
}

func TestAddressFromEnvironment(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// The flag given by the harness wins over the environment, so start by
	// hand without --s3-addr.
	dir := filepath.Join(t.TempDir(), "d")
	cmd := exec.Command(Binary(t), "up", "--data-dir", dir, "--api-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "MALOCAL_S3_ADDR="+addr)
	var log SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "service=s3 url=http://"+addr) {
		if time.Now().After(deadline) {
			t.Fatalf("s3 not on MALOCAL_S3_ADDR=%s:\n%s", addr, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSIGTERMAndSIGINTWithinDeadline(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		e := Start(t, WithArgs("--shutdown-timeout", "3s"))
		start := time.Now()
		code := e.Signal(sig, 10*time.Second)
		if code != 0 {
			t.Errorf("%v: exit code %d, want 0\n%s", sig, code, e.Log())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%v: took %s to exit, deadline 3s", sig, d)
		}
		if !strings.Contains(e.Log(), "msg=stopped") {
			t.Errorf("%v: no clean stop in the log:\n%s", sig, e.Log())
		}
	}
}

func TestEnvWorksWithEval(t *testing.T) {
	e := Start(t)
	script := `eval "$("$MALOCAL" env --data-dir "$DD")" && printf '%s\n' "$AWS_ENDPOINT_URL" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_DEFAULT_REGION" "$MALOCAL_REGISTRY" "$S3_ENDPOINT"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "MALOCAL="+e.Bin, "DD="+e.DataDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("eval $(malocal env): %v\n%s", err, out)
	}
	_, port, _ := net.SplitHostPort(e.Registry)
	want := []string{"http://" + e.S3, e.Creds.AccessKey, e.Creds.SecretKey, e.Creds.Region, "localhost:" + port, "http://" + e.S3}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("after eval:\n got %q\nwant %q", got, want)
	}
}

func TestAPIRequiresTokenAndSameOrigin(t *testing.T) {
	e := Start(t)
	resp, err := http.Get("http://" + e.API + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var body api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || body.Code != "unauthorized" || body.Message == "" {
		t.Errorf("no token: %d %+v, want 401 with a JSON error", resp.StatusCode, body)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+e.API+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+e.Token)
	req.Header.Set("Origin", "http://evil.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", resp.StatusCode)
	}

	_, err = api.NewClient(e.API, "wrong").Status(context.Background())
	if !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("wrong token: %v, want ErrUnauthorized", err)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	r := RunCLI(t, nil, "version", "-o", "json")
	var v struct{ Version, Go string }
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &v) != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Errorf("version -o json: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	r = RunCLI(t, nil, "completion", "bash")
	if r.Code != 0 || !strings.Contains(r.Stdout, "__start_malocal") {
		t.Errorf("completion bash: %d %q", r.Code, r.Stderr)
	}
	r = RunCLI(t, nil, "version", "-o", "yaml")
	if r.Code == 0 || !strings.Contains(r.Stderr, "table or json") {
		t.Errorf("-o yaml: %d %q", r.Code, r.Stderr)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestImageCommandsOnTheRunningRegistry(t *testing.T) {
	e := Start(t)
	ref := e.BusyboxImage(t, "team/app", "v1")
	r := e.Run("image", "ls")
	if r.Code != 0 || !strings.Contains(r.Stdout, "team/app") || !strings.Contains(r.Stdout, "v1") || !strings.Contains(r.Stdout, "test/busybox-base") {
		t.Fatalf("image ls: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := e.Run("image", "rm", ref); r.Code != 0 {
		t.Fatalf("image rm: %d %s", r.Code, r.Stderr)
	}
	// The tag is gone, and with it the manifest no other tag points at.
	if r := e.Run("image", "ls", "--all", "-o", "json"); strings.Contains(r.Stdout, "team/app") {
		t.Errorf("team/app still listed after rm:\n%s", r.Stdout)
	}
	if r := e.Run("image", "rm", ref); r.Code == 0 || !strings.Contains(r.Stderr, "is not in the registry: `malocal image ls`") {
		t.Errorf("second rm: %d %q", r.Code, r.Stderr)
	}
	if r := e.Run("registry", "gc"); r.Code != 0 {
		t.Errorf("registry gc: %d %s", r.Code, r.Stderr)
	}
	// The registry answers docker's protocol on its own listener, with
	// SWR's login: a challenge without credentials, 200 with them.
	resp, err := http.Get("http://" + e.Registry + "/v2/")
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Www-Authenticate"), "Bearer realm=") {
		t.Errorf("GET /v2/ without credentials: %v %v", resp, err)
	}
	req, _ := http.NewRequest("GET", "http://"+e.Registry+"/v2/", nil)
	req.SetBasicAuth(e.Creds.RegistryUsername, e.Creds.RegistryPassword)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ with the emulator's credentials: %v %v", resp, err)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "malocal.yaml")
	// The harness passes the addresses as flags, which win over the file's.
	if err := os.WriteFile(cfg, []byte("log-format: json\napi-addr: 127.0.0.1:1\nstop-grace: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := Start(t, WithArgs("--config", cfg))
	if _, err := e.Client().Status(context.Background()); err != nil {
		t.Fatalf("the API flag did not win over the file's api-addr: %v", err)
	}
	first, _, _ := strings.Cut(e.Log(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil {
		t.Errorf("log-format: json from the config file not applied; first line %q: %v", first, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("backnd: kubernetes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := StartErr(t, WithArgs("--config", bad))
	if err == nil || !strings.Contains(err.Error(), `unknown setting "backnd"`) {
		t.Errorf("a misspelt setting: %v", err)
	}
}
