//go:build unix

package netguard

import (
	"fmt"
	"syscall"
)

// RaiseFileLimit sets the soft limit of open files to the hard one and
// returns the new soft limit.
func RaiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		want := l
		want.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return l.Cur, fmt.Errorf("raising the open-file limit from %d to %d: %w", l.Cur, l.Max, err)
		}
		l = want
	}
	return l.Cur, nil
}

// FileLimit returns the soft limit of open files.
func FileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 1024
	}
	return l.Cur
}
