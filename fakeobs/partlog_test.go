package fakeobs

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
)

func TestPartSlotRoundTrip(t *testing.T) {
	p := partFile{number: 9999, etag: md5hex([]byte("x")), off: 9998 * 8 << 20, size: 8 << 20, mod: time.Unix(1, 234).UTC(), inPlace: true}
	s := encodePartSlot(p)
	got, ok := decodePartSlot(s, 9999)
	if !ok || got.number != p.number || got.etag != p.etag || got.off != p.off || got.size != p.size || !got.mod.Equal(p.mod) || !got.inPlace {
		t.Fatalf("decoded %+v, %v; want %+v", got, ok, p)
	}
	if _, ok := decodePartSlot(s, 9998); ok {
		t.Error("a slot read at another part's place was accepted")
	}
	if _, ok := decodePartSlot(make([]byte, partSlotSize), 1); ok {
		t.Error("a zero slot was read as a part")
	}
	torn := bytes.Clone(s)
	torn[25] ^= 1
	if _, ok := decodePartSlot(torn, 9999); ok {
		t.Error("a slot whose checksum fails was read as a part")
	}
}

// newPlogUpload makes the bucket "plog" in b and begins an upload of key
// there.
func newPlogUpload(t *testing.T, b *backend, key string) gofakes3.UploadID {
	t.Helper()
	if err := b.CreateBucket("plog"); err != nil {
		t.Fatal(err)
	}
	id, err := b.CreateMultipartUpload("plog", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// completePlog completes the upload of key in "plog" and returns the
// object's bytes.
func completePlog(t *testing.T, b *backend, key string, id gofakes3.UploadID, req *gofakes3.CompleteMultipartUploadRequest) []byte {
	t.Helper()
	if _, _, err := b.CompleteMultipartUpload("plog", key, id, req); err != nil {
		t.Fatalf("completing the upload of %s: %v", key, err)
	}
	obj, err := b.GetObject("plog", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Contents.Close()
	got, err := io.ReadAll(obj.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// putPartsNumbered uploads each of parts as numbers from, from+1, … and returns
// their ETags.
func putPartsNumbered(t *testing.T, b *backend, key string, id gofakes3.UploadID, from int, parts [][]byte) []string {
	t.Helper()
	var etags []string
	for i, p := range parts {
		etag, err := b.UploadPart("plog", key, id, from+i, int64(len(p)), bytes.NewReader(p))
		if err != nil {
			t.Fatalf("part %d: %v", from+i, err)
		}
		etags = append(etags, etag)
	}
	return etags
}

// Parts written in place are recorded in the log, not as directory
// entries; they survive a restart, and a part sent again after a restart
// replaces the logged one, before and after a second restart.
func TestPartLogRecordsAndReplacesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	b := openTestBackend(t, dir)
	id := newPlogUpload(t, b, "obj")
	parts := [][]byte{randBytes(60, 200_000), randBytes(61, 200_000), randBytes(62, 200_000), randBytes(63, 5)}
	// Part 1030 lies in the log's second chunk.
	etags := putPartsNumbered(t, b, "obj", id, 1, parts[:2])
	far := putPartsNumbered(t, b, "obj", id, 1030, parts[3:])
	updir := filepath.Join(dir, uploadsDir, string(id))
	ents, _ := os.ReadDir(updir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[data parts upload.json]" {
		t.Errorf("upload dir holds %v, want data, the part log and upload.json", names)
	}
	if fi, err := os.Stat(filepath.Join(updir, partLogName)); err != nil || fi.Size() != 2*partLogChunk {
		t.Errorf("part log after parts 1, 2 and 1030: %v, want %d bytes", err, 2*partLogChunk)
	}

	// Restart; send part 2 again with other bytes: it goes to a file of its
	// own and its slot is cleared.
	b.close()
	b = openTestBackend(t, dir)
	lp, err := b.ListParts("plog", "obj", id, 0, 0)
	if err != nil || len(lp.Parts) != 3 || lp.Parts[0].ETag != etags[0] || lp.Parts[1].ETag != etags[1] || lp.Parts[2].ETag != far[0] || lp.Parts[2].PartNumber != 1030 {
		t.Fatalf("parts after restart: %v %+v", err, lp)
	}
	etags[1] = putPartsNumbered(t, b, "obj", id, 2, parts[2:3])[0]
	b.close()
	b = openTestBackend(t, dir)
	lp, err = b.ListParts("plog", "obj", id, 0, 0)
	if err != nil || len(lp.Parts) != 3 || lp.Parts[1].ETag != etags[1] {
		t.Fatalf("parts after re-sending part 2 and a restart: %v %+v, want part 2 %s", err, lp, etags[1])
	}
	req := gofakes3.CompleteMultipartUploadRequest{Parts: []gofakes3.CompletedPart{{PartNumber: 1, ETag: etags[0]}, {PartNumber: 2, ETag: etags[1]}, {PartNumber: 1030, ETag: far[0]}}}
	got := completePlog(t, b, "obj", id, &req)
	if want := append(append(bytes.Clone(parts[0]), parts[2]...), parts[3]...); !bytes.Equal(got, want) {
		t.Fatalf("object is %d bytes, md5 %x; want %d bytes, md5 %x", len(got), md5.Sum(got), len(want), md5.Sum(want))
	}
}

// An upload begun by an earlier version, its parts recorded as marker
// files, still lists and completes.
func TestPartMarkersOfEarlierVersionsStillRead(t *testing.T) {
	dir := t.TempDir()
	b := openTestBackend(t, dir)
	id := newPlogUpload(t, b, "old")
	b.close()
	parts := [][]byte{randBytes(64, 150_000), randBytes(65, 10)}
	updir := filepath.Join(dir, uploadsDir, string(id))
	if err := os.WriteFile(filepath.Join(updir, uploadData), bytes.Join(parts, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	var req gofakes3.CompleteMultipartUploadRequest
	var off int64
	for i, p := range parts {
		marker := fmt.Sprintf("i%05d-%s-%d-%d", i+1, md5hex(p), off, len(p))
		if err := os.WriteFile(filepath.Join(updir, marker), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		off += int64(len(p))
		req.Parts = append(req.Parts, gofakes3.CompletedPart{PartNumber: i + 1, ETag: `"` + md5hex(p) + `"`})
	}
	b = openTestBackend(t, dir)
	if got := completePlog(t, b, "old", id, &req); !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Fatalf("object is %d bytes, want %d", len(got), off)
	}
}
