package fakeobs

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// jobGrants are a job's: code and data read-only, output read-write.
var jobGrants = []Grant{
	{Bucket: "work", Prefix: "code/"},
	{Bucket: "work", Prefix: "data"},
	{Bucket: "work", Prefix: "out/", Write: true},
}

func newKeyEnv(t *testing.T) (*testEnv, *KeyStore, string) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "job-keys.json")
	ks, err := OpenKeyStore(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, WithKeyStore(ks))
	e.mkBucket(t, "work")
	e.mkBucket(t, "other")
	for _, k := range []string{"code/main.py", "data/train.csv", "datax/secret", "secret/k", "out/old"} {
		e.put(t, "work", k, []byte("content of "+k))
	}
	e.put(t, "other", "code/main.py", []byte("another user's"))
	return e, ks, keyFile
}

func jobClient(t *testing.T, e *testEnv, ks *KeyStore, job string) *s3.Client {
	t.Helper()
	ak, sk, err := ks.Issue(job, jobGrants)
	if err != nil {
		t.Fatal(err)
	}
	return newS3Client(e.srv.URL, Credentials{AccessKey: ak, SecretKey: sk})
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if apiCode(err) != "AccessDenied" {
		t.Errorf("%s: got %v, want AccessDenied", what, err)
	}
}

func TestJobKeyReachesOnlyItsGrants(t *testing.T) {
	e, ks, _ := newKeyEnv(t)
	c := jobClient(t, e, ks, "job-1")
	ctx := testCtx(t)
	s := aws.String

	// Its own dirs: read code and data, list under them, write the output.
	for _, k := range []string{"code/main.py", "data/train.csv"} {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: s("work"), Key: s(k)})
		if err != nil {
			t.Fatalf("get own %s: %v", k, err)
		}
		b, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(b) != "content of "+k {
			t.Errorf("%s: %q", k, b)
		}
	}
	ls, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: s("work"), Prefix: s("data/"), Delimiter: s("/")})
	if err != nil || len(ls.Contents) != 1 || *ls.Contents[0].Key != "data/train.csv" {
		t.Fatalf("list own data dir: %v %v", err, ls)
	}
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: s("work")}); err != nil {
		t.Errorf("head own bucket: %v", err)
	}
	if _, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: s("work")}); err != nil {
		t.Errorf("location of own bucket: %v", err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: s("work"), Key: s("out/model.bin"), Body: bytes.NewReader([]byte("weights"))}); err != nil {
		t.Fatalf("put to own output: %v", err)
	}
	if _, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: s("work"), Key: s("out/main.py"), CopySource: s("work/code/main.py")}); err != nil {
		t.Errorf("copy own code into output: %v", err)
	}
	// A multipart upload into the output dir.
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: s("work"), Key: s("out/big")})
	if err != nil {
		t.Fatalf("multipart into output: %v", err)
	}
	part, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: s("work"), Key: s("out/big"), UploadId: mp.UploadId, PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("part"))})
	if err != nil {
		t.Fatalf("upload part: %v", err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: s("work"), Key: s("out/big"), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: part.ETag, PartNumber: aws.Int32(1)}}}}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: s("work"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: s("out/old")}}}}); err != nil {
		t.Errorf("delete in own output: %v", err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: s("work"), Key: s("out/big")}); err != nil {
		t.Errorf("delete own output object: %v", err)
	}

	// Everything else.
	_, err = c.ListBuckets(ctx, &s3.ListBucketsInput{})
	wantDenied(t, "list buckets", err)
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: s("other"), Key: s("code/main.py")})
	wantDenied(t, "read another bucket", err)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: s("other"), Key: s("out/x"), Body: strings.NewReader("x")})
	wantDenied(t, "write another bucket", err)
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: s("work"), Key: s("secret/k")})
	wantDenied(t, "read another prefix", err)
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: s("work"), Key: s("datax/secret")})
	wantDenied(t, "read a sibling that shares the prefix's name", err)
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: s("work")})
	wantDenied(t, "list the whole bucket", err)
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: s("work"), Prefix: s("data")})
	wantDenied(t, "list a prefix that reaches datax/", err)
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: s("work"), Key: s("code/evil.py"), Body: strings.NewReader("x")})
	wantDenied(t, "write the read-only code dir", err)
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: s("work"), Key: s("data/train.csv")})
	wantDenied(t, "delete in the read-only data dir", err)
	_, err = c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: s("work"), Delete: &types.Delete{Objects: []types.ObjectIdentifier{{Key: s("out/model.bin")}, {Key: s("secret/k")}}}})
	wantDenied(t, "a batch delete naming another prefix", err)
	_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: s("work"), Key: s("out/stolen"), CopySource: s("other/code/main.py")})
	wantDenied(t, "copy from another bucket into the output", err)
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: s("mine")})
	wantDenied(t, "create a bucket", err)
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: s("other")})
	if err == nil {
		t.Error("head another bucket: allowed")
	}

	// Nothing of the denied writes happened.
	if got := string(e.get(t, "work", "data/train.csv")); got != "content of data/train.csv" {
		t.Errorf("data changed: %q", got)
	}
	if got := string(e.get(t, "work", "secret/k")); got != "content of secret/k" {
		t.Errorf("secret changed: %q", got)
	}
	// The emulator's own key still reaches everything.
	if _, err := e.s3.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
		t.Errorf("master key: %v", err)
	}
}

func TestJobKeyPresignedAndV2(t *testing.T) {
	e, ks, _ := newKeyEnv(t)
	c := jobClient(t, e, ks, "job-p")
	ps := s3.NewPresignClient(c)
	ctx := testCtx(t)
	for key, want := range map[string]int{"code/main.py": 200, "secret/k": 403} {
		req, err := ps.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("work"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(req.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("presigned GET %s: %d, want %d", key, resp.StatusCode, want)
		}
	}
}

func TestJobKeyRevokedAndPersisted(t *testing.T) {
	e, ks, keyFile := newKeyEnv(t)
	ctx := testCtx(t)
	ak, sk, err := ks.Issue("job-r", jobGrants)
	if err != nil {
		t.Fatal(err)
	}
	if ak2, sk2, _ := ks.Issue("job-r", nil); ak2 != ak || sk2 != sk {
		t.Error("a second Issue of a job made a new key")
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}

	// A new store on the same file (the emulator restarted) knows the key.
	ks2, err := OpenKeyStore(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	svc2, err := New(e.root, WithCredentials(testCreds), WithKeyStore(ks2))
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(svc2.Handler())
	defer srv2.Close()
	c2 := newS3Client(srv2.URL, Credentials{AccessKey: ak, SecretKey: sk})
	if _, err := c2.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("work"), Key: aws.String("code/main.py")}); err != nil {
		t.Fatalf("key after a restart: %v", err)
	}
	_, err = c2.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("work"), Key: aws.String("secret/k")})
	wantDenied(t, "grants after a restart", err)

	if err := ks2.Revoke("job-r"); err != nil {
		t.Fatal(err)
	}
	_, err = c2.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("work"), Key: aws.String("code/main.py")})
	if apiCode(err) != "InvalidAccessKeyId" {
		t.Errorf("revoked key: %v, want InvalidAccessKeyId", err)
	}
	ks3, err := OpenKeyStore(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks3.Jobs()) != 0 {
		t.Errorf("revoked key back after a restart: %v", ks3.Jobs())
	}
	if err := ks3.Revoke("job-r"); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	if _, _, err := ks3.Issue("job-x", []Grant{{Bucket: "Bad_Bucket"}}); err == nil || !strings.Contains(err.Error(), "Bad_Bucket") {
		t.Errorf("bad bucket in a grant: %v", err)
	}
}

func TestPresignedAnswerHasNoWildcardCORS(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "pub")
	e.put(t, "pub", "k", []byte("v"))
	req, err := s3.NewPresignClient(e.s3).PresignGetObject(testCtx(t), &s3.GetObjectInput{Bucket: aws.String("pub"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	hr, _ := http.NewRequest(http.MethodGet, req.URL, nil)
	hr.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "v" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, b)
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("presigned answer carries %s: %s", k, resp.Header.Get(k))
		}
	}
}
