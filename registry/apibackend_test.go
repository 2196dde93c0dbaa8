package registry

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

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
