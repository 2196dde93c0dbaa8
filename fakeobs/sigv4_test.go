package fakeobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func awsCreds(c Credentials) aws.Credentials {
	return aws.Credentials{AccessKeyID: c.AccessKey, SecretAccessKey: c.SecretKey}
}

// signAndDo signs req with the test credentials (payload hashed when body is
// given) and sends it. The response body is read and closed.
func signAndDo(t *testing.T, req *http.Request, body []byte) *http.Response {
	t.Helper()
	sum := sha256.Sum256(body)
	ph := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", ph)
	if err := v4.NewSigner().SignHTTP(context.Background(), awsCreds(testCreds), req, ph, "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp
}

func errCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var e struct {
		Code string `xml:"Code"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := xml.Unmarshal(data, &e); err != nil {
		t.Fatalf("status %d, body not S3 XML: %q", resp.StatusCode, data)
	}
	return e.Code
}

func TestAuthRejects(t *testing.T) {
	e := newTestEnv(t)
	ctx := testCtx(t)
	e.mkBucket(t, "auth")
	e.put(t, "auth", "k", []byte("secret data"))

	resp := do(t, mustReq(t, http.MethodGet, e.srv.URL+"/auth/k", nil))
	if resp.StatusCode != http.StatusForbidden || errCode(t, resp) != "AccessDenied" {
		t.Errorf("anonymous GET: %d", resp.StatusCode)
	}
	bad := newS3Client(e.srv.URL, Credentials{AccessKey: testCreds.AccessKey, SecretKey: "wrong"})
	_, err := bad.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("auth"), Key: aws.String("k")})
	if apiCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v", err)
	}
	other := newS3Client(e.srv.URL, Credentials{AccessKey: "SOMEONEELSE", SecretKey: testCreds.SecretKey})
	_, err = other.ListBuckets(ctx, &s3.ListBucketsInput{})
	if apiCode(err) != "InvalidAccessKeyId" {
		t.Errorf("unknown access key: %v", err)
	}
	// A wrongly signed PUT must not change anything.
	_, err = bad.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("auth"), Key: aws.String("k"), Body: strings.NewReader("overwritten")})
	if apiCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("PUT with wrong secret: %v", err)
	}
	if string(e.get(t, "auth", "k")) != "secret data" {
		t.Error("a badly signed PUT changed the object")
	}
	// A tampered query invalidates the signature.
	req := mustReq(t, http.MethodGet, e.srv.URL+"/auth?list-type=2", nil)
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if err := v4.NewSigner().SignHTTP(ctx, awsCreds(testCreds), req, emptySHA256, "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = "list-type=2&prefix=x"
	if resp := do(t, req); resp.StatusCode != http.StatusForbidden || errCode(t, resp) != "SignatureDoesNotMatch" {
		t.Errorf("tampered query: %d", resp.StatusCode)
	}
	// An old signature is refused.
	req = mustReq(t, http.MethodGet, e.srv.URL+"/auth/k", nil)
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if err := v4.NewSigner().SignHTTP(ctx, awsCreds(testCreds), req, emptySHA256, "s3", "us-east-1", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if resp := do(t, req); errCode(t, resp) != "RequestTimeTooSkewed" {
		t.Errorf("hour-old signature: %d", resp.StatusCode)
	}
	// A payload that does not hash to the signed value is refused.
	body := []byte("real body")
	req = mustReq(t, http.MethodPut, e.srv.URL+"/auth/k", bytes.NewReader(body))
	fake := sha256.Sum256([]byte("other body"))
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(fake[:]))
	if err := v4.NewSigner().SignHTTP(ctx, awsCreds(testCreds), req, hex.EncodeToString(fake[:]), "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if resp := do(t, req); errCode(t, resp) != "XAmzContentSHA256Mismatch" {
		t.Errorf("payload hash mismatch: %d", resp.StatusCode)
	}
	if string(e.get(t, "auth", "k")) != "secret data" {
		t.Error("a PUT with a wrong payload hash changed the object")
	}
}

func mustReq(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestPresignExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	e := newTestEnv(t, withClock(func() time.Time { return clock() }))
	ctx := testCtx(t)
	e.mkBucket(t, "pre")
	e.put(t, "pre", "k", []byte("presigned"))
	ps := s3.NewPresignClient(e.s3)
	get, err := ps.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("pre"), Key: aws.String("k")}, s3.WithPresignExpires(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	resp := do(t, mustReq(t, http.MethodGet, get.URL, nil))
	if data, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(data) != "presigned" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, data)
	}
	put, err := ps.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("pre"), Key: aws.String("up")}, s3.WithPresignExpires(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if resp := do(t, mustReq(t, http.MethodPut, put.URL, strings.NewReader("via presign"))); resp.StatusCode != 200 {
		t.Fatalf("presigned PUT: %d", resp.StatusCode)
	}
	if string(e.get(t, "pre", "up")) != "via presign" {
		t.Error("presigned PUT stored wrong data")
	}
	// 11 minutes later the GET URL has expired.
	clock = func() time.Time { return now.Add(11 * time.Minute) }
	resp = do(t, mustReq(t, http.MethodGet, get.URL, nil))
	if resp.StatusCode != http.StatusForbidden || errCode(t, resp) != "AccessDenied" {
		t.Errorf("expired presigned GET: %d", resp.StatusCode)
	}
	clock = time.Now
	// Changing the key of a presigned URL breaks it.
	resp = do(t, mustReq(t, http.MethodGet, strings.Replace(get.URL, "/pre/k", "/pre/up", 1), nil))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("presigned URL for another key: %d", resp.StatusCode)
	}
}

// chunkedBody builds an aws-chunked body. With signed, each chunk carries a
// signature made by the SDK's own stream signer; corrupt flips a byte of the
// chunk with that index after signing.
func chunkedBody(t *testing.T, data []byte, chunk int, signed bool, seed []byte, at time.Time, corrupt int, trailer string) []byte {
	t.Helper()
	ss := v4.NewStreamSigner(awsCreds(testCreds), "s3", "us-east-1", seed)
	var out bytes.Buffer
	i := 0
	for off := 0; ; off += chunk {
		start := min(off, len(data))
		end := min(off+chunk, len(data))
		piece := append([]byte(nil), data[start:end]...)
		fmt.Fprintf(&out, "%x", len(piece))
		if signed {
			sig, err := ss.GetSignature(context.Background(), nil, piece, at)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, ";chunk-signature=%x", sig)
		}
		out.WriteString("\r\n")
		if i == corrupt && len(piece) > 0 {
			piece[0] ^= 0xff
		}
		out.Write(piece)
		if len(piece) == 0 {
			out.WriteString(trailer)
			out.WriteString("\r\n")
			break
		}
		out.WriteString("\r\n")
		i++
	}
	return out.Bytes()
}

func TestStreamingChunkSignatures(t *testing.T) {
	e := newTestEnv(t)
	e.mkBucket(t, "b-st")
	data := randBytes(30, 200000)
	put := func(key string, corrupt int) *http.Response {
		at := time.Now()
		req := mustReq(t, http.MethodPut, e.srv.URL+"/b-st/"+key, nil)
		req.Header.Set("X-Amz-Content-Sha256", streamingSigned)
		req.Header.Set("Content-Encoding", "aws-chunked")
		req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
		// Content-Length must be known before signing: build once to size it.
		probe := chunkedBody(t, data, 65536, true, make([]byte, 32), at, -1, "")
		req.ContentLength = int64(len(probe))
		if err := v4.NewSigner().SignHTTP(context.Background(), awsCreds(testCreds), req, streamingSigned, "s3", "us-east-1", at); err != nil {
			t.Fatal(err)
		}
		seed := signatureOf(t, req)
		body := chunkedBody(t, data, 65536, true, seed, at, corrupt, "")
		req.Body = io.NopCloser(bytes.NewReader(body))
		return do(t, req)
	}
	if resp := put("good", -1); resp.StatusCode != 200 {
		t.Fatalf("signed streaming PUT: %d %s", resp.StatusCode, readAll(resp))
	}
	if got := e.get(t, "b-st", "good"); !bytes.Equal(got, data) {
		t.Fatal("streamed object differs")
	}
	head, err := e.s3.HeadObject(testCtx(t), &s3.HeadObjectInput{Bucket: aws.String("b-st"), Key: aws.String("good")})
	if err != nil || aws.ToString(head.ContentEncoding) != "" {
		t.Errorf("aws-chunked leaked into stored Content-Encoding: %v %q", err, aws.ToString(head.ContentEncoding))
	}
	resp := put("bad", 2)
	if resp.StatusCode != http.StatusForbidden || errCode(t, resp) != "SignatureDoesNotMatch" {
		t.Fatalf("tampered chunk: %d", resp.StatusCode)
	}
	if _, err := e.s3.HeadObject(testCtx(t), &s3.HeadObjectInput{Bucket: aws.String("b-st"), Key: aws.String("bad")}); err == nil {
		t.Fatal("object with a tampered chunk was stored")
	}
	assertNoTemp(t, e.root)

	// The unsigned-payload-with-trailer form current SDKs send.
	at := time.Now()
	body := chunkedBody(t, data, 8192, false, nil, at, -1, "x-amz-checksum-crc32:AAAAAA==\r\n")
	req := mustReq(t, http.MethodPut, e.srv.URL+"/b-st/trailer", bytes.NewReader(body))
	req.Header.Set("X-Amz-Content-Sha256", streamingUnsignTr)
	req.Header.Set("Content-Encoding", "aws-chunked")
	req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
	req.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(len(data)))
	if err := v4.NewSigner().SignHTTP(context.Background(), awsCreds(testCreds), req, streamingUnsignTr, "s3", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	if resp := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("unsigned trailer PUT: %d %s", resp.StatusCode, readAll(resp))
	}
	if got := e.get(t, "b-st", "trailer"); !bytes.Equal(got, data) {
		t.Fatal("trailer-form object differs")
	}
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func signatureOf(t *testing.T, req *http.Request) []byte {
	t.Helper()
	auth := req.Header.Get("Authorization")
	i := strings.Index(auth, "Signature=")
	if i < 0 {
		t.Fatalf("no signature in %q", auth)
	}
	sig, err := hex.DecodeString(auth[i+len("Signature="):])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestSigV2DocExample checks V2 against the worked example in Amazon's
// documentation (RESTAuthentication, "Object GET").
func TestSigV2DocExample(t *testing.T) {
	req := mustReq(t, http.MethodGet, "http://s3.us-west-1.amazonaws.com/awsexamplebucket1/photos/puppy.jpg", nil)
	req.RequestURI = "/awsexamplebucket1/photos/puppy.jpg"
	req.Header.Set("Date", "Tue, 27 Mar 2007 19:36:42 +0000")
	req.Header.Set("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")
	s, ok := parseSigV2(req)
	if !ok {
		t.Fatal("V2 header not recognised")
	}
	if got, want := s.stringToSign(req), "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"; got != want {
		t.Fatalf("string to sign %q, want %q", got, want)
	}
	if !s.verify(req, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") {
		t.Error("documented signature does not verify")
	}
	if s.verify(req, "another secret") {
		t.Error("wrong secret verifies")
	}
}
