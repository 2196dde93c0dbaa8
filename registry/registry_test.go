package registry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// serve starts an in-process server for a registry on root.
func serve(t *testing.T, root string, opts ...Option) (*Registry, string) {
	t.Helper()
	reg := newTestRegistry(t, root, opts...)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	return reg, strings.TrimPrefix(srv.URL, "http://")
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustDigest(t *testing.T, img interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPushRestartPull pushes random images with ggcr's client, opens a new
// Registry on the same root, and pulls them back over HTTP and directly.
func TestPushRestartPull(t *testing.T) {
	root := filepath.Join(t.TempDir(), "registry")
	img, err := random.Image(300_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(1000, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serve(t, root)
	if err := remote.Write(ref(t, addr+"/team/train:v1"), img); err != nil {
		t.Fatal(err)
	}
	// The same layers into a second repository go by cross-repo mount.
	if err := remote.Write(ref(t, addr+"/team/other:v1"), img); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, addr+"/team/multi:latest"), idx); err != nil {
		t.Fatal(err)
	}

	reg2, addr2 := serve(t, root) // restart
	got, err := remote.Image(ref(t, addr2+"/team/train:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, got) != mustDigest(t, img) {
		t.Fatal("manifest digest changed")
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed() // ggcr verifies the digest while reading
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}
	gotIdx, err := remote.Index(ref(t, addr2+"/team/multi:latest"))
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, gotIdx) != mustDigest(t, idx) {
		t.Fatal("index digest changed")
	}

	// The read side, without HTTP.
	local, err := reg2.Image(t.Context(), "team/train", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, local) != mustDigest(t, img) {
		t.Fatal("Image digest differs")
	}
	if err := validateLayers(local); err != nil {
		t.Fatal(err)
	}
	repos, err := reg2.Repositories(t.Context())
	if err != nil || !slices.Equal(repos, []string{"team/multi", "team/other", "team/train"}) {
		t.Fatalf("repositories = %v, %v", repos, err)
	}
	tags, err := reg2.Tags(t.Context(), "team/train")
	if err != nil || !slices.Equal(tags, []string{"v1"}) {
		t.Fatalf("tags = %v, %v", tags, err)
	}
	desc, err := reg2.Resolve(t.Context(), "team/train", "v1")
	if err != nil || desc.Digest != mustDigest(t, img).String() {
		t.Fatalf("resolve = %+v, %v", desc, err)
	}
	imgs, err := reg2.Images(t.Context())
	// The index's two children are listed untagged.
	if err != nil || len(imgs) != 5 || imgs[4].Tag != "v1" || imgs[4].Size < 900_000 {
		t.Fatalf("images = %+v, %v", imgs, err)
	}
	catalog, err := crane.Catalog(addr2, crane.Insecure)
	if err != nil || len(catalog) != 3 {
		t.Fatalf("catalog = %v, %v", catalog, err)
	}

	// Delete, GC with no grace, and the blobs are gone while team/other
	// keeps the shared ones.
	if err := reg2.DeleteManifest(t.Context(), "team/train", desc.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := reg2.Resolve(t.Context(), "team/train", "v1"); !IsNotFound(err) {
		t.Fatalf("resolve after delete = %v", err)
	}
	reg3, addr3 := serve(t, root, WithGCGrace(0))
	st, err := reg3.GC(t.Context())
	if err != nil || st.BlobsDeleted != 0 {
		t.Fatalf("gc = %+v, %v (shared blobs must stay)", st, err)
	}
	if _, err := remote.Image(ref(t, addr3+"/team/other:v1")); err != nil {
		t.Fatal(err)
	}
}

func validateLayers(img v1.Image) error {
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestGCWhileServing runs GC in a loop while images are pushed and pulled.
func TestGCWhileServing(t *testing.T) {
	reg, addr := serve(t, t.TempDir(), WithGCGrace(time.Minute))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := reg.GC(t.Context()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range 4 {
		img, err := random.Image(50_000, 3)
		if err != nil {
			t.Fatal(err)
		}
		r := ref(t, addr+"/gc/img:"+string(rune('a'+i)))
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateLayers(got); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestQuotaPush checks that a push over the quota fails cleanly and that
// a smaller one afterwards succeeds.
func TestQuotaPush(t *testing.T) {
	root := t.TempDir()
	reg, addr := serve(t, root, WithQuota(1<<20))
	big, err := random.Image(2<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	err = remote.Write(ref(t, addr+"/q/big:1"), big)
	if err == nil || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("push over quota = %v", err)
	}
	if reg.Used() > 1<<20 {
		t.Fatalf("used %d over quota", reg.Used())
	}
	// The failed layer's bytes are gone. The client may have abandoned
	// other sessions it had open (the small config's); GC removes those.
	if n := dirBytes(t, filepath.Join(root, "uploads")); n > 1000 {
		t.Fatalf("%d upload bytes left", n)
	}
	if n := dirBytes(t, filepath.Join(root, "blobs")) + dirBytes(t, filepath.Join(root, "uploads")); n != reg.Used() {
		t.Fatalf("disk holds %d bytes, Used says %d", n, reg.Used())
	}
	if _, err := newTestRegistry(t, root, WithGCGrace(0)).GC(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, filepath.Join(root, "uploads")); n != 0 {
		t.Fatalf("%d upload files left after GC", n)
	}
	small, err := random.Image(100_000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, addr+"/q/small:1"), small); err != nil {
		t.Fatal(err)
	}
}

// TestProtocolDetails covers responses clients rely on that the
// conformance suite does not look at.
func TestProtocolDetails(t *testing.T) {
	_, addr := serve(t, t.TempDir())
	base := "http://" + addr
	do := func(method, path string, body io.Reader, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := do("GET", "/v2/", nil); r.StatusCode != 200 || r.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("ping = %d %v", r.StatusCode, r.Header)
	}
	if r := do("GET", "/v2/Bad/tags/list", nil); r.StatusCode != 400 {
		t.Fatalf("bad name = %d", r.StatusCode)
	}
	if r := do("DELETE", "/v2/a/blobs/sha256:"+strings.Repeat("0", 64), nil); r.StatusCode != 404 {
		t.Fatalf("delete missing blob = %d", r.StatusCode)
	}
	r := do("POST", "/v2/a/blobs/uploads/", nil)
	loc := r.Header.Get("Location")
	if r.StatusCode != 202 || loc == "" {
		t.Fatalf("post = %d %q", r.StatusCode, loc)
	}
	if r := do("PATCH", loc, strings.NewReader("hello"), "Content-Range", "0-4"); r.StatusCode != 202 || r.Header.Get("Range") != "0-4" {
		t.Fatalf("patch = %d %q", r.StatusCode, r.Header.Get("Range"))
	}
	if r := do("PATCH", loc, strings.NewReader("x"), "Content-Range", "9-9"); r.StatusCode != 416 || r.Header.Get("Range") != "0-4" {
		t.Fatalf("out of order patch = %d %q", r.StatusCode, r.Header.Get("Range"))
	}
	d := digestOf("sha256", []byte("hello world"))
	if r := do("PUT", loc+"?digest="+d.String(), strings.NewReader(" world")); r.StatusCode != 201 || r.Header.Get("Location") == "" {
		t.Fatalf("put = %d", r.StatusCode)
	}
	r = do("GET", "/v2/a/blobs/"+d.String(), nil, "Range", "bytes=6-10")
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != 206 || string(b) != "world" {
		t.Fatalf("range get = %d %q", r.StatusCode, b)
	}
	if r := do("GET", loc, nil); r.StatusCode != 404 {
		t.Fatalf("finished session = %d", r.StatusCode)
	}

	// Paging of tags and the catalog.
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"a", "b", "c"} {
		if err := remote.Write(ref(t, addr+"/p/q:"+tag), img); err != nil {
			t.Fatal(err)
		}
	}
	r = do("GET", "/v2/p/q/tags/list?n=2", nil)
	b, _ = io.ReadAll(r.Body)
	if string(b) != `{"name":"p/q","tags":["a","b"]}`+"\n" || r.Header.Get("Link") != `</v2/p/q/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("page 1 = %s %q", b, r.Header.Get("Link"))
	}
	r = do("GET", "/v2/p/q/tags/list?n=2&last=b", nil)
	b, _ = io.ReadAll(r.Body)
	if string(b) != `{"name":"p/q","tags":["c"]}`+"\n" || r.Header.Get("Link") != "" {
		t.Fatalf("page 2 = %s %q", b, r.Header.Get("Link"))
	}
	r = do("GET", "/v2/_catalog?n=1", nil)
	b, _ = io.ReadAll(r.Body)
	if string(b) != `{"repositories":["a"]}`+"\n" || r.Header.Get("Link") != `</v2/_catalog?last=a&n=1>; rel="next"` {
		t.Fatalf("catalog = %s %q", b, r.Header.Get("Link"))
	}
	if r := do("GET", "/v2/p/q/tags/list?n=x", nil); r.StatusCode != 400 {
		t.Fatalf("bad n = %d", r.StatusCode)
	}
}
