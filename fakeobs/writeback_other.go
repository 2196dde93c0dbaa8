//go:build !linux

package fakeobs

import "os"

// startWriteback is a no-op where sync_file_range does not exist; the final
// fsync does all the flushing.
func startWriteback(f *os.File, off, n int64) {}

// syncData makes f's data durable.
func syncData(f *os.File) error { return f.Sync() }
