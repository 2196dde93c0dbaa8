// Package e2e starts the real malocal binary for end-to-end tests: it builds
// the binary once per test process, runs `malocal up` on a temporary data dir
// with free ports, hands tests the addresses and credentials, prints the
// emulator's log when a test fails, and removes what the test made,
// including the Docker containers and networks it labelled.
//
// A package that uses it calls e2e.Main from its TestMain.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/emulator"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// Main builds the binary, runs the package's tests and removes the binary
// afterwards. The build comes before m.Run so that it does not count
// against `go test -timeout`: on a busy machine it takes minutes, and a
// test's first Start used to spend the 10-minute default on it, then
// die at whatever it had reached by then (a browser sign-in, say).
func Main(m *testing.M) {
	flag.Parse()
	// Not for -list, nor for -short runs, whose tests start no emulator.
	if f := flag.Lookup("test.list"); !testing.Short() && (f == nil || f.Value.String() == "") {
		buildBinary()
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// Binary builds the malocal binary once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildBinary()
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// buildBinary builds the binary once; Binary reports its error to the test.
func buildBinary() {
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "malocal-e2e-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "malocal")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/malocal/malocal")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building malocal: %v\n%s", err, out)
		}
	})
}

// Emulator is a `malocal up` process started for a test.
type Emulator struct {
	t       testing.TB
	Bin     string
	DataDir string
	// Addresses (host:port) the emulator listens on.
	API, S3, Registry string
	Creds             emulator.Credentials
	Token             string

	cmd  *exec.Cmd
	log  *SyncBuffer
	done chan struct{}
	err  error // the process's exit error, once done is closed
}

// Option changes how Start runs the emulator.
type Option func(*startOptions)

type startOptions struct {
	dataDir string
	args    []string
	env     []string
}

// WithDataDir starts on an existing data dir (a restart) instead of a new one.
func WithDataDir(dir string) Option { return func(o *startOptions) { o.dataDir = dir } }

// WithArgs adds flags to `malocal up`.
func WithArgs(args ...string) Option {
	return func(o *startOptions) { o.args = append(o.args, args...) }
}

// WithEnv adds KEY=VALUE variables to the emulator's environment.
func WithEnv(kv ...string) Option { return func(o *startOptions) { o.env = append(o.env, kv...) } }

// Start runs `malocal up` and waits until its API answers.
func Start(t testing.TB, opts ...Option) *Emulator {
	t.Helper()
	e, err := StartErr(t, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// StartErr is Start for tests that expect the start to fail: the error
// holds the emulator's output.
func StartErr(t testing.TB, opts ...Option) (*Emulator, error) {
	t.Helper()
	var o startOptions
	for _, f := range opts {
		f(&o)
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join(t.TempDir(), "data")
	}
	e := &Emulator{t: t, Bin: Binary(t), DataDir: o.dataDir, log: &SyncBuffer{}, done: make(chan struct{})}
	args := append([]string{"up", "--data-dir", o.dataDir,
		"--api-addr", "127.0.0.1:0", "--s3-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
		"--shutdown-timeout", "5s"}, o.args...)
	e.cmd = exec.Command(e.Bin, args...)
	e.cmd.Env = append(os.Environ(), o.env...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting malocal up: %w", err)
	}
	go func() { e.err = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		e.Kill()
		if t.Failed() {
			t.Logf("malocal up log (%s):\n%s", e.DataDir, e.log.String())
		}
	})
	if err := e.waitReady(30 * time.Second); err != nil {
		e.Kill()
		return e, fmt.Errorf("%w\nmalocal up output:\n%s", err, e.log.String())
	}
	return e, nil
}

func (e *Emulator) waitReady(timeout time.Duration) error {
	r, err := emulator.WaitReady(context.Background(), e.DataDir, e.cmd.Process.Pid, e.done, timeout)
	if err != nil {
		select {
		case <-e.done:
			return fmt.Errorf("%w: %v", err, e.err)
		default:
			return err
		}
	}
	e.Creds, e.Token = r.Creds, r.Token
	e.API, e.S3, e.Registry = r.Runtime.API, r.Runtime.S3, r.Runtime.Registry
	return nil
}

// Client returns an API client with the emulator's token.
func (e *Emulator) Client() *api.Client { return api.NewClient(e.API, e.Token) }

// Log returns what the emulator printed so far.
func (e *Emulator) Log() string { return e.log.String() }

// PID is the emulator's process id.
func (e *Emulator) PID() int { return e.cmd.Process.Pid }

// Signal sends sig and waits up to timeout for the process to exit. It
// returns the exit code, or -1 when the process did not exit in time.
func (e *Emulator) Signal(sig syscall.Signal, timeout time.Duration) int {
	e.cmd.Process.Signal(sig)
	select {
	case <-e.done:
	case <-time.After(timeout):
		return -1
	}
	return exitCode(e.err)
}

// Stop ends the emulator with SIGTERM and returns its exit code.
func (e *Emulator) Stop() int { return e.Signal(syscall.SIGTERM, 30*time.Second) }

// Kill ends the emulator with SIGKILL, as a crash would.
func (e *Emulator) Kill() {
	select {
	case <-e.done:
		return
	default:
	}
	e.cmd.Process.Kill()
	<-e.done
}

// Restart kills nothing: it starts a new emulator on the same data dir,
// after the test stopped or killed this one.
func (e *Emulator) Restart(opts ...Option) *Emulator {
	e.t.Helper()
	return Start(e.t, append([]Option{WithDataDir(e.DataDir)}, opts...)...)
}

// Result is what a CLI run printed and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the malocal CLI against this emulator's data dir (given in
// the environment, so that arguments after "--" stay untouched).
func (e *Emulator) Run(args ...string) Result {
	e.t.Helper()
	return RunCLI(e.t, []string{"MALOCAL_DATA_DIR=" + e.DataDir}, args...)
}

// RunLong is Run for commands that may take longer than Run's 5 minutes
// (e.g. `samples install --engine pytorch`, which installs about 300
// Debian packages): they are killed after timeout.
func (e *Emulator) RunLong(timeout time.Duration, args ...string) Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return RunCLIContext(ctx, e.t, []string{"MALOCAL_DATA_DIR=" + e.DataDir}, args...)
}

// RunCLI runs the malocal binary with extra environment and arguments,
// killed after 5 minutes.
func RunCLI(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return RunCLIContext(ctx, t, env, args...)
}

// RunCLIContext runs the malocal binary with extra environment and
// arguments until it exits or ctx ends.
func RunCLIContext(ctx context.Context, t testing.TB, env []string, args ...string) Result {
	t.Helper()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: exitCode(err)}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// SyncBuffer is a bytes.Buffer safe for a writer and a reader goroutine:
// a child process's output read while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// InCI reports whether the tests run in CI, where a missing dependency
// fails a test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require fails the test under CI and skips it elsewhere, saying why.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("required in CI: %s", why)
	}
	t.Skipf("skipped: %s (under CI=true this fails)", why)
}

// RequireTool requires a program on PATH.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, fmt.Sprintf("%s is not installed (%v)", name, err))
	return p
}

// RequireDocker requires a reachable Docker engine.
func RequireDocker(t testing.TB) {
	t.Helper()
	RequireTool(t, "docker")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	Require(t, err == nil, fmt.Sprintf("the Docker engine is unreachable: %v: %s", err, strings.TrimSpace(string(out))))
}
