package obsclient_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/fakeobs"
	"github.com/malocal/malocal/fakeobs/obsclient"
)

func newClient(t *testing.T, progress *bytes.Buffer) *obsclient.Client {
	t.Helper()
	creds := fakeobs.Credentials{AccessKey: "OBSCLIENTKEY", SecretKey: "obsclient-secret-0123"}
	svc, err := fakeobs.New(t.TempDir(), fakeobs.WithCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(func() { srv.Close(); svc.Close() })
	cfg := obsclient.Config{Endpoint: srv.URL, AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Parallel: 4, PartSize: 5 << 20}
	if progress != nil {
		cfg.Progress = progress
	}
	c, err := obsclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out[filepath.ToSlash(rel)], _ = os.ReadFile(p)
		}
		return nil
	})
	return out
}

func sameTree(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(b[k], v) {
			return false
		}
	}
	return true
}

func rnd(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestParseURL(t *testing.T) {
	for in, want := range map[string]obsclient.URL{"s3://b/k/x": {"b", "k/x"}, "obs://b": {"b", ""}, "obs://b/dir/": {"b", "dir/"}} {
		u, remote, err := obsclient.ParseURL(in)
		if err != nil || !remote || u != want {
			t.Errorf("%s: %v %v %v", in, u, remote, err)
		}
	}
	if _, remote, _ := obsclient.ParseURL("./local/path"); remote {
		t.Error("local path taken as remote")
	}
	if _, _, err := obsclient.ParseURL("s3:///k"); err == nil {
		t.Error("URL without bucket accepted")
	}
}

func TestRoundTrip(t *testing.T) {
	var prog bytes.Buffer
	c := newClient(t, &prog)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.MakeBucket(ctx, "work"); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	files := map[string][]byte{"a.txt": []byte("a"), "d/b.txt": []byte("bb"), "d/e/with space.bin": rnd(1, 1000), "big.bin": rnd(2, 21<<20)}
	writeTree(t, src, files)

	st, err := c.Copy(ctx, src, "obs://work/code", true)
	if err != nil || st.Files != 4 {
		t.Fatalf("upload: %v %+v", err, st)
	}
	if !strings.Contains(prog.String(), "100%") {
		t.Errorf("no progress for a 21 MiB transfer: %q", prog.String())
	}
	var keys []string
	if err := c.List(ctx, obsclient.URL{Bucket: "work", Key: "code/"}, false, func(e obsclient.Entry) error { keys = append(keys, e.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "code/d/,code/a.txt,code/big.bin" {
		t.Errorf("ls: %v", keys)
	}
	st, err = c.Sync(ctx, src, "s3://work/code/", false)
	if err != nil || st.Files != 0 || st.Skipped != 4 {
		t.Errorf("second sync: %v %+v", err, st)
	}
	dst := t.TempDir()
	if _, err := c.Copy(ctx, "s3://work/code", dst, true); err != nil {
		t.Fatal(err)
	}
	if !sameTree(readTree(t, dst), files) {
		t.Fatal("downloaded tree differs")
	}
	st, err = c.Sync(ctx, "s3://work/code/", dst, false)
	if err != nil || st.Files != 0 {
		t.Errorf("sync down of an unchanged tree: %v %+v", err, st)
	}
	// A local change goes up; a removed file goes away with --delete.
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("changed!"), 0o644)
	os.Remove(filepath.Join(src, "d/b.txt"))
	st, err = c.Sync(ctx, src, "s3://work/code", true)
	if err != nil || st.Files != 1 || st.Deleted != 1 {
		t.Errorf("sync --delete: %v %+v", err, st)
	}
	var cat bytes.Buffer
	if err := c.Cat(ctx, obsclient.URL{Bucket: "work", Key: "code/a.txt"}, &cat); err != nil || cat.String() != "changed!" {
		t.Errorf("cat: %v %q", err, cat.String())
	}
	// Single-file copies, both ways and server-side.
	if _, err := c.Copy(ctx, "s3://work/code/d/e/with space.bin", "s3://work/other/", false); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(t.TempDir(), "one.bin")
	if _, err := c.Copy(ctx, "obs://work/other/with space.bin", one, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(one); !bytes.Equal(got, files["d/e/with space.bin"]) {
		t.Error("single-file copy differs")
	}
	if err := c.RemoveBucket(ctx, "work", false); err == nil {
		t.Error("removed a non-empty bucket without force")
	}
	n, err := c.Remove(ctx, obsclient.URL{Bucket: "work"}, true)
	if err != nil || n != 4 {
		t.Errorf("rm -r: %v %d", err, n)
	}
	if err := c.RemoveBucket(ctx, "work", false); err != nil {
		t.Fatal(err)
	}
}
