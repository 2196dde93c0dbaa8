//go:build !linux

package fakeobs

import "os"

// startWriteback is a no-op where sync_file_range does not exist; the final
// fsync does all the flushing.
func startWriteback(f *os.File, off, n int64) {}

// preallocate: nothing to do here; the write allocates.
func preallocate(f *os.File, off, n int64) {}

// adviseWillNeed: no read-ahead hint here; the kernel's own read-ahead.
func adviseWillNeed(f *os.File, off, n int64) {}

// syncData makes f's data durable.
func syncData(f *os.File) error { return f.Sync() }

// openDirect: no direct I/O here; large bodies go through the page cache.
func openDirect(root *os.Root, name string) *os.File { return nil }
