package samples

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/malocal/malocal/emulator"
)

// Emulator is a `malocal up` the demo started as its child.
type Emulator struct {
	Runtime emulator.Runtime
	Token   string
	Creds   emulator.Credentials
	LogPath string // the child's output

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Running returns the runtime record, token and credentials of the
// emulator running on dataDir; emulator.ErrNotRunning when none runs.
func Running(dataDir string) (emulator.Runtime, string, emulator.Credentials, error) {
	var creds emulator.Credentials
	dd, err := emulator.OpenDataDir(dataDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return emulator.Runtime{}, "", creds, fmt.Errorf("%w (%s: no data dir yet)", emulator.ErrNotRunning, dataDir)
		}
		return emulator.Runtime{}, "", creds, err
	}
	rt, err := dd.Running()
	if err != nil {
		return rt, "", creds, err
	}
	token, err := dd.Token()
	if err != nil {
		return rt, "", creds, err
	}
	creds, err = dd.Credentials()
	return rt, token, creds, err
}

// StartEmulator runs `bin up --data-dir dataDir args...` in a process
// group of its own (so that a Ctrl-C reaches the demo, which stops its jobs
// first, and not the emulator), its output appended to logPath, and waits
// until its API answers.
func StartEmulator(ctx context.Context, bin, dataDir, logPath string, args ...string) (*Emulator, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	e := &Emulator{LogPath: logPath, done: make(chan struct{})}
	e.cmd = exec.Command(bin, append([]string{"up", "--data-dir", dataDir}, args...)...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting malocal up: %w", err)
	}
	go func() { e.err = e.cmd.Wait(); close(e.done) }()
	ready, err := emulator.WaitReady(ctx, dataDir, e.cmd.Process.Pid, e.done, 90*time.Second)
	if err != nil {
		select {
		case <-e.done:
			err = fmt.Errorf("%w: %v", err, e.err)
		default:
			e.Stop(10 * time.Second)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w\n%s", err, tail(logPath))
	}
	e.Runtime, e.Token, e.Creds = ready.Runtime, ready.Token, ready.Creds
	return e, nil
}

// Stop ends the emulator with SIGTERM (SIGKILL after timeout) and waits.
func (e *Emulator) Stop(timeout time.Duration) error {
	select {
	case <-e.done:
		return nil
	default:
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
		return nil
	case <-time.After(timeout):
		e.cmd.Process.Kill()
		<-e.done
		return fmt.Errorf("malocal up did not stop within %s: killed", timeout)
	}
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}
