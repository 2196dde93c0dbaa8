package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const runtimeFile = "runtime.json"

// Runtime describes a running emulator: what client commands need to reach it.
type Runtime struct {
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Version  string    `json:"version"`
	API      string    `json:"api"`
	S3       string    `json:"s3"`
	Registry string    `json:"registry"`
}

// ErrLocked is returned when another emulator holds the data dir.
var ErrLocked = errors.New("data dir is in use")

// Lock is an exclusive hold on a data dir, released on Close or when the
// process dies (flock), so a kill -9 never leaves a stale lock behind.
type Lock struct {
	f    *os.File
	path string
}

// LockDataDir takes the data dir's lock or explains who holds it.
func LockDataDir(d *DataDir) (*Lock, error) {
	p := filepath.Join(d.Path, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", p, err)
	}
	// Readers take a shared lock for an instant (Running); retry briefly so
	// that a concurrent `malocal status` does not make `up` fail.
	for i := 0; ; i++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil || !errors.Is(err, syscall.EWOULDBLOCK) || i == 10 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(p); rerr == nil && strings.TrimSpace(string(b)) != "" {
			holder = "malocal pid " + strings.TrimSpace(string(b))
		}
		f.Close()
		return nil, fmt.Errorf("%w: %s holds %s; stop it first, or use another --data-dir", ErrLocked, holder, d.Path)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing lock %s: %w", p, err)
	}
	if _, err := f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing lock %s: %w", p, err)
	}
	return &Lock{f: f, path: p}, nil
}

// Close releases the lock. The file stays: removing it would race with a
// new instance that already opened it.
func (l *Lock) Close() error {
	l.f.Truncate(0)
	return l.f.Close()
}

// WriteRuntime records the addresses a running emulator listens on.
func (d *DataDir) WriteRuntime(r Runtime) error {
	return writeJSON(filepath.Join(d.Path, runtimeFile), r, 0o600)
}

func (d *DataDir) removeRuntime() { os.Remove(filepath.Join(d.Path, runtimeFile)) }

// ErrNotRunning is returned by Running when no emulator holds the data dir.
var ErrNotRunning = errors.New("no emulator is running on this data dir")

// Running returns the runtime record of the emulator holding the data dir.
func (d *DataDir) Running() (Runtime, error) {
	var r Runtime
	f, err := os.Open(filepath.Join(d.Path, lockFile))
	if errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("%w (%s); start one with `malocal up`", ErrNotRunning, d.Path)
	}
	if err != nil {
		return r, fmt.Errorf("opening lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return r, fmt.Errorf("%w (%s); start one with `malocal up`", ErrNotRunning, d.Path)
	}
	b, err := os.ReadFile(filepath.Join(d.Path, runtimeFile))
	if err != nil {
		return r, fmt.Errorf("the emulator on %s is starting or stopping (no %s yet): %w", d.Path, runtimeFile, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("parsing %s: %w", runtimeFile, err)
	}
	return r, nil
}
