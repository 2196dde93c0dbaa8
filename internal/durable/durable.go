// Package durable writes files so that a crash leaves either the old content
// or the new, never a part, and so that what was written survives the crash:
// temp file in the same directory → fsync → rename → fsync of the directory,
// with missing parent directories created durably (each new directory's
// parent is fsynced too). The temp file is removed on every failure path.
//
// It also holds the one cross-process file lock (Lock) that guards a
// read-modify-write of such a file.
//
// Every package of malocal that keeps state in files uses these helpers:
// the data dir (emulator), the registry's blobs and manifests, the base
// catalog (baseimage) and the object store (fakeobs, through the *In
// variants that work inside an os.Root).
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPrefix starts the name of every temp file WriteFile creates. It starts
// with a dot so that listings of stored names skip temp files, and a store
// can remove the ones a crash left behind (IsTemp).
const TempPrefix = ".tmp-"

// IsTemp reports whether a file name is one of WriteFile's temp files.
func IsTemp(name string) bool { return strings.HasPrefix(filepath.Base(name), TempPrefix) }

// DirPerm is the mode of the parent directories WriteFile creates.
const DirPerm fs.FileMode = 0o700

// WriteFile replaces path with data, durably: readers see the old content or
// the new, never a part, and once WriteFile returns nil the new content
// survives a crash. Missing parents are created (mode DirPerm) durably. The
// file gets mode perm.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := MkdirAll(dir, DirPerm); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("creating a temp file for %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("renaming into %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, which makes a create, rename or remove of one
// of its entries durable.
func SyncDir(dir string) error { return syncDir(osFS{}, dir) }

// SyncDirIn is SyncDir for dir inside root.
func SyncDirIn(root *os.Root, dir string) error { return syncDir(root, dir) }

// MkdirAll is os.MkdirAll that also fsyncs the parent of every directory it
// creates, so that a new path survives a crash together with the file later
// put in it. An existing directory costs one stat. A path component that is
// a file fails with an error that matches syscall.ENOTDIR.
func MkdirAll(dir string, perm fs.FileMode) error { return mkdirAll(osFS{}, dir, perm) }

// MkdirAllIn is MkdirAll for dir inside root ("." is the root itself).
func MkdirAllIn(root *os.Root, dir string, perm fs.FileMode) error {
	return mkdirAll(root, dir, perm)
}

// dirFS is what the helpers need of a file system: the OS's, or an os.Root.
type dirFS interface {
	Stat(name string) (fs.FileInfo, error)
	Mkdir(name string, perm fs.FileMode) error
	Open(name string) (*os.File, error)
}

var _ dirFS = (*os.Root)(nil)

type osFS struct{}

func (osFS) Stat(name string) (fs.FileInfo, error)     { return os.Stat(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error { return os.Mkdir(name, perm) }
func (osFS) Open(name string) (*os.File, error)        { return os.Open(name) }

func syncDir(fsys dirFS, dir string) error {
	d, err := fsys.Open(dir)
	if err != nil {
		return fmt.Errorf("opening directory %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

func mkdirAll(fsys dirFS, dir string, perm fs.FileMode) error {
	if fi, err := fsys.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(fsys, parent, perm); err != nil {
			return err
		}
	}
	if err := fsys.Mkdir(dir, perm); err != nil {
		// Another writer may have created it in the meantime.
		if fi, serr := fsys.Stat(dir); errors.Is(err, fs.ErrExist) && serr == nil && fi.IsDir() {
			return nil
		}
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	return syncDir(fsys, parent)
}
