package emulator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testConfig(t *testing.T) Config {
	return Config{
		DataDir: filepath.Join(t.TempDir(), "data"),
		APIAddr: "127.0.0.1:0", S3Addr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
		ShutdownTimeout: 2 * time.Second,
	}
}

// An in-flight request finishes during a graceful shutdown; new connections
// are refused once shutdown began.
func TestShutdownLetsInFlightFinish(t *testing.T) {
	cfg := testConfig(t)
	entered := make(chan struct{})
	cfg.handlers = map[string]http.Handler{"s3": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "finished")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- e.Wait(ctx) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + e.Runtime().S3 + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	if s := <-got; s != "finished" {
		t.Errorf("in-flight request got %q, want it finished", s)
	}
	if err := <-waited; err != nil {
		t.Errorf("Wait: %v", err)
	}
	if _, err := http.Get("http://" + e.Runtime().API + "/api/v1/status"); err == nil {
		t.Error("API still accepts connections after shutdown")
	}
}

// A request longer than the deadline is cut, and shutdown still ends.
func TestShutdownDeadlineCutsSlowRequests(t *testing.T) {
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 300 * time.Millisecond
	entered := make(chan struct{})
	cfg.handlers = map[string]http.Handler{"registry": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	})}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go http.Get("http://" + e.Runtime().Registry + "/v2/")
	<-entered
	cancel()
	start := time.Now()
	if err := e.Wait(ctx); err != nil {
		t.Errorf("Wait: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s with a 300ms deadline", d)
	}
	// The data dir is released: a new emulator can take it.
	e2, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("restart after deadline shutdown: %v", err)
	}
	e2.Shutdown(context.Background())
}

func TestStartRefusedLeavesDataDirUsable(t *testing.T) {
	cfg := testConfig(t)
	cfg.S3Addr = "256.0.0.1:1" // cannot be bound
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--s3-addr") {
		t.Fatalf("bad address: %v, want an error naming --s3-addr", err)
	}
	cfg.S3Addr = "127.0.0.1:0"
	e, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start after a refused start: %v", err)
	}
	e.Shutdown(context.Background())
}

func TestDataDirRefusesForeignAndNewerLayouts(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	if _, err := EnsureDataDir(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty foreign dir: %v", err)
	}
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, layoutFile), []byte("99\n"), 0o600)
	if _, err := EnsureDataDir(dir); err == nil || !strings.Contains(err.Error(), "upgrade malocal") {
		t.Errorf("newer layout: %v", err)
	}
	if _, err := OpenDataDir(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "not a malocal data dir") {
		t.Errorf("open missing: %v", err)
	}
}

func TestLockAndRunning(t *testing.T) {
	d, err := EnsureDataDir(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Running(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Running before lock: %v", err)
	}
	l, err := LockDataDir(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(d); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Errorf("second lock: %v", err)
	}
	if err := d.WriteRuntime(Runtime{PID: os.Getpid(), API: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if rt, err := d.Running(); err != nil || rt.API != "127.0.0.1:1" {
		t.Errorf("Running while locked: %+v %v", rt, err)
	}
	l.Close()
	if _, err := d.Running(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Running after unlock: %v", err)
	}
}

func TestWriteFileAtomicLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A file where a parent dir should be: the write fails and leaves nothing.
	if err := os.WriteFile(filepath.Join(dir, "notadir"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "notadir", "f"), []byte("x"), 0o600); err == nil {
		t.Error("write under a file succeeded")
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries, want only f and notadir", len(entries))
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Errorf("content %q", b)
	}
}
