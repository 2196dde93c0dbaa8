//go:build linux

package fakeobs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"golang.org/x/sys/unix"
)

// The first part of an upload allocates its data file well ahead (so the
// next parts find the space there); completing gives back what was not
// used, and the object is exactly its parts.
func TestUploadAllocatesAheadAndGivesBackTheRest(t *testing.T) {
	dir := t.TempDir()
	if probe, err := os.Create(filepath.Join(dir, "probe")); err == nil {
		err = unix.Fallocate(int(probe.Fd()), 0, 0, 1<<20)
		probe.Close()
		os.Remove(probe.Name())
		if err != nil {
			skipOutsideCI(t, fmt.Sprintf("the file system of %s cannot preallocate (%v): nothing to allocate ahead", dir, err))
		}
	}
	b := openTestBackend(t, dir)
	id := newPlogUpload(t, b, "obj")
	parts := [][]byte{randBytes(70, 2<<20), randBytes(71, 2<<20), randBytes(72, 300_000)}
	etags := putPartsNumbered(t, b, "obj", id, 1, parts[:1])
	data := filepath.Join(dir, uploadsDir, string(id), uploadData)
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2<<20 + allocAheadMin); fi.Size() < want || allocatedBytes(fi) < want {
		t.Errorf("data after part 1: %d bytes, %d allocated; want both at least %d", fi.Size(), allocatedBytes(fi), want)
	}
	etags = append(etags, putPartsNumbered(t, b, "obj", id, 2, parts[1:])...)
	if fi2, _ := os.Stat(data); fi2 == nil || fi2.Size() != fi.Size() {
		t.Errorf("parts 2 and 3 allocated again: %v, was %d bytes", fi2, fi.Size())
	}

	req := gofakes3.CompleteMultipartUploadRequest{Parts: []gofakes3.CompletedPart{{PartNumber: 1, ETag: etags[0]}, {PartNumber: 2, ETag: etags[1]}, {PartNumber: 3, ETag: etags[2]}}}
	got := completePlog(t, b, "obj", id, &req)
	if want := bytes.Join(parts, nil); !bytes.Equal(got, want) {
		t.Fatalf("object is %d bytes, want %d", len(got), len(want))
	}
	// The whole store holds the object and its bookkeeping, not the space
	// allocated ahead.
	var used int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				used += allocatedBytes(fi)
			}
		}
		return nil
	})
	if limit := int64(len(got)) + 8<<20; used > limit {
		t.Errorf("the store's files use %d bytes of disk after the complete, want at most %d", used, limit)
	}
}

func allocatedBytes(fi os.FileInfo) int64 { return fi.Sys().(*syscall.Stat_t).Blocks * 512 }
