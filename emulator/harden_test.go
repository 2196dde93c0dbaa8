package emulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/malocal/malocal/jobs"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/malocal/malocal/audit"
)

func TestDataDirWritableByOthersRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureDataDir(dir)
	if err == nil || !strings.Contains(err.Error(), "chmod 700 "+dir) || !strings.Contains(err.Error(), "0777") {
		t.Fatalf("EnsureDataDir of a 0777 dir: %v", err)
	}
	// Made private as told, it is used.
	os.Chmod(dir, 0o700)
	if _, err := EnsureDataDir(dir); err != nil {
		t.Fatal(err)
	}
	// The CLI refuses it too, once it has become writable again.
	os.Chmod(dir, 0o770)
	if _, err := OpenDataDir(dir); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Fatalf("OpenDataDir of a 0770 dir: %v", err)
	}
}

func TestDataDirReadableByOthersMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.Mkdir(dir, 0o700)
	os.Chmod(dir, 0o755)
	if _, err := EnsureDataDir(dir); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %04o, want 0700", fi.Mode().Perm())
	}
	for _, f := range []string{layoutFile, credentialsFile, tokenFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f, fi.Mode(), err)
		}
	}
}

func TestAuditLogsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit", "logs")
	if err := audit.AppendLog(dir, &audit.Report{ManifestDigest: "sha256:abcd"}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		di, _ := os.Stat(dir)
		fi, err := os.Stat(filepath.Join(dir, "abcd.log"))
		if err != nil || di.Mode().Perm() != 0o700 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: dir %04o, log %v %v; want 0700 and 0600", when, di.Mode().Perm(), fi, err)
		}
	}
	check("written")
	// An older malocal's 0755/0644 logs are made private at start.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Join(dir, "abcd.log"), 0o644)
	if err := tightenTree(dir); err != nil {
		t.Fatal(err)
	}
	check("tightened")
}

// The emulator's listeners hold at most their bound: an idle connection
// makes room for a new one, a flood on the S3 port does not reach the API,
// and idle connections are closed after the idle timeout.
func TestListenersBoundedAndIdleClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConns = 2
	cfg.IdleTimeout = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go e.Wait(ctx)
	s3addr := e.Runtime().S3
	get := func(c net.Conn) int {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // unauthenticated: 403, kept alive
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("S3 request: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", s3addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := get(c); got != http.StatusForbidden {
			t.Fatalf("conn %d: %d", i, got)
		}
		held = append(held, c)
	}
	// The third took the place of an idle one: two are left open.
	open := 0
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	if open != 2 {
		t.Errorf("%d connections open on an S3 listener bounded at 2", open)
	}
	// The API is not starved by the S3 flood.
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.Runtime().API+"/api/v1/status", nil)
	tok, _ := e.dd.Token()
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API while S3 is full: %v %v", resp, err)
	}
	resp.Body.Close()
	// The held connections are closed after the idle timeout.
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("idle connection not closed: %v", err)
			}
		}
	}
}

// A job's key survives a restart of the emulator and stops working when
// revoked.
func TestJobCredentials(t *testing.T) {
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	e, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	creds, _ := e.dd.Credentials()
	master := s3Client(e.Runtime().S3, creds.AccessKey, creds.SecretKey)
	for _, b := range []string{"mine", "theirs"} {
		if _, err := master.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
		if _, err := master.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("code/a.py"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	ak, sk, err := e.svc.jobKeys.Issue(ctx, "job-1", []jobs.Grant{{Bucket: "mine", Prefix: "code/"}, {Bucket: "mine", Prefix: "out/", Write: true}})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	e.Wait(ctx)

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	e2, err := Start(ctx2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go e2.Wait(ctx2)
	job := s3Client(e2.Runtime().S3, ak, sk)
	if _, err := job.GetObject(ctx2, &s3.GetObjectInput{Bucket: aws.String("mine"), Key: aws.String("code/a.py")}); err != nil {
		t.Fatalf("job key after a restart: %v", err)
	}
	if _, err := job.PutObject(ctx2, &s3.PutObjectInput{Bucket: aws.String("mine"), Key: aws.String("out/m"), Body: strings.NewReader("m")}); err != nil {
		t.Fatalf("job key writing its output: %v", err)
	}
	_, err = job.GetObject(ctx2, &s3.GetObjectInput{Bucket: aws.String("theirs"), Key: aws.String("code/a.py")})
	if code := apiErrorCode(err); code != "AccessDenied" {
		t.Errorf("job key reading another bucket: %v", err)
	}
	if err := e2.svc.jobKeys.Revoke(ctx2, "job-1"); err != nil {
		t.Fatal(err)
	}
	_, err = job.GetObject(ctx2, &s3.GetObjectInput{Bucket: aws.String("mine"), Key: aws.String("code/a.py")})
	if code := apiErrorCode(err); code != "InvalidAccessKeyId" {
		t.Errorf("revoked key: %v", err)
	}
}

func s3Client(addr, ak, sk string) *s3.Client {
	return s3.New(s3.Options{
		Region: DefaultRegion, BaseEndpoint: aws.String("http://" + addr), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1,
	})
}

func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// A signed-out console session stays ended across a restart of the
// emulator; the file keeping it is private.
func TestRevokedSessionsKept(t *testing.T) {
	dd, err := EnsureDataDir(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := openRevokedSessions(dd)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke("gone", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke("old", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	r2, err := openRevokedSessions(dd)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.IsRevoked("gone") || r2.IsRevoked("other") {
		t.Error("revocations not kept across a reopen")
	}
	fi, err := os.Stat(dd.Sub(revokedSessionsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v %v", revokedSessionsFile, fi, err)
	}
}
