package emulator

import (
	"context"
	"fmt"
	"time"

	"github.com/malocal/malocal/api"
)

// Ready is what a client of a running emulator needs: the addresses it
// listens on, its API token and its S3 credentials.
type Ready struct {
	Runtime Runtime
	Token   string
	Creds   Credentials
}

// WaitReady waits until the emulator process pid (a `malocal up` the
// caller started on dataDir) holds the data dir and its API answers, and
// returns how to reach it. It fails when exited is closed first (the
// process ended: pass the channel closed after its Wait), when ctx ends, or
// after timeout, with the last reason it was not ready yet.
//
// It is the one "start an emulator and wait for it" loop: the demo's child
// emulator (samples) and the end-to-end tests' (e2e) both use it.
func WaitReady(ctx context.Context, dataDir string, pid int, exited <-chan struct{}, timeout time.Duration) (Ready, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error // why it is not ready yet
	for {
		r, err := readyOnce(ctx, dataDir, pid)
		if err == nil {
			return r, nil
		}
		last = err
		select {
		case <-exited:
			return Ready{}, fmt.Errorf("malocal up (pid %d) exited before it was ready", pid)
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return Ready{}, fmt.Errorf("malocal up (pid %d) was not ready within %s: %w", pid, timeout, last)
			}
			return Ready{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func readyOnce(ctx context.Context, dataDir string, pid int) (Ready, error) {
	var r Ready
	dd, err := OpenDataDir(dataDir)
	if err != nil {
		return r, err
	}
	if r.Runtime, err = dd.Running(); err != nil {
		return r, err
	}
	if r.Runtime.PID != pid {
		return r, fmt.Errorf("the data dir %s is held by pid %d, not by the emulator started (pid %d)", dataDir, r.Runtime.PID, pid)
	}
	if r.Token, err = dd.Token(); err != nil {
		return r, err
	}
	if r.Creds, err = dd.Credentials(); err != nil {
		return r, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := api.NewClient(r.Runtime.API, r.Token).Status(sctx); err != nil {
		return r, fmt.Errorf("the API at %s does not answer yet: %w", r.Runtime.API, err)
	}
	return r, nil
}
