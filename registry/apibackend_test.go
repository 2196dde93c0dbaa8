package registry

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/malocal/malocal/api"
)

type testBackend struct{ api.ImageBackend }

func (testBackend) Status(context.Context) (api.Status, error) { return api.Status{}, nil }

// TestAPIImages drives image ls, rm and registry gc through the real API
// server and client.
func TestAPIImages(t *testing.T) {
	reg, addr := serve(t, t.TempDir(), WithGCGrace(0))
	srv := httptest.NewServer(api.NewServer(testBackend{reg.APIBackend()}, "tok"))
	defer srv.Close()
	c := api.NewClient(srv.URL, "tok")
	ctx := t.Context()

	img, err := random.Image(100_000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, addr+"/team/app:v1"), img); err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].Repository != "team/app" || imgs[0].Tag != "v1" || imgs[0].Size < 200_000 {
		t.Fatalf("images = %+v, %v", imgs, err)
	}
	if err := c.DeleteImage(ctx, "team/app", "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("delete unknown = %v", err)
	}
	if err := c.DeleteImage(ctx, "Team", "v1"); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("delete invalid = %v", err)
	}
	repo, r, err := api.ParseImageRef("localhost:5000/team/app@" + imgs[0].Digest)
	if err != nil || repo != "team/app" || r != imgs[0].Digest {
		t.Fatalf("parse = %q %q %v", repo, r, err)
	}
	if err := c.DeleteImage(ctx, repo, r); err != nil {
		t.Fatal(err)
	}
	if imgs, err := c.Images(ctx); err != nil || len(imgs) != 0 {
		t.Fatalf("images after rm = %+v, %v", imgs, err)
	}
	res, err := c.RegistryGC(ctx)
	if err != nil || res.BlobsDeleted != 4 || res.BytesFreed < 200_000 {
		t.Fatalf("gc = %+v, %v", res, err)
	}
}

func TestParseImageRef(t *testing.T) {
	for in, want := range map[string][2]string{
		"app":                       {"app", "latest"},
		"team/app:v1":               {"team/app", "v1"},
		"localhost:5000/team/app:1": {"team/app", "1"},
		"127.0.0.1:5000/a@sha256:x": {"a", "sha256:x"},
		"reg.example/a/b":           {"a/b", "latest"},
	} {
		repo, r, err := api.ParseImageRef(in)
		if err != nil || repo != want[0] || r != want[1] {
			t.Errorf("%s = %q %q %v", in, repo, r, err)
		}
	}
}

// TestAPIGCGrace: within the grace period an unreferenced blob is kept and
// counted; a GC with grace 0 through the API collects it now. A backend
// without the capability answers 503 to a grace.
func TestAPIGCGrace(t *testing.T) {
	reg, addr := serve(t, t.TempDir()) // the default grace: an hour
	srv := httptest.NewServer(api.NewServer(gcBackend{testBackend{reg.APIBackend()}, reg.APIBackend().(api.ImageGCGracer)}, "tok"))
	defer srv.Close()
	c := api.NewClient(srv.URL, "tok")
	img, err := random.Image(50_000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, addr+"/team/app:v1"), img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if err := c.DeleteImage(t.Context(), "team/app", d.String()); err != nil {
		t.Fatal(err)
	}
	res, err := c.RegistryGC(t.Context())
	if err != nil || res.BlobsDeleted != 0 || res.BlobsKept != 4 || res.BytesKept < 100_000 || res.Grace != api.Duration(time.Hour) {
		t.Fatalf("gc within the grace = %+v, %v", res, err)
	}
	res, err = c.RegistryGCGrace(t.Context(), 0)
	if err != nil || res.BlobsDeleted != 4 || res.BlobsKept != 0 {
		t.Fatalf("gc --grace 0s = %+v, %v", res, err)
	}
	plain := httptest.NewServer(api.NewServer(testBackend{reg.APIBackend()}, "tok"))
	defer plain.Close()
	if _, err := api.NewClient(plain.URL, "tok").RegistryGCGrace(t.Context(), 0); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("gc with a grace on a backend without it = %v", err)
	}
}

type gcBackend struct {
	testBackend
	api.ImageGCGracer
}
