package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/baseimage"
)

// Images that take minutes to build (the PyTorch sample: an official base
// plus Debian's python3-torch, about 300 packages installed by dpkg) are
// built once and kept between test processes, as the Debian root
// filesystems are, in os.TempDir()/malocal-test-cache: a tarball (docker
// save format) named by a key that says what the image was made of, e.g.
// the base's digest. The test that builds it the product's way saves it;
// the others push it into their emulator's registry first, so that the
// product's own up-to-date check finds it and the build is skipped.

// ImageCacheDir is where built images are kept between test processes.
func ImageCacheDir() string { return filepath.Join(os.TempDir(), "malocal-test-cache") }

// RootfsCachePath is where the bookworm root filesystem with the given
// packages (the base's own added by baseimage.IncludeList) is cached: one
// file name per package list, shared by every test and benchmark.
func RootfsCachePath(include []string) string {
	sum := sha256.Sum256([]byte(strings.Join(baseimage.IncludeList(include), ",")))
	return filepath.Join(ImageCacheDir(), "rootfs-bookworm-"+hex.EncodeToString(sum[:6])+".tar")
}

func imageCachePath(key string) string {
	return filepath.Join(ImageCacheDir(), "image-"+sanitize(key)+".tar")
}

// RegistryDigest returns the digest of repoTag in e's registry.
func (e *Emulator) RegistryDigest(t testing.TB, repoTag string) string {
	t.Helper()
	ref, err := name.ParseReference(e.Registry+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(e.RegistryAuth()))
	if err != nil {
		t.Fatalf("the digest of %s: %v", ref, err)
	}
	return desc.Digest.String()
}

// RestoreImage pushes the image cached under key to e's registry as
// repoTag. It reports false when no image is cached under key.
func (e *Emulator) RestoreImage(t testing.TB, key, repoTag string) bool {
	t.Helper()
	p := imageCachePath(key)
	if _, err := os.Stat(p); err != nil {
		return false
	}
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Logf("ignoring the cached image %s: %v", p, err)
		return false
	}
	ref, err := name.ParseReference(e.Registry+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if err := remote.Write(ref, img, remote.WithAuth(e.RegistryAuth()), remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing the cached image %s as %s: %v", p, ref, err)
	}
	t.Logf("pushed the cached image %s as %s in %s", p, repoTag, time.Since(start).Round(100*time.Millisecond))
	return true
}

// CacheImage saves repoTag of e's registry under key (temp file, then
// rename), and removes the images cached under keys that start with
// prefix, which it supersedes.
func (e *Emulator) CacheImage(t testing.TB, key, prefix, repoTag string) {
	t.Helper()
	if !strings.HasPrefix(key, prefix) {
		t.Fatalf("cache key %q does not start with %q", key, prefix)
	}
	ref, err := name.ParseReference(e.Registry+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := remote.Image(ref, remote.WithAuth(e.RegistryAuth()), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("reading %s to cache it: %v", ref, err)
	}
	if err := os.MkdirAll(ImageCacheDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(ImageCacheDir(), "image-"+sanitize(prefix)+"*.tar"))
	p := imageCachePath(key)
	tmp, err := os.CreateTemp(ImageCacheDir(), ".image-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp.Name())
	tag, err := name.NewTag(repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.Write(tag, img, tmp); err != nil {
		tmp.Close()
		t.Fatalf("caching %s: %v", ref, err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		t.Fatal(err)
	}
	for _, o := range old {
		if o != p {
			os.Remove(o)
		}
	}
	t.Logf("cached %s as %s", repoTag, p)
}

// TorchImageKey is the cache key of the PyTorch sample image built on the
// base in e's registry (base is its repo:tag).
func (e *Emulator) TorchImageKey(t testing.TB, base string) string {
	t.Helper()
	d := e.RegistryDigest(t, base)
	return fmt.Sprintf("%s%s", TorchImagePrefix, strings.TrimPrefix(d, "sha256:")[:16])
}

// TorchImagePrefix starts the cache keys of the PyTorch sample image.
const TorchImagePrefix = "mnist-pytorch-"
