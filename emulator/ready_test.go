package emulator

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWaitReadyGivesUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// No data dir at all: not ready, and the reason says why.
	_, err := WaitReady(context.Background(), dir, 12345, nil, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready within 300ms") || !strings.Contains(err.Error(), "not a malocal data dir") {
		t.Errorf("no data dir: %v", err)
	}
	// The process ended: WaitReady returns at once.
	exited := make(chan struct{})
	close(exited)
	start := time.Now()
	_, err = WaitReady(context.Background(), dir, 12345, exited, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || time.Since(start) > 10*time.Second {
		t.Errorf("exited process: %v after %s", err, time.Since(start))
	}
	// The caller gives up.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WaitReady(ctx, dir, 12345, nil, time.Minute); err != context.Canceled {
		t.Errorf("canceled: %v", err)
	}
}
