package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestObsCommands(t *testing.T) {
	e := Start(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub dir", "数据"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha\n"), 0o644)
	os.WriteFile(filepath.Join(src, "sub dir", "数据", "b.txt"), []byte("beta\n"), 0o644)
	for _, args := range [][]string{
		{"obs", "mb", "s3://work"},
		{"obs", "cp", "-r", src + "/", "obs://work/code/"},
	} {
		if r := e.Run(args...); r.Code != 0 {
			t.Fatalf("%v: %d %s", args, r.Code, r.Stderr)
		}
	}
	r := e.Run("obs", "ls", "-r", "s3://work/code/")
	if r.Code != 0 || !strings.Contains(r.Stdout, "code/a.txt") || !strings.Contains(r.Stdout, "code/sub dir/数据/b.txt") {
		t.Fatalf("ls -r: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Folder-marker objects, as the OBS console and mox.file.make_dirs
	// create them, are listed as folders.
	for _, k := range []string{"code/empty/", "code/sub dir/"} {
		if _, err := e.S3Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("work"), Key: aws.String(k), Body: strings.NewReader("")}); err != nil {
			t.Fatal(err)
		}
	}
	r = e.Run("obs", "ls", "s3://work/code/")
	if r.Code != 0 || !regexp.MustCompile(`DIR +s3://work/code/empty/`).MatchString(r.Stdout) || strings.Contains(r.Stdout, " 0 ") {
		t.Errorf("ls shows folder markers as folders:\n%s%s", r.Stdout, r.Stderr)
	}
	r = e.Run("obs", "ls", "s3://work/code/sub dir/")
	if r.Code != 0 || strings.Contains(r.Stdout, "s3://work/code/sub dir/\n") || !strings.Contains(r.Stdout, "DIR") {
		t.Errorf("ls of a folder with its own marker:\n%s%s", r.Stdout, r.Stderr)
	}
	if r := e.Run("obs", "cat", "s3://work/code/sub dir/数据/b.txt"); r.Stdout != "beta\n" {
		t.Errorf("cat: %q %s", r.Stdout, r.Stderr)
	}
	dst := t.TempDir()
	if r := e.Run("obs", "sync", "s3://work/code/", dst); r.Code != 0 {
		t.Fatalf("sync down: %s", r.Stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "sub dir", "数据", "b.txt")); string(b) != "beta\n" {
		t.Errorf("synced file: %q", b)
	}
	if r := e.Run("obs", "rb", "s3://work"); r.Code == 0 {
		t.Error("rb of a non-empty bucket succeeded")
	}
	if r := e.Run("obs", "rm", "-r", "s3://work/code/"); r.Code != 0 {
		t.Fatalf("rm -r: %s", r.Stderr)
	}
	if r := e.Run("obs", "rb", "s3://work"); r.Code != 0 {
		t.Errorf("rb of the emptied bucket: %s", r.Stderr)
	}
	if r := e.Run("obs", "ls", "s3://nope-bucket/"); r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "bucket") {
		t.Errorf("ls of a missing bucket: %d %q", r.Code, r.Stderr)
	}
}

// A 5 GiB object goes up in parts and comes back whole, while the
// emulator's memory stays small.
func TestObsFiveGiBObject(t *testing.T) {
	if testing.Short() {
		t.Skip("5 GiB of disk traffic: not in -short")
	}
	const size = 5 << 30
	e := Start(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "big.bin")
	want := writeRandomFile(t, src, size)

	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if v := rssPeak(e.PID()); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()
	if r := e.Run("obs", "mb", "s3://big"); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	if r := e.Run("obs", "cp", src, "s3://big/big.bin"); r.Code != 0 {
		t.Fatalf("upload: %s", r.Stderr)
	}
	os.Remove(src)
	out := filepath.Join(dir, "back.bin")
	if r := e.Run("obs", "cp", "s3://big/big.bin", out); r.Code != 0 {
		t.Fatalf("download: %s", r.Stderr)
	}
	close(stop)
	if got := hashFile(t, out); got != want {
		t.Errorf("sha256 after the round trip %s, want %s", got, want)
	}
	if p := peak.Load(); p == 0 || p > 256<<20 {
		t.Errorf("emulator peak RSS %d MiB, want under 256 MiB", p>>20)
	} else {
		t.Logf("emulator peak RSS %d MiB for a 5 GiB object", p>>20)
	}
}

// rssPeak reads a process's peak resident memory (VmHWM) in bytes.
func rssPeak(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func writeRandomFile(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		n := min(int64(len(buf)), left)
		if _, err := w.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
