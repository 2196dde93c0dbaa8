package fakeobs

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Tests of the S3 and OBS behaviours that tools rely on, each through the
// Go SDK or a raw signed request (real CLI clients are in clients_test.go).

func TestFolderMarkerKeys(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "fmark")
	// The OBS console and mox.file.make_dirs create folders as empty
	// objects whose key ends in '/'.
	e.put(t, "fmark", "data/train/", nil)
	e.put(t, "fmark", "data/train/x.bin", []byte("x"))
	e.put(t, "fmark", "empty-dir/", nil)
	head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("fmark"), Key: aws.String("data/train/")})
	if err != nil || aws.ToInt64(head.ContentLength) != 0 {
		t.Fatalf("head folder marker: %v %+v", err, head)
	}
	out, err := e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("fmark")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range out.Contents {
		keys = append(keys, aws.ToString(c.Key))
	}
	if want := "data/train/ data/train/x.bin empty-dir/"; strings.Join(keys, " ") != want {
		t.Errorf("keys %q, want %q", keys, want)
	}
	out, err = e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("fmark"), Prefix: aws.String("data/"), Delimiter: aws.String("/")})
	if err != nil || len(out.CommonPrefixes) != 1 || aws.ToString(out.CommonPrefixes[0].Prefix) != "data/train/" || len(out.Contents) != 0 {
		t.Errorf("delimited list: %v %+v", err, out)
	}
	// Deleting the marker leaves the objects under it.
	if _, err := e.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("fmark"), Key: aws.String("data/train/")}); err != nil {
		t.Fatal(err)
	}
	if got := e.get(t, "fmark", "data/train/x.bin"); string(got) != "x" {
		t.Errorf("object under deleted marker: %q", got)
	}
	if _, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("fmark"), Key: aws.String("data/train/")}); err == nil {
		t.Error("deleted folder marker still there")
	}
}

// rawList sends a signed GET of path?query and decodes the XML into v.
func rawList(t *testing.T, e *testEnv, pathQuery string, v any) {
	t.Helper()
	resp := signAndDo(t, mustReq(t, http.MethodGet, e.srv.URL+pathQuery, nil), nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", pathQuery, resp.StatusCode, body)
	}
	if err := xml.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", pathQuery, err, body)
	}
}

func TestListEncodingAndTokens(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "enc")
	e.put(t, "enc", "a+b c/é.txt", []byte("1"))
	e.put(t, "enc", "plain", []byte("2"))
	var v1 struct {
		Marker       *string
		EncodingType string
		Contents     []struct{ Key string }
	}
	rawList(t, e, "/enc?encoding-type=url", &v1)
	if len(v1.Contents) != 2 || v1.Contents[0].Key != "a%2Bb+c/%C3%A9.txt" || v1.EncodingType != "url" || v1.Marker == nil {
		t.Errorf("V1 url-encoded list: %+v", v1)
	}
	var v2 struct {
		ContinuationToken     *string
		NextContinuationToken string
		KeyCount              int
		IsTruncated           bool
		CommonPrefixes        []struct{ Prefix string }
	}
	rawList(t, e, "/enc?list-type=2&encoding-type=url&delimiter=/&continuation-token=", &v2)
	if v2.ContinuationToken == nil || *v2.ContinuationToken != "" || len(v2.CommonPrefixes) != 1 || v2.CommonPrefixes[0].Prefix != "a%2Bb+c/" || v2.KeyCount != 2 {
		t.Errorf("V2 list with empty token: %+v", v2)
	}
	// Paging by token with the SDK, which decodes url-encoded keys itself
	// only when asked: keys come back raw without EncodingType.
	ctx := testCtx(t)
	out, err := e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("enc"), MaxKeys: aws.Int32(1)})
	if err != nil || !aws.ToBool(out.IsTruncated) || aws.ToString(out.Contents[0].Key) != "a+b c/é.txt" {
		t.Fatalf("page 1: %v %+v", err, out)
	}
	out, err = e.s3.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("enc"), MaxKeys: aws.Int32(1), ContinuationToken: out.NextContinuationToken})
	if err != nil || aws.ToBool(out.IsTruncated) || aws.ToString(out.Contents[0].Key) != "plain" {
		t.Fatalf("page 2: %v %+v", err, out)
	}
	resp := signAndDo(t, mustReq(t, http.MethodGet, e.srv.URL+"/enc?encoding-type=base64", nil), nil)
	if resp.StatusCode != http.StatusBadRequest || errCode(t, resp) != "InvalidArgument" {
		t.Errorf("bad encoding-type: %d", resp.StatusCode)
	}
}

func TestListBucketsAndLocation(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	for _, b := range []string{"lb-a", "lb-b", "lb-c"} {
		e.mkBucket(t, b)
	}
	var names []string
	var token *string
	for page := 0; ; page++ {
		out, err := e.s3.ListBuckets(ctx, &s3.ListBucketsInput{MaxBuckets: aws.Int32(2), ContinuationToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Buckets) > 2 {
			t.Fatalf("page %d has %d buckets with max-buckets=2", page, len(out.Buckets))
		}
		for _, b := range out.Buckets {
			names = append(names, aws.ToString(b.Name))
		}
		if token = out.ContinuationToken; token == nil || page > 3 {
			break
		}
	}
	if strings.Join(names, ",") != "lb-a,lb-b,lb-c" {
		t.Errorf("paged buckets %v", names)
	}
	loc, err := e.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("lb-a")})
	if err != nil || loc.LocationConstraint != "" {
		t.Errorf("location of a us-east-1 bucket: %v %q", err, loc.LocationConstraint)
	}
	var raw struct {
		XMLName xml.Name `xml:"LocationConstraint"`
	}
	rawList(t, e, "/lb-a?location", &raw) // an XML answer, not an empty body
	_, err = e.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("nope")})
	if apiCode(err) != "NoSuchBucket" {
		t.Errorf("location of a missing bucket: %v", err)
	}

	// A store in another region names it, and refuses signatures scoped to
	// any other (S3: AuthorizationHeaderMalformed naming the right region).
	creds := testCreds
	creds.Region = "cn-north-4"
	e2 := newTestEnv(t, WithCredentials(creds))
	c := s3.New(s3.Options{Region: "cn-north-4", BaseEndpoint: aws.String(e2.srv.URL), UsePathStyle: true,
		Credentials: e2.s3.Options().Credentials, RetryMaxAttempts: 1})
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("reg")}); err != nil {
		t.Fatal(err)
	}
	loc, err = c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String("reg")})
	if err != nil || loc.LocationConstraint != "cn-north-4" {
		t.Errorf("location: %v %q", err, loc.LocationConstraint)
	}
	_, err = e2.s3.ListBuckets(ctx, &s3.ListBucketsInput{}) // signed for us-east-1
	if apiCode(err) != "AuthorizationHeaderMalformed" || !strings.Contains(err.Error(), "expecting 'cn-north-4'") {
		t.Errorf("wrong region: %v", err)
	}
}

func TestCreateOwnedBucket(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "mine")
	_, err := e.s3.CreateBucket(testCtx(t), &s3.CreateBucketInput{Bucket: aws.String("mine")})
	if apiCode(err) != "BucketAlreadyOwnedByYou" || !strings.Contains(err.Error(), "409") {
		t.Errorf("create owned bucket: %v", err)
	}
}

func TestStoredHeadersAndMetadata(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "hdr")
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("hdr"), Key: aws.String("k"), Body: strings.NewReader("gz"),
		CacheControl: aws.String("max-age=3600, public"), Expires: &expires, ContentEncoding: aws.String("gzip"),
		ContentLanguage: aws.String("fr"), Metadata: map[string]string{"greeting": "Hello Worldé"},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := mustReq(t, http.MethodGet, e.srv.URL+"/hdr/k", nil)
	req.Header.Set("Accept-Encoding", "identity")
	resp := signAndDo(t, req, nil)
	h := resp.Header
	if h.Get("Cache-Control") != "max-age=3600, public" || h.Get("Content-Encoding") != "gzip" || h.Get("Content-Language") != "fr" {
		t.Errorf("headers: %v", h)
	}
	if got, err := http.ParseTime(h.Get("Expires")); err != nil || !got.Equal(expires) {
		t.Errorf("Expires %q", h.Get("Expires"))
	}
	// Non-ASCII values come back RFC 2047-encoded, as S3 sends them.
	enc := h.Get("X-Amz-Meta-Greeting")
	if dec, err := new(mime.WordDecoder).DecodeHeader(enc); err != nil || dec != "Hello Worldé" {
		t.Errorf("metadata %q decodes to %q (%v)", enc, dec, err)
	}
	// The same sent RFC 2047-encoded, or as ISO-8859-1 bytes (Python's
	// http.client), is kept as the same text.
	for i, v := range []string{mime.BEncoding.Encode("UTF-8", "Hello Worldé"), "Hello World\xe9"} {
		req := mustReq(t, http.MethodPut, fmt.Sprintf("%s/hdr/m%d", e.srv.URL, i), nil)
		req.Header.Set("X-Amz-Meta-Greeting", v)
		if resp := signAndDo(t, req, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("put %d: %d", i, resp.StatusCode)
		}
		head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("hdr"), Key: aws.String(fmt.Sprintf("m%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if dec, _ := new(mime.WordDecoder).DecodeHeader(head.Metadata["greeting"]); dec != "Hello Worldé" {
			t.Errorf("metadata sent as %q came back as %q", v, head.Metadata["greeting"])
		}
	}
}

func TestConditionalGet(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "cond")
	e.put(t, "cond", "k", []byte("conditional"))
	etag := `"` + md5hex([]byte("conditional")) + `"`
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for _, c := range []struct {
		name string
		in   s3.GetObjectInput
		want int
	}{
		{"If-Match wrong", s3.GetObjectInput{IfMatch: aws.String(`"0000"`)}, 412},
		{"If-Match right", s3.GetObjectInput{IfMatch: aws.String(etag)}, 200},
		{"If-Unmodified-Since past", s3.GetObjectInput{IfUnmodifiedSince: &past}, 412},
		{"If-Match right wins over If-Unmodified-Since", s3.GetObjectInput{IfMatch: aws.String(etag), IfUnmodifiedSince: &past}, 200},
		{"If-None-Match same", s3.GetObjectInput{IfNoneMatch: aws.String(etag)}, 304},
		{"If-None-Match other", s3.GetObjectInput{IfNoneMatch: aws.String(`"x"`)}, 200},
		{"If-Modified-Since future", s3.GetObjectInput{IfModifiedSince: &future}, 304},
		{"If-Modified-Since past", s3.GetObjectInput{IfModifiedSince: &past}, 200},
	} {
		in := c.in
		in.Bucket, in.Key = aws.String("cond"), aws.String("k")
		out, err := e.s3.GetObject(ctx, &in)
		got := 200
		if err != nil {
			var re interface{ HTTPStatusCode() int }
			if !errors.As(err, &re) {
				t.Fatalf("%s: %v", c.name, err)
			}
			got = re.HTTPStatusCode()
		} else {
			out.Body.Close()
		}
		if got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
}

func TestRangeLenient(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "rlen")
	e.put(t, "rlen", "ten", []byte("0123456789"))
	for _, c := range []struct {
		rng, body, contentRange string
		status                  int
	}{
		{"bytes=-100", "0123456789", "bytes 0-9/10", 206},
		{"bytes=-3", "789", "bytes 7-9/10", 206},
		{"bytes=abc", "0123456789", "", 200},
		{"bytes=1-2,4-5", "0123456789", "", 200},
		{"items=0-1", "0123456789", "", 200},
		{"bytes=10-", "", "bytes */10", 416},
	} {
		req := mustReq(t, http.MethodGet, e.srv.URL+"/rlen/ten", nil)
		req.Header.Set("Range", c.rng)
		resp := signAndDo(t, req, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Range") != c.contentRange || (c.status != 416 && string(body) != c.body) {
			t.Errorf("%s: %d %q %q, want %d %q %q", c.rng, resp.StatusCode, resp.Header.Get("Content-Range"), body, c.status, c.contentRange, c.body)
		}
	}
}

// uploadParts uploads parts as one multipart upload and returns its id and
// the completed-part list.
func uploadParts(t *testing.T, e *testEnv, bucket, key string, parts [][]byte) (*string, []types.CompletedPart) {
	t.Helper()
	ctx := testCtx(t)
	cr, err := e.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	var done []types.CompletedPart
	for i, p := range parts {
		out, err := e.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		done = append(done, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
	}
	return cr.UploadId, done
}

func TestMultipartBehaviours(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "mpb")
	parts := [][]byte{randBytes(1, 200<<10), randBytes(2, 200<<10), randBytes(3, 1000)}
	id, done := uploadParts(t, e, "mpb", "obj", parts)

	// Re-sending part 1 after part 2 finished: the last one sent counts.
	resent := randBytes(4, 200<<10)
	out, err := e.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("mpb"), Key: aws.String("obj"), UploadId: id, PartNumber: aws.Int32(1), Body: bytes.NewReader(resent)})
	if err != nil {
		t.Fatal(err)
	}
	done[0].ETag = out.ETag
	parts[0] = resent
	in := &s3.CompleteMultipartUploadInput{Bucket: aws.String("mpb"), Key: aws.String("obj"), UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}
	first, err := e.s3.CompleteMultipartUpload(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	// A retried Complete answers as the first did.
	again, err := e.s3.CompleteMultipartUpload(ctx, in)
	if err != nil || aws.ToString(again.ETag) != aws.ToString(first.ETag) {
		t.Errorf("repeated complete: %v %s, want %s", err, aws.ToString(again.ETag), aws.ToString(first.ETag))
	}
	if got := e.get(t, "mpb", "obj"); !bytes.Equal(got, bytes.Join(parts, nil)) {
		t.Fatal("object differs")
	}

	// partNumber GET returns that part and the number of parts.
	for n, p := range parts {
		g, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("mpb"), Key: aws.String("obj"), PartNumber: aws.Int32(int32(n + 1))})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(g.Body)
		g.Body.Close()
		if !bytes.Equal(body, p) || aws.ToInt32(g.PartsCount) != 3 {
			t.Errorf("part %d: %d bytes, PartsCount %d", n+1, len(body), aws.ToInt32(g.PartsCount))
		}
	}
	h, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("mpb"), Key: aws.String("obj"), PartNumber: aws.Int32(2)})
	if err != nil || aws.ToInt64(h.ContentLength) != 200<<10 || aws.ToInt32(h.PartsCount) != 3 {
		t.Errorf("head part 2: %v %+v", err, h)
	}
	_, err = e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("mpb"), Key: aws.String("obj"), PartNumber: aws.Int32(4)})
	if apiCode(err) != "InvalidPartNumber" {
		t.Errorf("part past the last: %v", err)
	}

	// A part other than the last under OBS's 100 KB minimum is refused at
	// completion.
	small := [][]byte{randBytes(5, 50<<10), randBytes(6, 10)}
	id, done = uploadParts(t, e, "mpb", "small", small)
	_, err = e.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("mpb"), Key: aws.String("small"), UploadId: id, MultipartUpload: &types.CompletedMultipartUpload{Parts: done}})
	if apiCode(err) != "EntityTooSmall" {
		t.Errorf("small part: %v", err)
	}
	// An oversized Complete body is refused before it is parsed.
	huge := "<CompleteMultipartUpload>" + strings.Repeat("<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>", 250_000) + "</CompleteMultipartUpload>"
	resp := signAndDo(t, mustReq(t, http.MethodPost, e.srv.URL+"/mpb/small?uploadId="+*id, strings.NewReader(huge)), []byte(huge))
	if resp.StatusCode != http.StatusBadRequest || errCode(t, resp) != "MalformedXML" {
		t.Errorf("huge complete body: %d", resp.StatusCode)
	}
}

func TestUploadPartCopyBadRange(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "upc")
	e.put(t, "upc", "src", randBytes(7, 1000))
	cr, err := e.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("upc"), Key: aws.String("dst")})
	if err != nil {
		t.Fatal(err)
	}
	for _, rng := range []string{"bytes=abc", "bytes=5-1", "0-10", "bytes=0-5000"} {
		_, err := e.s3.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String("upc"), Key: aws.String("dst"), UploadId: cr.UploadId,
			PartNumber: aws.Int32(1), CopySource: aws.String("upc/src"), CopySourceRange: aws.String(rng)})
		if apiCode(err) != "InvalidArgument" || !strings.Contains(err.Error(), "400") {
			t.Errorf("%s: %v", rng, err)
		}
	}
}

func TestMultiDeleteLimit(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "mdel")
	var objs []types.ObjectIdentifier
	for i := range 1001 {
		objs = append(objs, types.ObjectIdentifier{Key: aws.String(fmt.Sprintf("k%d", i))})
	}
	_, err := e.s3.DeleteObjects(testCtx(t), &s3.DeleteObjectsInput{Bucket: aws.String("mdel"), Delete: &types.Delete{Objects: objs}})
	if apiCode(err) != "MalformedXML" {
		t.Errorf("1001 keys: %v", err)
	}
	e.put(t, "mdel", "k0", []byte("x"))
	out, err := e.s3.DeleteObjects(testCtx(t), &s3.DeleteObjectsInput{Bucket: aws.String("mdel"), Delete: &types.Delete{Objects: objs[:1000]}})
	if err != nil || len(out.Deleted) != 1000 {
		t.Errorf("1000 keys: %v", err)
	}
}

func TestChunkedPutWithoutLength(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "chunk")
	data := randBytes(8, 3<<20)
	for _, signTE := range []bool{false, true} {
		// An io.Reader of unknown length makes net/http send the body
		// with Transfer-Encoding: chunked and no Content-Length.
		req := mustReq(t, http.MethodPut, e.srv.URL+"/chunk/k", io.MultiReader(bytes.NewReader(data)))
		req.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
		sum := md5.Sum(data)
		req.Header.Set("Content-Md5", base64.StdEncoding.EncodeToString(sum[:]))
		if signTE {
			req.TransferEncoding = []string{"chunked"}
			req.Header.Set("Transfer-Encoding", "chunked")
		}
		if err := v4.NewSigner().SignHTTP(context.Background(), awsCreds(testCreds), req, unsignedPayload, "s3", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		if signTE {
			req.Header.Del("Transfer-Encoding")
		}
		resp := do(t, req)
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("chunked put (transfer-encoding signed: %v): %d %s", signTE, resp.StatusCode, body)
		}
		if got := e.get(t, "chunk", "k"); !bytes.Equal(got, data) {
			t.Errorf("stored %d bytes, want %d", len(got), len(data))
		}
	}
}

// boto3BehaviourScript drives the behaviours above through boto3, whose
// list calls send EncodingType=url and decode the keys they get back.
const boto3BehaviourScript = `
import sys, email.header
import boto3, botocore
url, ak, sk = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
s3.create_bucket(Bucket="bhv")
try:
    s3.create_bucket(Bucket="bhv")
    raise SystemExit("second create_bucket succeeded")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
assert s3.get_bucket_location(Bucket="bhv")["LocationConstraint"] is None
s3.put_object(Bucket="bhv", Key="folder/", Body=b"")
s3.put_object(Bucket="bhv", Key="folder/a+b c.txt", Body=b"1", Metadata={"greeting": email.header.Header("Hello Worldé", "utf-8").encode()},
              CacheControl="no-cache", ContentEncoding="gzip")
keys = [c["Key"] for c in s3.list_objects(Bucket="bhv")["Contents"]]
assert keys == ["folder/", "folder/a+b c.txt"], keys
keys = [c["Key"] for c in s3.list_objects_v2(Bucket="bhv", Prefix="folder/a+")["Contents"]]
assert keys == ["folder/a+b c.txt"], keys
h = s3.head_object(Bucket="bhv", Key="folder/a+b c.txt")
(raw, cs), = email.header.decode_header(h["Metadata"]["greeting"])
assert raw.decode(cs) == "Hello Worldé", h["Metadata"]
assert h["CacheControl"] == "no-cache" and h["ContentEncoding"] == "gzip", h
try:
    s3.get_object(Bucket="bhv", Key="folder/a+b c.txt", IfMatch='"0123"')
    raise SystemExit("If-Match with a wrong ETag returned the object")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
up = s3.create_multipart_upload(Bucket="bhv", Key="mp")
parts = []
for n, body in [(1, b"a" * (100 << 10)), (2, b"b" * 10)]:
    r = s3.upload_part(Bucket="bhv", Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=body)
    parts.append({"PartNumber": n, "ETag": r["ETag"]})
done = [s3.complete_multipart_upload(Bucket="bhv", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})["ETag"] for _ in range(2)]
assert done[0] == done[1], done
g = s3.get_object(Bucket="bhv", Key="mp", PartNumber=2)
assert g["PartsCount"] == 2 and g["Body"].read() == b"b" * 10, g
print("boto3 behaviours ok")
`

func TestClientBoto3Behaviours(t *testing.T) {
	py := requireBoto3(t)
	url, _ := serveLoopback(t)
	script := filepath.Join(t.TempDir(), "behaviours.py")
	if err := os.WriteFile(script, []byte(boto3BehaviourScript), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(baseEnv(t), "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	if out := run(t, env, py, script, url, testCreds.AccessKey, testCreds.SecretKey); !strings.Contains(out, "boto3 behaviours ok") {
		t.Fatalf("boto3 script: %s", out)
	}
}
