package durable_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/malocal/malocal/internal/durable"
)

func TestWriteFileCreatesParentsAndReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "c.json")
	if err := durable.WriteFile(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "two" {
		t.Fatalf("content %q, %v; want two", b, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "a")); fi.Mode().Perm() != durable.DirPerm {
		t.Errorf("new parent has mode %v, want %v", fi.Mode().Perm(), durable.DirPerm)
	}
	assertNoTemps(t, filepath.Dir(p))
}

func TestWriteFileRemovesTempOnFailure(t *testing.T) {
	dir := t.TempDir()
	// The target is a directory: the rename fails after the temp file was
	// written and synced.
	target := filepath.Join(dir, "taken")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(target, []byte("data"), 0o600); err == nil {
		t.Fatal("writing over a non-empty directory succeeded")
	}
	assertNoTemps(t, dir)
}

func TestWriteFileParentIsFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := durable.WriteFile(filepath.Join(dir, "f", "g", "h"), []byte("x"), 0o600)
	if !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("err = %v, want ENOTDIR", err)
	}
}

func TestMkdirAllIn(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := durable.MkdirAllIn(root, "x/y/z", 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "x", "y", "z")); err != nil || !fi.IsDir() {
		t.Fatalf("x/y/z not created: %v", err)
	}
	if err := durable.MkdirAllIn(root, "x/y/z", 0o700); err != nil {
		t.Fatalf("existing dir: %v", err)
	}
	if err := durable.SyncDirIn(root, "x/y"); err != nil {
		t.Fatal(err)
	}
	if err := durable.MkdirAllIn(root, "../escape", 0o700); err == nil {
		t.Fatal("a path leaving the root was created")
	}
	if err := root.WriteFile("x/file", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := durable.MkdirAllIn(root, "x/file/sub", 0o700); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("err = %v, want ENOTDIR", err)
	}
}

func TestMkdirAllConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p", "q")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = durable.MkdirAll(dir, 0o700) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "x.lock")
	unlock, err := durable.Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := durable.Lock(p) // another open file: flock excludes it too
		if err != nil {
			t.Error(err)
		} else {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second Lock was granted while the first was held")
	case <-time.After(200 * time.Millisecond):
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second Lock was not granted after the first was released")
	}
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if durable.IsTemp(e.Name()) {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}
