package fakeobs

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing [off, off+n) of f to disk
// now, without waiting, so that the fsync at the end of a large PUT finds
// little left to flush and disk and network work overlap.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// syncData makes f's data durable (fdatasync: no flush of timestamps).
func syncData(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
