package fakeobs

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
)

// backendFactory opens a backend on dir; calling it again on the same dir
// must see the same data (a restart).
type backendFactory func(t *testing.T, dir string) gofakes3.Backend

// runBackendConformance is the suite every storage behind the S3 API must
// pass, driven through gofakes3's interfaces only.
func runBackendConformance(t *testing.T, open backendFactory) {
	t.Run("Buckets", func(t *testing.T) { conformBuckets(t, open) })
	t.Run("Objects", func(t *testing.T) { conformObjects(t, open) })
	t.Run("ListMatchesModel", func(t *testing.T) { conformList(t, open) })
	t.Run("MultipartSurvivesRestart", func(t *testing.T) { conformMultipart(t, open) })
	t.Run("MultipartPartOrders", func(t *testing.T) { conformMultipartOrders(t, open) })
}

func TestDiskBackendConformance(t *testing.T) {
	runBackendConformance(t, func(t *testing.T, dir string) gofakes3.Backend {
		b, err := openBackend(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.close() })
		return b
	})
}

func mustPut(t *testing.T, b gofakes3.Backend, bucket, key string, data []byte, meta map[string]string) {
	t.Helper()
	if _, err := b.PutObject(bucket, key, meta, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func readObj(t *testing.T, b gofakes3.Backend, bucket, key string, rng *gofakes3.ObjectRangeRequest) []byte {
	t.Helper()
	o, err := b.GetObject(bucket, key, rng)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer o.Contents.Close()
	data, err := io.ReadAll(o.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func conformBuckets(t *testing.T, open backendFactory) {
	dir := t.TempDir()
	b := open(t, dir)
	if err := b.CreateBucket("alpha"); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateBucket("alpha"); !gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
		t.Errorf("second create: %v", err)
	}
	if err := b.CreateBucket("beta"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"..", ".meta", ".tmp", "a/b", "../x"} {
		if ok, _ := b.BucketExists(bad); ok {
			t.Errorf("BucketExists(%q) = true", bad)
		}
		if err := b.CreateBucket(bad); err == nil {
			t.Errorf("CreateBucket(%q) succeeded", bad)
		}
	}
	mustPut(t, b, "alpha", "x", []byte("1"), nil)
	if err := b.DeleteBucket("alpha"); !gofakes3.HasErrorCode(err, gofakes3.ErrBucketNotEmpty) {
		t.Errorf("delete non-empty: %v", err)
	}
	if err := b.DeleteBucket("nope"); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket) {
		t.Errorf("delete missing: %v", err)
	}
	b = open(t, dir)
	bs, err := b.ListBuckets()
	if err != nil || len(bs) != 2 || bs[0].Name != "alpha" || bs[1].Name != "beta" || bs[0].CreationDate.IsZero() {
		t.Fatalf("buckets after reopen: %v %+v", err, bs)
	}
	if err := b.ForceDeleteBucket("alpha"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteBucket("beta"); err != nil {
		t.Fatal(err)
	}
	if bs, _ := b.ListBuckets(); len(bs) != 0 {
		t.Errorf("buckets left: %+v", bs)
	}
}

func conformObjects(t *testing.T, open backendFactory) {
	dir := t.TempDir()
	b := open(t, dir)
	if err := b.CreateBucket("objs"); err != nil {
		t.Fatal(err)
	}
	data := randBytes(60, 100001)
	mustPut(t, b, "objs", "a/b/c", data, map[string]string{"Content-Type": "text/x", "X-Amz-Meta-Foo": "bar", "X-Amz-Date": "dropped"})
	if got := readObj(t, b, "objs", "a/b/c", nil); !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if got := readObj(t, b, "objs", "a/b/c", &gofakes3.ObjectRangeRequest{Start: 10, End: 19}); !bytes.Equal(got, data[10:20]) {
		t.Fatal("range differs")
	}
	h, err := b.HeadObject("objs", "a/b/c")
	if err != nil {
		t.Fatal(err)
	}
	h.Contents.Close()
	if h.Size != int64(len(data)) || h.Metadata["Content-Type"] != "text/x" || h.Metadata["X-Amz-Meta-Foo"] != "bar" || h.Metadata["X-Amz-Date"] != "" {
		t.Errorf("head: size %d meta %v", h.Size, h.Metadata)
	}
	if md5hex(data) != strings.Trim(gofakes3.FormatETag(h.Hash), `"`) {
		t.Error("hash is not the MD5")
	}
	// Short body: rejected, old object kept.
	if _, err := b.PutObject("objs", "a/b/c", nil, bytes.NewReader([]byte("short")), 100, nil); !gofakes3.HasErrorCode(err, gofakes3.ErrIncompleteBody) {
		t.Errorf("short body: %v", err)
	}
	// Conditional put.
	star := "*"
	if _, err := b.PutObject("objs", "a/b/c", nil, bytes.NewReader(nil), 0, &gofakes3.PutConditions{IfNoneMatch: &star}); !gofakes3.HasErrorCode(err, gofakes3.ErrPreconditionFailed) {
		t.Errorf("If-None-Match on existing: %v", err)
	}
	b = open(t, dir)
	if got := readObj(t, b, "objs", "a/b/c", nil); !bytes.Equal(got, data) {
		t.Fatal("content lost on reopen or damaged by a failed put")
	}
	if _, err := b.GetObject("objs", "a/b", nil); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey) {
		t.Errorf("a directory is not an object: %v", err)
	}
	// Copy onto itself with new metadata keeps the data.
	if _, err := b.CopyObject("objs", "a/b/c", "objs", "a/b/c", map[string]string{"X-Amz-Meta-New": "1"}); err != nil {
		t.Fatal(err)
	}
	if got := readObj(t, b, "objs", "a/b/c", nil); !bytes.Equal(got, data) {
		t.Fatal("self-copy lost data")
	}
	res, err := b.DeleteMulti("objs", "a/b/c", "not/there")
	if err != nil || len(res.Deleted) != 2 {
		t.Fatalf("delete multi: %v %+v", err, res)
	}
	if _, err := b.HeadObject("objs", "a/b/c"); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey) {
		t.Errorf("after delete: %v", err)
	}
	if err := b.DeleteBucket("objs"); err != nil {
		t.Errorf("bucket not empty after deleting its only object: %v", err)
	}
}

// conformList puts random keys and compares every kind of listing with a
// brute-force model of S3's rules.
func conformList(t *testing.T, open backendFactory) {
	b := open(t, t.TempDir())
	if err := b.CreateBucket("lst"); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []string{"a", "b", "-", "/", ".", "0", "é"}
	var keys []string
	seen := map[string]bool{}
	for len(keys) < 300 {
		n := 1 + r.IntN(7)
		var sb strings.Builder
		for range n {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		k := sb.String()
		if seen[k] || checkKey(k) != nil {
			continue
		}
		seen[k] = true
		_, err := b.PutObject("lst", k, nil, strings.NewReader(k), int64(len(k)), nil)
		if gofakes3.HasErrorCode(err, gofakes3.ErrInvalidArgument) {
			continue // clashes with a key already stored as a file or folder
		}
		if err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	prefixes := []string{"", "a", "a/", "b-", "/", "é", "zz"}
	delims := []string{"", "/", "-", "a"}
	for _, prefix := range prefixes {
		for _, delim := range delims {
			for _, max := range []int64{1, 3, 1000} {
				want := modelList(keys, prefix, delim)
				var got []string
				marker := ""
				for pages := 0; ; pages++ {
					if pages > 400 {
						t.Fatal("listing does not terminate")
					}
					p := &gofakes3.Prefix{HasPrefix: prefix != "", Prefix: prefix, HasDelimiter: delim != "", Delimiter: delim}
					page := gofakes3.ListBucketPage{Marker: marker, HasMarker: marker != "", MaxKeys: max}
					out, err := b.ListBucket("lst", p, page)
					if err != nil {
						t.Fatal(err)
					}
					if int64(len(out.Contents)+len(out.CommonPrefixes)) > max {
						t.Fatalf("page larger than max-keys %d", max)
					}
					var items []string
					for _, c := range out.Contents {
						items = append(items, c.Key)
						if c.Size != int64(len(c.Key)) {
							t.Errorf("size of %q = %d", c.Key, c.Size)
						}
					}
					for _, cp := range out.CommonPrefixes {
						items = append(items, cp.Prefix+"/")
					}
					got = append(got, items...)
					if !out.IsTruncated {
						break
					}
					if out.NextMarker == "" {
						t.Fatal("truncated page without NextMarker")
					}
					marker = out.NextMarker
				}
				sort.Strings(got)
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("prefix %q delim %q max %d:\n got %q\nwant %q", prefix, delim, max, got, want)
				}
			}
		}
	}
}

// modelList lists keys by S3's rules; common prefixes are suffixed with "/"
// to tell them apart from keys.
func modelList(keys []string, prefix, delim string) []string {
	var out []string
	cps := map[string]bool{}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				cp := prefix + k[len(prefix):][:i+len(delim)]
				if !cps[cp] {
					cps[cp] = true
					out = append(out, cp+"/")
				}
				continue
			}
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func conformMultipart(t *testing.T, open backendFactory) {
	dir := t.TempDir()
	b := open(t, dir)
	if err := b.CreateBucket("mpb"); err != nil {
		t.Fatal(err)
	}
	mb := b.(gofakes3.MultipartBackend)
	id, err := mb.CreateMultipartUpload("mpb", "obj", map[string]string{"Content-Type": "x/y"})
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{randBytes(70, 110_000), randBytes(71, 220_000), randBytes(72, 10)}
	var req gofakes3.CompleteMultipartUploadRequest
	for i, p := range parts[:2] {
		etag, err := mb.UploadPart("mpb", "obj", id, i+1, int64(len(p)), bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		req.Parts = append(req.Parts, gofakes3.CompletedPart{PartNumber: i + 1, ETag: etag})
	}
	// Re-uploading a part number replaces it.
	if _, err := mb.UploadPart("mpb", "obj", id, 2, 3, strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	etag, err := mb.UploadPart("mpb", "obj", id, 2, int64(len(parts[1])), bytes.NewReader(parts[1]))
	if err != nil {
		t.Fatal(err)
	}
	req.Parts[1].ETag = etag
	if _, err := mb.UploadPart("mpb", "other-key", id, 3, 1, strings.NewReader("x")); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchUpload) {
		t.Errorf("part for the wrong key: %v", err)
	}

	b = open(t, dir) // restart
	mb = b.(gofakes3.MultipartBackend)
	lp, err := mb.ListParts("mpb", "obj", id, 0, 1)
	if err != nil || len(lp.Parts) != 1 || !lp.IsTruncated || lp.NextPartNumberMarker != 1 {
		t.Fatalf("list parts page 1: %v %+v", err, lp)
	}
	lp, err = mb.ListParts("mpb", "obj", id, 1, 10)
	if err != nil || len(lp.Parts) != 1 || lp.Parts[0].Size != 220_000 || lp.IsTruncated {
		t.Fatalf("list parts page 2: %v %+v", err, lp)
	}
	lu, err := mb.ListMultipartUploads("mpb", nil, gofakes3.Prefix{}, 100)
	if err != nil || len(lu.Uploads) != 1 || lu.Uploads[0].UploadID != id {
		t.Fatalf("list uploads: %v %+v", err, lu)
	}
	etag, err = mb.UploadPart("mpb", "obj", id, 3, int64(len(parts[2])), bytes.NewReader(parts[2]))
	if err != nil {
		t.Fatal(err)
	}
	req.Parts = append(req.Parts, gofakes3.CompletedPart{PartNumber: 3, ETag: etag})
	_, etag, err = mb.CompleteMultipartUpload("mpb", "obj", id, &req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(etag, `-3"`) {
		t.Errorf("multipart ETag %s", etag)
	}
	if got := readObj(t, b, "mpb", "obj", nil); !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Fatal("assembled object differs")
	}
	if err := mb.AbortMultipartUpload("mpb", "obj", id); !gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchUpload) {
		t.Errorf("abort after complete: %v", err)
	}
}

// conformMultipartOrders uploads parts in orders and sizes that do and do
// not fit a fixed-size layout, and completes with all or some of them.
func conformMultipartOrders(t *testing.T, open backendFactory) {
	b := open(t, t.TempDir())
	if err := b.CreateBucket("orders"); err != nil {
		t.Fatal(err)
	}
	mb := b.(gofakes3.MultipartBackend)
	p := [][]byte{nil, randBytes(80, 150_000), randBytes(81, 150_000), randBytes(82, 60_000), randBytes(83, 175_000)}
	cases := []struct {
		name     string
		upload   []int // part numbers, in upload order; 4 is a larger part 3
		complete []int
	}{
		{"in order", []int{1, 2, 3}, []int{1, 2, 3}},
		{"out of order", []int{3, 2, 1}, []int{1, 2, 3}},
		{"part 2 first", []int{2, 1, 3}, []int{1, 2, 3}},
		{"skip a part", []int{1, 2, 3}, []int{1, 3}},
		{"larger last part", []int{1, 2, 4}, []int{1, 2, 3}},
		{"re-uploaded part", []int{1, 2, 3, 2}, []int{1, 2, 3}},
	}
	for i, c := range cases {
		key := fmt.Sprintf("obj%d", i)
		id, err := mb.CreateMultipartUpload("orders", key, nil)
		if err != nil {
			t.Fatal(err)
		}
		etags := map[int]string{}
		bodies := map[int][]byte{}
		for _, n := range c.upload {
			num, body := n, p[n]
			if n == 4 {
				num = 3
			}
			etag, err := mb.UploadPart("orders", key, id, num, int64(len(body)), bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%s: part %d: %v", c.name, num, err)
			}
			etags[num], bodies[num] = etag, body
		}
		var req gofakes3.CompleteMultipartUploadRequest
		var want []byte
		for _, n := range c.complete {
			req.Parts = append(req.Parts, gofakes3.CompletedPart{PartNumber: n, ETag: etags[n]})
			want = append(want, bodies[n]...)
		}
		if _, _, err := mb.CompleteMultipartUpload("orders", key, id, &req); err != nil {
			t.Fatalf("%s: complete: %v", c.name, err)
		}
		if got := readObj(t, b, "orders", key, nil); !bytes.Equal(got, want) {
			t.Errorf("%s: assembled object differs (%d bytes, want %d)", c.name, len(got), len(want))
		}
	}

	// Completing while a part the client left out is still uploading must
	// not let that part's bytes reach the finished object.
	id, err := mb.CreateMultipartUpload("orders", "racing", nil)
	if err != nil {
		t.Fatal(err)
	}
	var req gofakes3.CompleteMultipartUploadRequest
	for n := 1; n <= 2; n++ {
		etag, err := mb.UploadPart("orders", "racing", id, n, int64(len(p[n])), bytes.NewReader(p[n]))
		if err != nil {
			t.Fatal(err)
		}
		req.Parts = append(req.Parts, gofakes3.CompletedPart{PartNumber: n, ETag: etag})
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := mb.UploadPart("orders", "racing", id, 3, 150_000, pr)
		done <- err
	}()
	pw.Write(make([]byte, 50_000)) // part 3 is now mid-way
	if _, _, err := mb.CompleteMultipartUpload("orders", "racing", id, &req); err != nil {
		t.Fatal(err)
	}
	pw.Write(bytes.Repeat([]byte{0xee}, 100_000))
	pw.Close()
	<-done // it may fail (upload gone) or not; the object must not change
	if got := readObj(t, b, "orders", "racing", nil); !bytes.Equal(got, append(append([]byte{}, p[1]...), p[2]...)) {
		t.Errorf("object changed by a part uploaded after complete (%d bytes)", len(got))
	}
}
