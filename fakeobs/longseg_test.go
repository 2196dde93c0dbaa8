package fakeobs

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
)

// Segments around NAME_MAX and the alias prefix, which sort among
// themselves and short names by their bytes, not by their hashes.
var (
	segA300 = strings.Repeat("a", 300)
	segB300 = strings.Repeat("a", 299) + "b"
	seg600  = strings.Repeat("長", 200) // 600 bytes of UTF-8
	seg255  = strings.Repeat("z", 255) // the longest plain name
)

func openTestBackend(t *testing.T, dir string) *backend {
	t.Helper()
	b, err := openBackend(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.close() })
	return b
}

// listAll pages through a listing with max-keys max and returns keys and
// common prefixes (suffixed "/" as modelList does) in the order given.
func listAll(t *testing.T, b gofakes3.Backend, bucket, prefix, delim string, max int64) []string {
	t.Helper()
	var got []string
	marker := ""
	for pages := 0; ; pages++ {
		if pages > 500 {
			t.Fatal("listing does not terminate")
		}
		p := &gofakes3.Prefix{HasPrefix: prefix != "", Prefix: prefix, HasDelimiter: delim != "", Delimiter: delim}
		out, err := b.ListBucket(bucket, p, gofakes3.ListBucketPage{Marker: marker, HasMarker: marker != "", MaxKeys: max})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(out.Contents)+len(out.CommonPrefixes)) > max {
			t.Fatalf("page larger than max-keys %d", max)
		}
		// S3 returns one page in key order, prefixes merged in.
		var page []string
		for _, c := range out.Contents {
			page = append(page, c.Key)
		}
		for _, cp := range out.CommonPrefixes {
			page = append(page, cp.Prefix+"/")
		}
		sort.Strings(page)
		if len(got) > 0 && len(page) > 0 && page[0] <= got[len(got)-1] {
			t.Fatalf("page starts at %.40q, not after %.40q", page[0], got[len(got)-1])
		}
		got = append(got, page...)
		if !out.IsTruncated {
			return got
		}
		marker = out.NextMarker
	}
}

// TestLongSegmentsListMatchesModel puts random keys made of long, short and
// alias-like segments and compares listings, before and after a restart,
// with S3's rules.
func TestLongSegmentsListMatchesModel(t *testing.T) {
	dir := t.TempDir()
	b := openTestBackend(t, dir)
	if err := b.CreateBucket("lng"); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(18, 255))
	tokens := []string{"a", "b", "/", "-", "é", segA300, segB300, seg600, seg255, aliasPrefix, aliasName("x")}
	var keys []string
	seen := map[string]bool{}
	for tries := 0; len(keys) < 150 && tries < 5000; tries++ {
		var sb strings.Builder
		for range 1 + r.IntN(4) {
			sb.WriteString(tokens[r.IntN(len(tokens))])
		}
		k := sb.String()
		if seen[k] || checkKey(k) != nil {
			continue
		}
		seen[k] = true
		_, err := b.PutObject("lng", k, nil, strings.NewReader(k), int64(len(k)), nil)
		if gofakes3.HasErrorCode(err, gofakes3.ErrInvalidArgument) {
			continue // a file/folder clash, as with short keys
		}
		if err != nil {
			t.Fatalf("put %.60q (%d bytes): %v", k, len(k), err)
		}
		keys = append(keys, k)
	}
	if len(keys) < 100 {
		t.Fatalf("only %d keys stored", len(keys))
	}
	sort.Strings(keys)
	check := func(b gofakes3.Backend) {
		t.Helper()
		for _, prefix := range []string{"", "a", segA300, segA300 + "/", seg600[:9], "b/", aliasPrefix, "zz"} {
			for _, delim := range []string{"", "/", "-", "b"} {
				for _, max := range []int64{3, 1000} {
					want := modelList(keys, prefix, delim)
					if got := listAll(t, b, "lng", prefix, delim, max); strings.Join(got, "|") != strings.Join(want, "|") {
						t.Fatalf("prefix %.20q delim %q max %d:\n got %d items %.300q\nwant %d items %.300q", prefix, delim, max, len(got), got, len(want), want)
					}
				}
			}
		}
		for _, k := range keys[:20] {
			if got := readObj(t, b, "lng", k, nil); string(got) != k {
				t.Fatalf("content of %.60q differs", k)
			}
		}
	}
	check(b)
	b.close()
	check(openTestBackend(t, dir))
}

// TestLongSegmentsOnDisk checks the layout: plain names stay plain, long
// ones become aliases with records, and deletes prune both.
func TestLongSegmentsOnDisk(t *testing.T) {
	dir := t.TempDir()
	b := openTestBackend(t, dir)
	if err := b.CreateBucket("lng"); err != nil {
		t.Fatal(err)
	}
	plain := seg255 + "/" + seg255
	deep := "top/" + seg600 + "/mid/" + segA300
	marker := "top/" + seg600 + "/" + segB300 + "/"
	for _, k := range []string{plain, deep, marker} {
		mustPut(t, b, "lng", k, []byte("v:"+k[len(k)-3:]), nil)
	}
	if _, err := os.Stat(filepath.Join(dir, "lng", seg255, seg255)); err != nil {
		t.Errorf("a 255-byte segment is not stored plainly: %v", err)
	}
	aliasDir := filepath.Join(dir, "lng", "top", aliasName(seg600))
	if _, err := os.Stat(filepath.Join(aliasDir, "mid", aliasName(segA300))); err != nil {
		t.Errorf("long key not under its aliases: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(aliasDir, aliasName(segB300))); err != nil || !fi.IsDir() {
		t.Errorf("folder marker through long segments has no alias folder: %v", err)
	}
	records := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(dir, metaDir, "lng", aliasMetaDir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	// seg600 under top/, segA300 under mid/, segB300 under seg600.
	if n := records(); n != 3 {
		t.Errorf("%d alias records, want 3", n)
	}
	if got := listAll(t, b, "lng", "top/", "/", 1000); len(got) != 1 || got[0] != "top/"+seg600+"//" {
		t.Errorf("common prefix through a long segment: %.100q", got)
	}
	if got := listAll(t, b, "lng", "top/"+seg600+"/", "/", 1000); strings.Join(got, "|") != marker+"/|top/"+seg600+"/mid//" {
		t.Errorf("listing inside a long segment: %.100q", got)
	}

	if err := b.DeleteBucket("lng"); !gofakes3.HasErrorCode(err, gofakes3.ErrBucketNotEmpty) {
		t.Errorf("delete of a bucket with long keys: %v", err)
	}
	if _, err := b.DeleteObject("lng", deep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(aliasDir, "mid")); !os.IsNotExist(err) {
		t.Errorf("empty folder under an alias not pruned: %v", err)
	}
	if _, err := os.Stat(aliasDir); err != nil {
		t.Errorf("alias folder of a remaining folder marker pruned: %v", err)
	}
	if n := records(); n != 2 {
		t.Errorf("%d alias records after deleting one long key, want 2", n)
	}
	res, err := b.DeleteMulti("lng", marker, plain)
	if err != nil || len(res.Error) != 0 {
		t.Fatalf("multi-delete: %v %+v", err, res.Error)
	}
	if n := records(); n != 0 {
		t.Errorf("%d alias records left with no long key", n)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, "lng")); err != nil || len(ents) != 0 {
		t.Errorf("bucket dir not pruned: %v %v", ents, err)
	}
	if err := b.DeleteBucket("lng"); err != nil {
		t.Errorf("delete of the emptied bucket: %v", err)
	}
}

// TestLongSegmentsCopyMultipartRestart copies onto and completes uploads to
// keys with long segments, and reads them after a restart.
func TestLongSegmentsCopyMultipartRestart(t *testing.T) {
	dir := t.TempDir()
	b := openTestBackend(t, dir)
	if err := b.CreateBucket("lng"); err != nil {
		t.Fatal(err)
	}
	src := "in/" + seg600
	mustPut(t, b, "lng", src, []byte("source"), map[string]string{"X-Amz-Meta-Who": "me"})
	dst := seg600 + "/" + segA300 + "/copy"
	if _, err := b.CopyObject("lng", src, "lng", dst, map[string]string{"X-Amz-Meta-Who": "copy"}); err != nil {
		t.Fatal(err)
	}
	mpKey := aliasPrefix + "not-an-alias/" + segB300
	id, err := b.CreateMultipartUpload("lng", mpKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{randBytes(18, 120_000), randBytes(19, 7)}
	var req gofakes3.CompleteMultipartUploadRequest
	for i, p := range parts {
		etag, err := b.UploadPart("lng", mpKey, id, i+1, int64(len(p)), bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		req.Parts = append(req.Parts, gofakes3.CompletedPart{PartNumber: i + 1, ETag: etag})
	}
	if _, _, err := b.CompleteMultipartUpload("lng", mpKey, id, &req); err != nil {
		t.Fatal(err)
	}
	// A user name that begins like an alias is aliased too, never taken
	// for one.
	if _, err := os.Stat(filepath.Join(dir, "lng", aliasPrefix+"not-an-alias")); !os.IsNotExist(err) {
		t.Errorf("a name with the alias prefix is stored plainly: %v", err)
	}
	b.close()

	b = openTestBackend(t, dir)
	if got := readObj(t, b, "lng", dst, nil); string(got) != "source" {
		t.Errorf("copy after restart: %q", got)
	}
	o, err := b.HeadObject("lng", dst)
	if err != nil || o.Metadata["X-Amz-Meta-Who"] != "copy" {
		t.Errorf("head of the copy: %v %v", err, o)
	}
	if got := readObj(t, b, "lng", mpKey, nil); !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Error("multipart object with long segments differs after restart")
	}
	want := []string{mpKey, dst, src}
	sort.Strings(want)
	if got := listAll(t, b, "lng", "", "", 2); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("list after restart: %.200q", got)
	}
	// A file placed by hand under an alias-like name has no record: not
	// listed, and nothing else breaks.
	if err := os.WriteFile(filepath.Join(dir, "lng", aliasName("stray")), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, b, "lng", "", "", 1000); len(got) != 3 {
		t.Errorf("stray alias listed: %.200q", got)
	}
}

// TestLongSegmentsSDK puts, lists and gets a key with a 600-byte segment
// through aws-sdk-go-v2 (ListObjectsV2 with a delimiter, HEAD, GET, copy,
// multi-delete), on a loopback listener.
func TestLongSegmentsSDK(t *testing.T) {
	url, _ := serveLoopback(t)
	cl := newS3Client(url, testCreds)
	ctx := testCtx(t)
	bucket := aws.String("sdk-long")
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("s", 600)
	key := "data/" + long + "/file.txt"
	body := []byte("six hundred")
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String("data/" + long), Body: strings.NewReader("clash")}); apiCode(err) != "InvalidArgument" {
		t.Errorf("a key that is the folder of another: %v", err)
	}
	lo, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String("data/"), Delimiter: aws.String("/")})
	if err != nil {
		t.Fatal(err)
	}
	if len(lo.CommonPrefixes) != 1 || aws.ToString(lo.CommonPrefixes[0].Prefix) != "data/"+long+"/" || len(lo.Contents) != 0 {
		t.Errorf("delimiter listing: %+v %+v", lo.CommonPrefixes, lo.Contents)
	}
	lo, err = cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(lo.Contents) != 1 || aws.ToString(lo.Contents[0].Key) != key || aws.ToInt64(lo.Contents[0].Size) != int64(len(body)) {
		t.Fatalf("listing: %+v", lo.Contents)
	}
	out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("GET: %q", got)
	}
	if _, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	cp := long + "/copied"
	if _, err := cl.CopyObject(ctx, &s3.CopyObjectInput{Bucket: bucket, Key: aws.String(cp), CopySource: aws.String("sdk-long/" + key)}); err != nil {
		t.Fatal(err)
	}
	del, err := cl.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: bucket, Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: aws.String(key)}, {Key: aws.String(cp)}}}})
	if err != nil || len(del.Errors) != 0 {
		t.Fatalf("multi-delete: %v %+v", err, del)
	}
	if _, err := cl.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: bucket}); err != nil {
		t.Errorf("bucket not empty after deleting its long keys: %v", err)
	}
}

// TestKill9KeepsLongSegments kills the server right after acknowledged
// writes of long keys and checks, after a restart, that they list in order
// and read back.
func TestKill9KeepsLongSegments(t *testing.T) {
	root := t.TempDir()
	ctx := testCtx(t)
	c := startChild(t, root)
	cl := newS3Client(c.url, testCreds)
	bucket := aws.String("crash-long")
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
		t.Fatal(err)
	}
	keys := []string{segA300, segB300 + "/x", "a", seg600 + "/", seg600 + "/" + seg255, "b/" + segA300}
	for _, k := range keys {
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: aws.String(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatalf("put %.40q: %v", k, err)
		}
	}
	c.kill9(t)

	c = startChild(t, root)
	cl = newS3Client(c.url, testCreds)
	lo, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range lo.Contents {
		got = append(got, aws.ToString(o.Key))
	}
	sort.Strings(keys)
	if strings.Join(got, "|") != strings.Join(keys, "|") {
		t.Fatalf("keys after kill -9:\n got %.200q\nwant %.200q", got, keys)
	}
	for _, k := range keys {
		out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String(k)})
		if err != nil {
			t.Fatalf("get %.40q: %v", k, err)
		}
		data, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(data) != k {
			t.Errorf("content of %.40q after kill -9 differs", k)
		}
	}
}

// TestClientAWSCLILongSegment does the same with the aws command line.
func TestClientAWSCLILongSegment(t *testing.T) {
	awsBin := requireClient(t, "awscli", "/usr/bin/aws", "aws")
	url, _ := serveLoopback(t)
	env := append(baseEnv(t),
		"AWS_ACCESS_KEY_ID="+testCreds.AccessKey, "AWS_SECRET_ACCESS_KEY="+testCreds.SecretKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=")
	a := func(args ...string) string {
		return run(t, env, awsBin, append([]string{"--endpoint-url", url}, args...)...)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src.txt")
	if err := os.WriteFile(src, []byte("via awscli\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("w", 600)
	a("s3", "mb", "s3://cli-long")
	a("s3", "cp", src, "s3://cli-long/d/"+long+"/f.txt")
	if ls := a("s3", "ls", "--recursive", "s3://cli-long/"); !strings.Contains(ls, "d/"+long+"/f.txt") {
		t.Errorf("aws s3 ls misses the long key:\n%.300s", ls)
	}
	if ls := a("s3", "ls", "s3://cli-long/d/"); !strings.Contains(ls, "PRE "+long+"/") {
		t.Errorf("aws s3 ls misses the long folder:\n%.300s", ls)
	}
	dst := filepath.Join(dir, "dst.txt")
	a("s3", "cp", "s3://cli-long/d/"+long+"/f.txt", dst)
	if got, _ := os.ReadFile(dst); string(got) != "via awscli\n" {
		t.Errorf("downloaded %q", got)
	}
	a("s3", "rm", "--recursive", "s3://cli-long/")
	a("s3", "rb", "s3://cli-long")
}
