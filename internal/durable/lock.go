//go:build unix

package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Lock takes an exclusive lock (flock) on the file at path, creating it
// (mode 0600, parents durably) when missing, and waits for it while another
// process or another Lock in this process holds it. The lock is released by
// the returned function, or by the kernel when the process dies, so a crash
// never leaves a stale lock behind. The lock file itself stays.
//
// Use it around a read-modify-write of a file that several processes change,
// with a lock file beside the data file (never the data file itself: the
// rename of WriteFile replaces that).
func Lock(path string) (unlock func() error, err error) {
	if err := MkdirAll(filepath.Dir(path), DirPerm); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() error {
		// Closing the file releases the flock.
		if err := f.Close(); err != nil {
			return fmt.Errorf("unlocking %s: %w", path, err)
		}
		return nil
	}, nil
}
