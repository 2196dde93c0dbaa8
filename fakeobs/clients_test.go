package fakeobs

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests drive real S3 clients from Debian (packages awscli, s3cmd,
// rclone, python3-boto3) against the handler on a real loopback listener.
// Under CI=true a missing client fails the test; elsewhere it skips.

func requireClient(t *testing.T, pkg string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if _, err := os.Stat(c); err == nil {
				return c
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	skipOutsideCI(t, candidates[0]+" not found: apt-get install "+pkg)
	return ""
}

// skipOutsideCI fails the test under CI (CI=true), where what it needs
// must be there, and skips it elsewhere, saying why.
func skipOutsideCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why + " (not CI, so skipping)")
}

// requireBoto3 returns the Python that has Debian's boto3 (not a separate
// python3 on PATH), as requireClient does for a command.
func requireBoto3(t *testing.T) string {
	t.Helper()
	py := requireClient(t, "python3-boto3", "/usr/bin/python3")
	if err := exec.Command(py, "-c", "import boto3").Run(); err != nil {
		skipOutsideCI(t, py+" cannot import boto3: apt-get install python3-boto3")
	}
	return py
}

// serveLoopback serves a fresh store on 127.0.0.1 and returns its URL.
func serveLoopback(t *testing.T) (string, *Service) {
	t.Helper()
	svc, err := New(t.TempDir(), WithCredentials(testCreds))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		svc.Close()
	})
	return "http://" + ln.Addr().String(), svc
}

// clientTree writes a small tree with awkward names and one file large
// enough for every client to use a multipart upload.
func clientTree(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"top.txt":                   []byte("top\n"),
		"sub/a.bin":                 randBytes(40, 70000),
		"sub/deeper/with space.txt": []byte("spaces\n"),
		"sub/ünï cødé 文件.txt":       []byte("unicode\n"),
		"plus+and=eq&amp.txt":       []byte("specials\n"),
		"empty":                     nil,
		"big/large.bin":             randBytes(41, 21<<20),
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

func checkTree(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	got := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		got[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s missing after round trip", name)
		} else if !bytes.Equal(g, data) {
			t.Errorf("%s differs after round trip (%d bytes, want %d)", name, len(g), len(data))
		}
	}
	if len(got) != len(want) {
		t.Errorf("round trip gave %d files, want %d", len(got), len(want))
	}
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func baseEnv(t *testing.T) []string {
	home := t.TempDir()
	return []string{"HOME=" + home, "PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
}

func TestClientAWSCLI(t *testing.T) {
	aws := requireClient(t, "awscli", "/usr/bin/aws", "aws")
	url, _ := serveLoopback(t)
	src, files := clientTree(t)
	env := append(baseEnv(t),
		"AWS_ACCESS_KEY_ID="+testCreds.AccessKey, "AWS_SECRET_ACCESS_KEY="+testCreds.SecretKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_ENDPOINT_URL="+url, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=")
	a := func(args ...string) string {
		return run(t, env, aws, append([]string{"--endpoint-url", url}, args...)...)
	}
	a("s3", "mb", "s3://aws-cli")
	a("s3", "cp", filepath.Join(src, "top.txt"), "s3://aws-cli/single/top.txt")
	a("s3", "sync", src, "s3://aws-cli/tree/")
	ls := a("s3", "ls", "--recursive", "s3://aws-cli/tree/")
	if !strings.Contains(ls, "tree/big/large.bin") || !strings.Contains(ls, "with space.txt") {
		t.Errorf("aws s3 ls misses keys:\n%s", ls)
	}
	// A second sync has nothing to do.
	if out := a("s3", "sync", src, "s3://aws-cli/tree/"); strings.Contains(out, "upload:") {
		t.Errorf("second sync uploaded again:\n%s", out)
	}
	dst := t.TempDir()
	a("s3", "sync", "s3://aws-cli/tree/", dst)
	checkTree(t, dst, files)
	one := filepath.Join(t.TempDir(), "one")
	a("s3", "cp", "s3://aws-cli/tree/big/large.bin", one)
	if got, _ := os.ReadFile(one); !bytes.Equal(got, files["big/large.bin"]) {
		t.Error("aws s3 cp download differs")
	}
	a("s3", "rm", "--recursive", "s3://aws-cli/")
	a("s3", "rb", "s3://aws-cli")
}

func TestClientS3cmd(t *testing.T) {
	s3cmd := requireClient(t, "s3cmd", "/usr/bin/s3cmd", "s3cmd")
	url, _ := serveLoopback(t)
	host := strings.TrimPrefix(url, "http://")
	src, files := clientTree(t)
	cfg := filepath.Join(t.TempDir(), "s3cfg")
	conf := "[default]\naccess_key = " + testCreds.AccessKey + "\nsecret_key = " + testCreds.SecretKey +
		"\nhost_base = " + host + "\nhost_bucket = " + host + "\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\nmultipart_chunk_size_mb = 5\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := baseEnv(t)
	c := func(args ...string) string { return run(t, env, s3cmd, append([]string{"-c", cfg}, args...)...) }
	c("mb", "s3://s3cmd-b")
	c("sync", src+"/", "s3://s3cmd-b/tree/")
	ls := c("ls", "-r", "s3://s3cmd-b/")
	if !strings.Contains(ls, "tree/big/large.bin") {
		t.Errorf("s3cmd ls misses keys:\n%s", ls)
	}
	dst := t.TempDir()
	c("sync", "s3://s3cmd-b/tree/", dst+"/")
	checkTree(t, dst, files)
	c("del", "-r", "--force", "s3://s3cmd-b/")
	// V2 signatures too (older setups use them).
	if ls := c("--signature-v2", "ls", "s3://s3cmd-b/"); ls != "" {
		t.Errorf("bucket not empty after del -r:\n%s", ls)
	}
	c("rb", "s3://s3cmd-b")
}

func TestClientRclone(t *testing.T) {
	rclone := requireClient(t, "rclone", "/usr/bin/rclone", "rclone")
	url, _ := serveLoopback(t)
	src, files := clientTree(t)
	env := append(baseEnv(t),
		"RCLONE_CONFIG=/dev/null",
		"RCLONE_CONFIG_OBS_TYPE=s3", "RCLONE_CONFIG_OBS_PROVIDER=Other",
		"RCLONE_CONFIG_OBS_ACCESS_KEY_ID="+testCreds.AccessKey, "RCLONE_CONFIG_OBS_SECRET_ACCESS_KEY="+testCreds.SecretKey,
		"RCLONE_CONFIG_OBS_ENDPOINT="+url, "RCLONE_CONFIG_OBS_REGION=us-east-1",
		"RCLONE_CONFIG_OBS_UPLOAD_CUTOFF=5M", "RCLONE_CONFIG_OBS_CHUNK_SIZE=5M")
	r := func(args ...string) string { return run(t, env, rclone, args...) }
	r("mkdir", "obs:rclone-b")
	r("copy", src, "obs:rclone-b/tree")
	r("check", src, "obs:rclone-b/tree")
	lsf := r("lsf", "-R", "obs:rclone-b")
	if !strings.Contains(lsf, "tree/big/large.bin") {
		t.Errorf("rclone lsf misses keys:\n%s", lsf)
	}
	dst := t.TempDir()
	r("copy", "obs:rclone-b/tree", dst)
	checkTree(t, dst, files)
	r("purge", "obs:rclone-b")
}

const boto3Script = `
import sys, io, hashlib, urllib.request
import boto3
from boto3.s3.transfer import TransferConfig
url, ak, sk, path = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
s3.create_bucket(Bucket="boto-b")
s3.put_object(Bucket="boto-b", Key="hello.txt", Body=b"hello", Metadata={"who": "boto"})
o = s3.get_object(Bucket="boto-b", Key="hello.txt")
body = o["Body"].read()
assert body == b"hello", body
assert o["Metadata"].get("who") == "boto", o["Metadata"]
for i in range(25):
    s3.put_object(Bucket="boto-b", Key="many/%03d" % i, Body=b"x")
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="boto-b", Prefix="many/", PaginationConfig={"PageSize": 7}):
    keys += [c["Key"] for c in page.get("Contents", [])]
assert keys == ["many/%03d" % i for i in range(25)], keys
cfg = TransferConfig(multipart_threshold=5*1024*1024, multipart_chunksize=5*1024*1024)
s3.upload_file(path, "boto-b", "big.bin", Config=cfg)
want = hashlib.md5(open(path, "rb").read()).hexdigest()
buf = io.BytesIO()
s3.download_fileobj("boto-b", "big.bin", buf, Config=cfg)
assert hashlib.md5(buf.getvalue()).hexdigest() == want
assert s3.head_object(Bucket="boto-b", Key="big.bin")["ETag"].endswith('-3"')
s3.copy_object(Bucket="boto-b", Key="copy.txt", CopySource={"Bucket": "boto-b", "Key": "hello.txt"})
u = s3.generate_presigned_url("get_object", Params={"Bucket": "boto-b", "Key": "copy.txt"}, ExpiresIn=60)
assert urllib.request.urlopen(u).read() == b"hello"
try:
    s3.get_object(Bucket="boto-b", Key="nope")
    raise SystemExit("missing key did not fail")
except s3.exceptions.NoSuchKey:
    pass
# Empty the bucket the way generic tools do: through the versions listing.
vs = s3.list_object_versions(Bucket="boto-b")
objs = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in vs.get("Versions", [])]
assert objs and all(o["VersionId"] == "null" for o in objs)
r = s3.delete_objects(Bucket="boto-b", Delete={"Objects": objs})
assert not r.get("Errors"), r
s3.delete_bucket(Bucket="boto-b")
print("boto3 ok")
`

func TestClientBoto3(t *testing.T) {
	py := requireBoto3(t)
	url, _ := serveLoopback(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "boto.py")
	big := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(script, []byte(boto3Script), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, randBytes(42, 12<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(baseEnv(t), "AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	if out := run(t, env, py, script, url, testCreds.AccessKey, testCreds.SecretKey, big); !strings.Contains(out, "boto3 ok") {
		t.Fatalf("boto3 script: %s", out)
	}
}
