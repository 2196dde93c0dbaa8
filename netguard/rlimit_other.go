//go:build !unix

package netguard

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE.
func RaiseFileLimit() (uint64, error) { return FileLimit(), nil }

// FileLimit is a conservative guess where the system has no such limit.
func FileLimit() uint64 { return 8192 }
