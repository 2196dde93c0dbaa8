package registry_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/malocal/malocal/registry"
)

// Serve the registry, push an image over HTTP, read it back from storage.
func Example() {
	dir, err := os.MkdirTemp("", "registry-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg, err := registry.New(filepath.Join(dir, "registry"))
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()

	img, _ := random.Image(1024, 1)
	ref, _ := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/team/train:v1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	tags, _ := reg.Tags(ctx, "team/train")
	local, _ := reg.Image(ctx, "team/train", "v1")
	want, _ := img.Digest()
	got, _ := local.Digest()
	fmt.Println(tags, got == want)
	// Output: [v1] true
}
