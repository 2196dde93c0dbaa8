package fakeobs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// childRootEnv makes the test binary a bare server on that root (see
// TestMain): the crash test kills it with SIGKILL and starts it again.
const childRootEnv = "FAKEOBS_TEST_CHILD_ROOT"

func TestMain(m *testing.M) {
	if root := os.Getenv(childRootEnv); root != "" {
		childServe(root)
		return
	}
	os.Exit(m.Run())
}

func childServe(root string) {
	svc, err := New(root, WithCredentials(testCreds))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", ln.Addr().String())
	_ = http.Serve(ln, svc.Handler())
}

type child struct {
	cmd *exec.Cmd
	url string
}

func startChild(t *testing.T, root string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRootEnv+"="+root)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if err != nil || !ok {
		t.Fatalf("child server did not start: %q %v", line, err)
	}
	return &child{cmd: cmd, url: "http://" + addr}
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

// slowPut starts a PUT (or UploadPart, with query) of size bytes whose body
// the caller feeds through the returned pipe; it never finishes unless fed.
func slowPut(t *testing.T, url string, size int64) *io.PipeWriter {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPut, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
	if err := v4.NewSigner().SignHTTP(context.Background(), awsCreds(testCreds), req, unsignedPayload, "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	return pw
}

// waitTemp waits until n temp files of at least min bytes exist: the
// server is then mid-way through writing n bodies.
func waitTemp(t *testing.T, root string, n int, min int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(filepath.Join(root, tmpDir))
		got := 0
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Size() >= min {
				got++
			}
		}
		if got >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server never had %d partial writes in progress", n)
}

// waitBytes waits until name holds want at off.
func waitBytes(t *testing.T, name string, off int64, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if f, err := os.Open(name); err == nil {
			n, _ := f.ReadAt(got, off)
			f.Close()
			if n == len(want) && bytes.Equal(got, want) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never held the %d bytes expected at %d", name, len(want), off)
}

func TestKill9DuringPutAndMultipart(t *testing.T) {
	root := t.TempDir()
	ctx := testCtx(t)
	c := startChild(t, root)
	cl := newS3Client(c.url, testCreds)
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("crash")}); err != nil {
		t.Fatal(err)
	}
	old := randBytes(50, 3<<20)
	if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("crash"), Key: aws.String("obj"), Body: bytes.NewReader(old)}); err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{randBytes(51, 5<<20), randBytes(52, 5<<20), randBytes(53, 2<<20)}
	cr, err := cl.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("crash"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	var etags []string
	for i, p := range parts[:2] {
		out, err := cl.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("crash"), Key: aws.String("mp"), UploadId: cr.UploadId, PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(p)})
		if err != nil {
			t.Fatal(err)
		}
		etags = append(etags, aws.ToString(out.ETag))
	}

	// Two writes in flight: a new version of obj and part 3. Kill -9 mid-way.
	newBody := randBytes(54, 8<<20)
	w1 := slowPut(t, c.url+"/crash/obj", int64(len(newBody)))
	w2 := slowPut(t, c.url+"/crash/mp?partNumber=3&uploadId="+aws.ToString(cr.UploadId), int64(len(parts[2])))
	go w1.Write(newBody[:4<<20])
	go w2.Write(parts[2][:1<<20])
	waitTemp(t, root, 1, 1<<20)
	// Part 3 is written in place, after parts 1 and 2 in the upload's data
	// (preallocated, so its size says nothing: wait for the bytes).
	waitBytes(t, filepath.Join(root, uploadsDir, aws.ToString(cr.UploadId), uploadData), 10<<20, parts[2][:64<<10])
	c.kill9(t)
	w1.CloseWithError(io.ErrClosedPipe)
	w2.CloseWithError(io.ErrClosedPipe)

	// Restart on the same root.
	c = startChild(t, root)
	cl = newS3Client(c.url, testCreds)
	out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("crash"), Key: aws.String("obj")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, old) {
		t.Fatalf("object after kill -9 during PUT: %d bytes, not the old %d", len(got), len(old))
	}
	assertNoTemp(t, root)
	lp, err := cl.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("crash"), Key: aws.String("mp"), UploadId: cr.UploadId})
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Parts) != 2 || aws.ToString(lp.Parts[0].ETag) != etags[0] || aws.ToString(lp.Parts[1].ETag) != etags[1] {
		t.Fatalf("parts after kill -9: %+v", lp.Parts)
	}
	p3, err := cl.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("crash"), Key: aws.String("mp"), UploadId: cr.UploadId, PartNumber: aws.Int32(3), Body: bytes.NewReader(parts[2])})
	if err != nil {
		t.Fatal(err)
	}
	etags = append(etags, aws.ToString(p3.ETag))
	var done []types.CompletedPart
	for i, e := range etags {
		done = append(done, types.CompletedPart{ETag: aws.String(e), PartNumber: aws.Int32(int32(i + 1))})
	}
	if _, err := cl.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("crash"), Key: aws.String("mp"), UploadId: cr.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done}}); err != nil {
		t.Fatal(err)
	}
	out, err = cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("crash"), Key: aws.String("mp")})
	if err != nil {
		t.Fatal(err)
	}
	h := md5.New()
	io.Copy(h, out.Body)
	out.Body.Close()
	if want := md5.Sum(bytes.Join(parts, nil)); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("upload finished after restart has the wrong content")
	}
}
