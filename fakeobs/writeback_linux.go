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

// preallocate allocates [off, off+n) of f and grows its size to cover it.
// Then a direct write of a part neither allocates nor extends the file, so
// ext4 lets parts written into one file at once proceed side by side
// instead of one at a time under the inode's lock. Measured here with 64
// parts of 8 MiB, ten at a time, into one file: 1.4–1.7× the throughput on
// a quiet disk, 1.2–3.2× beside fsync-heavy writers. Where the file system
// cannot preallocate, the write allocates as before. Blocks already
// allocated in the range are left as they are.
func preallocate(f *os.File, off, n int64) {
	_ = unix.Fallocate(int(f.Fd()), 0, off, n)
}

// adviseWillNeed asks the kernel to start reading [off, off+n) of f into
// the page cache now, without waiting.
func adviseWillNeed(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_WILLNEED)
}

// syncData makes f's data durable (fdatasync: no flush of timestamps).
func syncData(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// openDirect opens name for writing with O_DIRECT, or returns nil where
// the file system refuses it (tmpfs, some overlay set-ups).
func openDirect(root *os.Root, name string) *os.File {
	f, err := root.OpenFile(name, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}
