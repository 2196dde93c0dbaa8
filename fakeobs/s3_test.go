package fakeobs

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
)

func TestPutGetHead(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "data")
	body := randBytes(1, 3<<20)
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("data"), Key: aws.String("dir/sub/file.bin"), Body: bytes.NewReader(body),
		ContentType: aws.String("application/x-test"), Metadata: map[string]string{"owner": "alice"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("dir/sub/file.bin")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("body differs: %d bytes, want %d", len(got), len(body))
	}
	if aws.ToString(out.ETag) != `"`+md5hex(body)+`"` {
		t.Errorf("ETag %s, want md5 %s", aws.ToString(out.ETag), md5hex(body))
	}
	if aws.ToString(out.ContentType) != "application/x-test" || out.Metadata["owner"] != "alice" {
		t.Errorf("metadata lost: type %q meta %v", aws.ToString(out.ContentType), out.Metadata)
	}
	// The object is a plain file users can read, with no sidecar beside it.
	onDisk, err := os.ReadFile(filepath.Join(e.root, "data", "dir", "sub", "file.bin"))
	if err != nil || !bytes.Equal(onDisk, body) {
		t.Fatalf("file on disk: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(e.root, "data", "dir", "sub"))
	if len(ents) != 1 {
		t.Errorf("data dir holds %d entries, want just the object", len(ents))
	}
	head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("data"), Key: aws.String("dir/sub/file.bin")})
	if err != nil || aws.ToInt64(head.ContentLength) != int64(len(body)) {
		t.Fatalf("head: %v %v", err, head)
	}
	// A plain PUT replaces the metadata too.
	e.put(t, "data", "dir/sub/file.bin", []byte("new"))
	head, err = e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("data"), Key: aws.String("dir/sub/file.bin")})
	if err != nil || head.Metadata["owner"] != "" || aws.ToString(head.ContentType) == "application/x-test" {
		t.Errorf("old metadata survived a plain PUT: %v %v", err, head.Metadata)
	}
	_, err = e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("data"), Key: aws.String("missing")})
	if apiCode(err) != "NoSuchKey" {
		t.Errorf("missing key: %v", err)
	}
	_, err = e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("nobucket"), Key: aws.String("x")})
	if apiCode(err) != "NoSuchBucket" {
		t.Errorf("missing bucket: %v", err)
	}
	// A file dropped in by hand, without a sidecar, is served.
	if err := os.WriteFile(filepath.Join(e.root, "data", "hand.txt"), []byte("by hand"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, "data", "hand.txt"); string(got) != "by hand" {
		t.Errorf("hand-placed file: %q", got)
	}
}

func TestRange(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-r")
	body := randBytes(2, 100000)
	e.put(t, "b-r", "k", body)
	for _, c := range []struct {
		rng        string
		start, end int
	}{{"bytes=0-9", 0, 10}, {"bytes=99990-", 99990, 100000}, {"bytes=-5", 99995, 100000}, {"bytes=500-99999999", 500, 100000}} {
		out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b-r"), Key: aws.String("k"), Range: aws.String(c.rng)})
		if err != nil {
			t.Fatalf("%s: %v", c.rng, err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body[c.start:c.end]) {
			t.Errorf("%s: got %d bytes, want [%d:%d]", c.rng, len(got), c.start, c.end)
		}
		want := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end-1, len(body))
		if aws.ToString(out.ContentRange) != want {
			t.Errorf("%s: Content-Range %q, want %q", c.rng, aws.ToString(out.ContentRange), want)
		}
	}
	_, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b-r"), Key: aws.String("k"), Range: aws.String("bytes=200000-")})
	if apiCode(err) != "InvalidRange" {
		t.Errorf("range past end: %v", err)
	}
}

// Objects of more than two read-ahead chunks are sent chunk by chunk:
// whole and in ranges that start and end inside chunks, every byte arrives.
func TestLargeObjectRanges(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-large")
	body := randBytes(3, 3*readAheadChunk+12345)
	e.put(t, "b-large", "k", body)
	if got := e.get(t, "b-large", "k"); !bytes.Equal(got, body) {
		t.Fatalf("whole object: %d bytes differ from the %d put", len(got), len(body))
	}
	for _, c := range [][2]int{{7, len(body) - 3}, {readAheadChunk - 1, 3*readAheadChunk + 1}, {1, 2*readAheadChunk + 2}} {
		rng := fmt.Sprintf("bytes=%d-%d", c[0], c[1]-1)
		out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b-large"), Key: aws.String("k"), Range: aws.String(rng)})
		if err != nil {
			t.Fatalf("%s: %v", rng, err)
		}
		got, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(got, body[c[0]:c[1]]) {
			t.Errorf("%s: got %d bytes, want body[%d:%d]", rng, len(got), c[0], c[1])
		}
	}
}

func TestListPaging(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "list")
	// Keys chosen so that file-system order and S3 byte order differ
	// ("a-b" < "a/" < "a0"), spread over directories, plus more than 1000
	// keys so the default page size truncates.
	var want []string
	for i := 0; i < 1050; i++ {
		want = append(want, fmt.Sprintf("bulk/%04d", i))
	}
	want = append(want, "a-b", "a/x", "a/y/z", "a0", "top", "dir/", "dir/in")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, k := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e.put(t, "list", k, []byte(k))
		}()
	}
	wg.Wait()
	sort.Strings(want)

	// v2, default page size, through the SDK's paginator.
	var got []string
	pages := 0
	p := s3.NewListObjectsV2Paginator(e.s3, &s3.ListObjectsV2Input{Bucket: aws.String("list")})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range out.Contents {
			got = append(got, aws.ToString(o.Key))
		}
	}
	if pages != 2 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("v2 paging: %d pages, %d keys (want 2 pages, %d keys); first %v", pages, len(got), len(want), got[:min(5, len(got))])
	}

	// v2, small pages with a delimiter: common prefixes are folded and paged.
	var items []string
	p = s3.NewListObjectsV2Paginator(e.s3, &s3.ListObjectsV2Input{Bucket: aws.String("list"), Delimiter: aws.String("/"), MaxKeys: aws.Int32(2)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(out.Contents) + len(out.CommonPrefixes); n > 2 {
			t.Fatalf("page of %d items with max-keys 2", n)
		}
		for _, cp := range out.CommonPrefixes {
			items = append(items, aws.ToString(cp.Prefix))
		}
		for _, o := range out.Contents {
			items = append(items, aws.ToString(o.Key))
		}
	}
	sort.Strings(items)
	if strings.Join(items, ",") != "a-b,a/,a0,bulk/,dir/,top" {
		t.Errorf("delimiter listing: %v", items)
	}

	// Prefix inside a directory, and the "folder/" marker itself.
	out, err := e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("list"), Prefix: aws.String("dir/")})
	if err != nil || len(out.Contents) != 2 || aws.ToString(out.Contents[0].Key) != "dir/" {
		t.Errorf("prefix dir/: %v %+v", err, out)
	}
	// start-after.
	out, err = e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("list"), StartAfter: aws.String("bulk/1048"), MaxKeys: aws.Int32(3)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 3 || aws.ToString(out.Contents[0].Key) != "bulk/1049" || aws.ToString(out.Contents[1].Key) != "dir/" || !aws.ToBool(out.IsTruncated) {
		t.Errorf("start-after: %+v", out.Contents)
	}

	// v1 with marker.
	var v1 []string
	marker := ""
	for {
		o, err := e.s3.ListObjects(ctx, &s3.ListObjectsInput{Bucket: aws.String("list"), Marker: aws.String(marker), MaxKeys: aws.Int32(400)})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range o.Contents {
			v1 = append(v1, aws.ToString(c.Key))
		}
		if !aws.ToBool(o.IsTruncated) {
			break
		}
		marker = v1[len(v1)-1]
	}
	if strings.Join(v1, ",") != strings.Join(want, ",") {
		t.Errorf("v1 paging: %d keys, want %d", len(v1), len(want))
	}
}

func TestMultipart(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-mp")
	parts := [][]byte{randBytes(10, 5<<20), randBytes(11, 5<<20), randBytes(12, 1234)}
	cr, err := e.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b-mp"), Key: aws.String("big/obj"), ContentType: aws.String("text/x-mp")})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	sums := md5.New()
	for i, p := range parts {
		out, err := e.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b-mp"), Key: aws.String("big/obj"), UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
		s := md5.Sum(p)
		sums.Write(s[:])
	}
	lp, err := e.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("b-mp"), Key: aws.String("big/obj"), UploadId: cr.UploadId})
	if err != nil || len(lp.Parts) != 3 || aws.ToInt64(lp.Parts[2].Size) != 1234 {
		t.Fatalf("list parts: %v %+v", err, lp)
	}
	lu, err := e.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("b-mp")})
	if err != nil || len(lu.Uploads) != 1 || aws.ToString(lu.Uploads[0].Key) != "big/obj" {
		t.Fatalf("list uploads: %v %+v", err, lu)
	}
	// Out-of-order and wrong-ETag completes are refused.
	_, err = e.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b-mp"), Key: aws.String("big/obj"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{done[1], done[0]}}})
	if apiCode(err) != "InvalidPartOrder" {
		t.Errorf("unordered complete: %v", err)
	}
	comp, err := e.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b-mp"), Key: aws.String("big/obj"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if err != nil {
		t.Fatal(err)
	}
	wantETag := fmt.Sprintf(`"%x-3"`, sums.Sum(nil))
	if aws.ToString(comp.ETag) != wantETag {
		t.Errorf("complete ETag %s, want %s", aws.ToString(comp.ETag), wantETag)
	}
	got := e.get(t, "b-mp", "big/obj")
	if !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Fatalf("assembled object differs (%d bytes)", len(got))
	}
	head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b-mp"), Key: aws.String("big/obj")})
	if err != nil || aws.ToString(head.ETag) != wantETag || aws.ToString(head.ContentType) != "text/x-mp" {
		t.Errorf("head after complete: %v etag %s type %s", err, aws.ToString(head.ETag), aws.ToString(head.ContentType))
	}
	ents, _ := os.ReadDir(filepath.Join(e.root, uploadsDir))
	for _, ent := range ents {
		if ent.Name() != string(*cr.UploadId)+".done" {
			t.Errorf("completed upload left %s", ent.Name())
		}
	}

	// Abort removes the parts.
	cr2, err := e.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b-mp"), Key: aws.String("gone")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("b-mp"), Key: aws.String("gone"), UploadId: cr2.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("b-mp"), Key: aws.String("gone"), UploadId: cr2.UploadId}); err != nil {
		t.Fatal(err)
	}
	_, err = e.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("b-mp"), Key: aws.String("gone"), UploadId: cr2.UploadId})
	if apiCode(err) != "NoSuchUpload" {
		t.Errorf("list parts after abort: %v", err)
	}
}

func TestUploadPartCopy(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-pc")
	src := randBytes(20, 6<<20)
	e.put(t, "b-pc", "src", src)
	cr, err := e.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("b-pc"), Key: aws.String("dst")})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := e.s3.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String("b-pc"), Key: aws.String("dst"), UploadId: cr.UploadId, PartNumber: aws.Int32(1),
		CopySource: aws.String("b-pc/src"), CopySourceRange: aws.String("bytes=0-5242879")})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := e.s3.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String("b-pc"), Key: aws.String("dst"), UploadId: cr.UploadId, PartNumber: aws.Int32(2),
		CopySource: aws.String("b-pc/src"), CopySourceRange: aws.String(fmt.Sprintf("bytes=5242880-%d", len(src)-1))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("b-pc"), Key: aws.String("dst"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
			{ETag: p1.CopyPartResult.ETag, PartNumber: aws.Int32(1)}, {ETag: p2.CopyPartResult.ETag, PartNumber: aws.Int32(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, "b-pc", "dst"); !bytes.Equal(got, src) {
		t.Fatal("part-copied object differs")
	}
}

func TestCopyObject(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-c1")
	e.mkBucket(t, "b-c2")
	body := randBytes(3, 70000)
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b-c1"), Key: aws.String("a b+c"), Body: bytes.NewReader(body), Metadata: map[string]string{"k": "b-v"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b-c2"), Key: aws.String("copy"), CopySource: aws.String("b-c1/a%20b%2Bc")}); err != nil {
		t.Fatal(err)
	}
	head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b-c2"), Key: aws.String("copy")})
	if err != nil || head.Metadata["k"] != "b-v" {
		t.Errorf("copy kept no metadata: %v %v", err, head)
	}
	if !bytes.Equal(e.get(t, "b-c2", "copy"), body) {
		t.Error("copy differs")
	}
	// Self-copy without REPLACE is refused; with REPLACE it keeps the data.
	_, err = e.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b-c2"), Key: aws.String("copy"), CopySource: aws.String("b-c2/copy")})
	if apiCode(err) != "InvalidRequest" {
		t.Errorf("self-copy without REPLACE: %v", err)
	}
	_, err = e.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b-c2"), Key: aws.String("copy"), CopySource: aws.String("b-c2/copy"),
		MetadataDirective: types.MetadataDirectiveReplace, Metadata: map[string]string{"new": "1"}, ContentType: aws.String("text/plain")})
	if err != nil {
		t.Fatal(err)
	}
	head, err = e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b-c2"), Key: aws.String("copy")})
	if err != nil || head.Metadata["new"] != "1" || head.Metadata["k"] != "" || aws.ToString(head.ContentType) != "text/plain" {
		t.Errorf("REPLACE metadata: %v %v %v", err, head.Metadata, aws.ToString(head.ContentType))
	}
	if !bytes.Equal(e.get(t, "b-c2", "copy"), body) {
		t.Error("self-copy with REPLACE lost the data")
	}
	_, err = e.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("b-c2"), Key: aws.String("x"), CopySource: aws.String("b-c1/missing")})
	if apiCode(err) != "NoSuchKey" {
		t.Errorf("copy of missing source: %v", err)
	}
}

func TestDelete(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-d")
	for _, k := range []string{"a/b/c", "a/b/d", "x", "f/"} {
		e.put(t, "b-d", k, nil)
	}
	if _, err := e.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b-d"), Key: aws.String("a/b/c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b-d"), Key: aws.String("never")}); err != nil {
		t.Errorf("deleting a missing key must succeed: %v", err)
	}
	out, err := e.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("b-d"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{
		{Key: aws.String("a/b/d")}, {Key: aws.String("x")}, {Key: aws.String("f/")}}}})
	if err != nil || len(out.Deleted) != 3 || len(out.Errors) != 0 {
		t.Fatalf("delete objects: %v %+v", err, out)
	}
	// Empty directories are pruned, so the bucket is empty and can go.
	if ents, _ := os.ReadDir(filepath.Join(e.root, "b-d")); len(ents) != 0 {
		t.Errorf("bucket dir still holds %d entries", len(ents))
	}
	e.put(t, "b-d", "keep", nil)
	_, err = e.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("b-d")})
	if apiCode(err) != "BucketNotEmpty" {
		t.Errorf("delete non-empty bucket: %v", err)
	}
	if _, err := e.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b-d"), Key: aws.String("keep")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String("b-d")}); err != nil {
		t.Fatal(err)
	}
	lb, err := e.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil || len(lb.Buckets) != 0 {
		t.Errorf("buckets after delete: %v %+v", err, lb)
	}
}

func TestListObjectVersionsUnversioned(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-v")
	e.put(t, "b-v", "one", []byte("1"))
	e.put(t, "b-v", "two/x", []byte("2"))
	out, err := e.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String("b-v")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Versions) != 2 || aws.ToString(out.Versions[0].VersionId) != "null" || !aws.ToBool(out.Versions[0].IsLatest) {
		t.Fatalf("versions: %+v", out.Versions)
	}
	// Deleting a "null" version (what bucket-emptying tools do) works.
	if _, err := e.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b-v"), Key: aws.String("one"), VersionId: aws.String("null")}); err != nil {
		t.Fatal(err)
	}
	vc, err := e.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String("b-v")})
	if err != nil || vc.Status != "" {
		t.Errorf("get versioning: %v %v", err, vc)
	}
}

func TestUnimplementedSubresources(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-u")
	e.put(t, "b-u", "obj", []byte("keep me"))
	_, err := e.s3.PutObjectAcl(ctx, &s3.PutObjectAclInput{Bucket: aws.String("b-u"), Key: aws.String("obj"), ACL: types.ObjectCannedACLPublicRead})
	if apiCode(err) != "NotImplemented" {
		t.Errorf("put acl: %v", err)
	}
	_, err = e.s3.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{Bucket: aws.String("b-u"), Key: aws.String("obj"),
		Tagging: &types.Tagging{TagSet: []types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}}})
	if apiCode(err) != "NotImplemented" {
		t.Errorf("put tagging: %v", err)
	}
	_, err = e.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String("b-u"),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
	if apiCode(err) != "NotImplemented" {
		t.Errorf("put versioning: %v", err)
	}
	_, err = e.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String("b-u"), Policy: aws.String("{}")})
	if apiCode(err) != "NotImplemented" {
		t.Errorf("put policy: %v", err)
	}
	_, err = e.s3.GetBucketCors(ctx, &s3.GetBucketCorsInput{Bucket: aws.String("b-u")})
	if apiCode(err) != "NotImplemented" {
		t.Errorf("get cors: %v", err)
	}
	if got := e.get(t, "b-u", "obj"); string(got) != "keep me" {
		t.Errorf("object changed by a subresource request: %q", got)
	}
}

func TestBucketNames(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	for _, name := range []string{"Upper", "ab", "under_score", "-lead", "trail-", "a..b", "192.168.1.1", strings.Repeat("a", 64)} {
		_, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		if apiCode(err) != "InvalidBucketName" {
			t.Errorf("bucket %q: %v", name, err)
		}
	}
	e.mkBucket(t, "ok-name.with.dots")
	_, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("ok-name.with.dots")})
	// One owner: creating again is OBS's BucketAlreadyOwnedByYou (409).
	if apiCode(err) != "BucketAlreadyOwnedByYou" {
		t.Errorf("second create: %v", err)
	}
	// Our own dot-directories are not buckets.
	for _, name := range []string{".meta", ".tmp", ".uploads"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/"+name+"/x", nil)
		resp := signAndDo(t, req, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /%s/x: %d", name, resp.StatusCode)
		}
	}
}

// TestKeysStayInsideRoot sends keys that would reach outside the data dir
// if used as paths, over HTTP and straight to the backend.
func TestKeysStayInsideRoot(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "safe")
	outside := filepath.Dir(e.root)
	before, _ := os.ReadDir(outside)
	bad := []string{"../escape", "a/../../escape", "../../../../../tmp/escape", "/abs", "a//b", "./x", "a/./b", "a/..", "nul\x00byte",
		strings.Repeat("y/", 600), "..", "."}
	for _, k := range bad {
		_, err := e.svc.b.PutObject("safe", k, nil, strings.NewReader("evil"), 4, nil)
		if err == nil {
			t.Errorf("backend accepted key %q", k)
		}
		if _, err := e.svc.b.GetObject("safe", k, nil); err == nil {
			t.Errorf("backend served key %q", k)
		}
	}
	// Over HTTP, with the path sent raw (no client-side cleaning).
	for _, raw := range []string{"/safe/../escape", "/safe/..%2Fescape", "/safe/%2E%2E/%2E%2E/escape", "/safe//abs", "/safe/a%00b"} {
		req, _ := http.NewRequest(http.MethodPut, e.srv.URL, strings.NewReader("evil"))
		req.URL.Opaque = raw
		resp := signAndDo(t, req, []byte("evil"))
		if resp.StatusCode == http.StatusOK {
			t.Errorf("PUT %s accepted", raw)
		}
	}
	after, _ := os.ReadDir(outside)
	if len(after) != len(before) {
		t.Errorf("entries next to the root changed: %d → %d", len(before), len(after))
	}
	if err := filepath.WalkDir(e.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "escape") {
			t.Errorf("file %s created", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A symlink planted in a bucket that points outside is not followed.
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(outside, "secret"))
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(e.root, "safe", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.b.GetObject("safe", "link", nil); err == nil {
		t.Error("symlink out of the root was followed")
	}
}

func TestBadContentMD5KeepsOldObject(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-md")
	old := randBytes(4, 200000)
	e.put(t, "b-md", "k", old)
	wrong := md5.Sum([]byte("something else"))
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b-md"), Key: aws.String("k"), Body: bytes.NewReader(randBytes(5, 300000)),
		ContentMD5: aws.String(base64.StdEncoding.EncodeToString(wrong[:]))})
	if apiCode(err) != "BadDigest" {
		t.Fatalf("wrong Content-MD5: %v", err)
	}
	if !bytes.Equal(e.get(t, "b-md", "k"), old) {
		t.Fatal("old object damaged by a failed PUT")
	}
	assertNoTemp(t, e.root)
}

func assertNoTemp(t *testing.T, root string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, tmpDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%d temp files left behind", len(ents))
	}
}

func TestInjectedWriteError(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-w")
	old := randBytes(6, 100000)
	e.put(t, "b-w", "k", old)
	var mu sync.Mutex
	writes := 0
	e.svc.b.failWrite = func() error {
		mu.Lock()
		defer mu.Unlock()
		writes++
		if writes > 1 {
			return syscall.ENOSPC
		}
		return nil
	}
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b-w"), Key: aws.String("k"), Body: bytes.NewReader(randBytes(7, 5<<20))})
	if apiCode(err) != "InternalError" {
		t.Fatalf("PUT on a full disk: %v", err)
	}
	if !strings.Contains(err.Error(), "disk is full") {
		t.Errorf("error does not say the disk is full: %v", err)
	}
	_, err = e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b-w"), Key: aws.String("new"), Body: bytes.NewReader(randBytes(8, 5<<20))})
	if err == nil {
		t.Fatal("PUT of a new key succeeded on a full disk")
	}
	e.svc.b.failWrite = nil
	if !bytes.Equal(e.get(t, "b-w", "k"), old) {
		t.Fatal("old object damaged by a failed write")
	}
	_, err = e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b-w"), Key: aws.String("new")})
	if err == nil {
		t.Fatal("half-written object is visible")
	}
	assertNoTemp(t, e.root)
}

func TestConcurrentPutsSameKey(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "b-cc")
	bodies := make([][]byte, 6)
	var wg sync.WaitGroup
	for i := range bodies {
		bodies[i] = randBytes(uint64(100+i), 1<<20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.put(t, "b-cc", "k", bodies[i])
		}()
	}
	wg.Wait()
	got := e.get(t, "b-cc", "k")
	ok := false
	for _, b := range bodies {
		ok = ok || bytes.Equal(got, b)
	}
	if !ok {
		t.Fatal("object is a mix of concurrent PUTs")
	}
	head, err := e.s3.HeadObject(testCtx(t), &s3.HeadObjectInput{Bucket: aws.String("b-cc"), Key: aws.String("k")})
	if err != nil || aws.ToString(head.ETag) != `"`+md5hex(got)+`"` {
		t.Fatalf("ETag does not match the data: %v", err)
	}
}

func TestKeyClash(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "b-kc")
	e.put(t, "b-kc", "a", []byte("file"))
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b-kc"), Key: aws.String("a/b"), Body: strings.NewReader("x")})
	if apiCode(err) != "InvalidArgument" {
		t.Errorf("a/b under object a: %v", err)
	}
	e.put(t, "b-kc", "b-d/e", []byte("x"))
	_, err = e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b-kc"), Key: aws.String("b-d"), Body: strings.NewReader("x")})
	if apiCode(err) != "InvalidArgument" {
		t.Errorf("d over folder d/: %v", err)
	}
	if string(e.get(t, "b-kc", "a")) != "file" {
		t.Error("clash damaged object a")
	}
	// A multipart upload whose complete clashes keeps its parts for a retry.
	b := e.svc.b
	id, err := b.CreateMultipartUpload("b-kc", "a/mp", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := randBytes(90, 4000)
	etag, err := b.UploadPart("b-kc", "a/mp", id, 1, int64(len(body)), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req := &gofakes3.CompleteMultipartUploadRequest{Parts: []gofakes3.CompletedPart{{PartNumber: 1, ETag: etag}}}
	if _, _, err := b.CompleteMultipartUpload("b-kc", "a/mp", id, req); err == nil {
		t.Fatal("complete under object a succeeded")
	}
	if _, err := b.DeleteObject("b-kc", "a"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.CompleteMultipartUpload("b-kc", "a/mp", id, req); err != nil {
		t.Fatalf("complete after the clash is gone: %v", err)
	}
	if got := e.get(t, "b-kc", "a/mp"); !bytes.Equal(got, body) {
		t.Error("retried complete lost the parts")
	}
}

func TestExpireStaleUploads(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "b-ex")
	id, err := e.svc.b.CreateMultipartUpload("b-ex", "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.b.now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	e.svc.b.expireUploads()
	if _, err := e.svc.b.ListParts("b-ex", "k", id, 0, 100); err == nil {
		t.Error("stale upload not expired")
	}
}
