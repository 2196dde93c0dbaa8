package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock returns the first ```lang block after the heading in README.md.
func readmeBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	return readmeBlocks(t, heading, lang)[0]
}

// readmeBlocks returns the ```lang blocks of the README.md section under
// heading (up to the next heading of any level, outside a block), in order;
// at least one, or the test fails.
func readmeBlocks(t *testing.T, heading, lang string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	var blocks []string
	var block []string
	in, want := false, false
	for _, l := range strings.SplitAfter(rest, "\n") {
		switch {
		case !in && strings.HasPrefix(l, "#"):
			return checkBlocks(t, blocks, heading, lang)
		case !in && strings.HasPrefix(l, "```"):
			in, want, block = true, strings.TrimSpace(strings.TrimPrefix(l, "```")) == lang, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			if want {
				blocks = append(blocks, strings.Join(block, ""))
			}
		case in:
			block = append(block, l)
		}
	}
	if in {
		t.Fatalf("README.md: a block after %q does not end", heading)
	}
	return checkBlocks(t, blocks, heading, lang)
}

func checkBlocks(t *testing.T, blocks []string, heading, lang string) []string {
	t.Helper()
	if len(blocks) == 0 {
		t.Fatalf("README.md has no ```%s block under %q", lang, heading)
	}
	return blocks
}

// freePorts returns n loopback ports free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// TestReadmeUsingItBlock runs the README's "Using it" block in bash, as
// written, on a new data dir and again on the same one (used before), then
// checks that the shell it leaves reaches the emulator: the variables name
// the addresses up listens on, and client commands work.
func TestReadmeUsingItBlock(t *testing.T) {
	RequireTool(t, "bash")
	block := readmeBlock(t, "## Using it", "sh")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(Binary(t), filepath.Join(dir, "bin", "malocal")); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	p := freePorts(t, 3)
	// `make build` is what put bin/malocal here.
	script := "set -e\nmake() { [ \"$1\" = build ] && [ -x bin/malocal ]; }\n" + block + `
test "$MALOCAL_API" = "127.0.0.1:` + p[0] + `"
test "$AWS_ENDPOINT_URL" = "http://127.0.0.1:` + p[1] + `"
test "$MALOCAL_REGISTRY" = "localhost:` + p[2] + `"
bin/malocal obs mb s3://readme-$RUN
bin/malocal obs ls
bin/malocal image ls
kill %1
wait %1 || true
`
	for i, what := range []string{"a new data dir", "a data dir used before"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "MALOCAL_DATA_DIR="+data, "MALOCAL_API=", "MALOCAL_TOKEN=", "MALOCAL_CONFIG=",
			"MALOCAL_API_ADDR=127.0.0.1:"+p[0], "MALOCAL_S3_ADDR=127.0.0.1:"+p[1], "MALOCAL_REGISTRY_ADDR=127.0.0.1:"+p[2],
			"RUN="+strconv.Itoa(i))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		out, err := cmd.CombinedOutput()
		cancel()
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the script left
		}
		if err != nil {
			t.Fatalf("the README's block on %s: %v\n%s", what, err, out)
		}
		for _, want := range []string{"SERVICE", "http://127.0.0.1:" + p[0], "make_bucket: readme-" + strconv.Itoa(i), "REPOSITORY"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("on %s the output lacks %q:\n%s", what, want, out)
			}
		}
	}
}

// TestEnvWithoutEmulator: with no emulator running, env prints the
// addresses up would use with the same flags, variables and config file.
func TestEnvWithoutEmulator(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "malocal.yaml")
	os.WriteFile(cfg, []byte("api-addr: 127.0.0.1:17980\ns3-addr: 127.0.0.1:17999\nbackend: docker\n"), 0o600)
	r := RunCLI(t, []string{"MALOCAL_DATA_DIR=" + filepath.Join(dir, "data"), "MALOCAL_S3_ADDR=127.0.0.1:17981",
		"MALOCAL_API_ADDR=", "MALOCAL_REGISTRY_ADDR=", "MALOCAL_CONFIG="}, "env", "--config", cfg, "--registry-addr", "127.0.0.1:17982")
	if r.Code != 0 {
		t.Fatalf("env: exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{"addresses `malocal up` would use", "export MALOCAL_API=127.0.0.1:17980",
		"export AWS_ENDPOINT_URL=http://127.0.0.1:17981", "export MALOCAL_REGISTRY=localhost:17982", "export AWS_ACCESS_KEY_ID=MA"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("env lacks %q:\n%s", want, r.Stdout)
		}
	}
}

// TestReadmeJobYAML: the README shows the job file `job submit --help`
// shows, and the emulator accepts it as it is (a job is made; what it runs
// is not the point here).
func TestReadmeJobYAML(t *testing.T) {
	got := readmeBlock(t, "## Using it", "yaml")
	help := RunCLI(t, nil, "job", "submit", "--help").Stdout
	indented := ""
	for _, l := range strings.SplitAfter(got, "\n") {
		if l != "" {
			indented += "  " + l
		}
	}
	if !strings.Contains(help, indented) {
		t.Fatalf("README's job.yaml is not the one `job submit --help` shows:\n--- README\n%s--- help\n%s", got, help)
	}
	RequireDocker(t)
	e := Start(t)
	e.CleanupJobs()
	e.BusyboxImage(t, "demo/mnist", "1.0") // the names the example uses
	e.MakeBucket(t, "malocal-demo")
	file := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(file, []byte(got), 0o600)
	// Only the parsing and the API's validation are the point: the job is
	// stopped at once.
	r := e.Run("job", "submit", "-f", file)
	if id := strings.TrimSpace(strings.TrimPrefix(r.Stdout, "ID")); id != "" {
		defer e.Run("job", "stop", id)
	}
	if r.Code != 0 || !strings.Contains(r.Stderr, "submitted job-") || !strings.Contains(r.Stderr, "(mnist, 1 nodes)") {
		t.Fatalf("job submit -f README's job.yaml: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}
