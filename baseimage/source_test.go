package baseimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func diffIDs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.RootFS.DiffIDs
}

func openSource(t *testing.T, from string) v1.Image {
	t.Helper()
	img, cleanup, err := Open(context.Background(), from, nil, nil)
	if err != nil {
		t.Fatalf("Open(%q): %v", from, err)
	}
	t.Cleanup(cleanup)
	return img
}

// tarDir writes the files under dir into a tar file.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenSources(t *testing.T) {
	rootfs := writeRootfs(t, baseEntries(), true)
	src := rootfsImage(t, rootfs)
	want := diffIDs(t, src)
	dir := t.TempDir()

	dockerTar := filepath.Join(dir, "saved.tar")
	tag, _ := name.NewTag("example/python:3.11")
	if err := tarball.WriteToFile(dockerTar, tag, src); err != nil {
		t.Fatal(err)
	}
	ociDir := filepath.Join(dir, "oci")
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(src); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "oci.tar")
	tarDir(t, ociDir, ociTar)

	for _, from := range []string{dockerTar, "image:" + dockerTar, ociDir, "oci:" + ociDir, ociTar, "oci:" + ociTar, "image:" + ociTar, rootfs, "rootfs:" + rootfs} {
		t.Run(from, func(t *testing.T) {
			img := openSource(t, from)
			if got := diffIDs(t, img); !reflect.DeepEqual(got, want) {
				t.Errorf("diff_ids %v, want %v", got, want)
			}
			if _, err := ToolkitLayer(img); err != nil {
				t.Errorf("toolkit layer: %v", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	notTar := filepath.Join(t.TempDir(), "x.tar")
	os.WriteFile(notTar, []byte("this is not a tar file, just some text long enough to fill a tar header block?"), 0o644)
	for _, c := range []struct{ from, want string }{
		{"", "no source"},
		{"/nonexistent/x.tar", "is not docker:REF"},
		{"docker:", "needs an image reference"},
		{"debian:", "needs a suite name"},
		{"image:" + notTar, "not a tar file"},
	} {
		if _, _, err := Open(ctx, c.from, nil, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%q): %v, want %q", c.from, err, c.want)
		}
	}
	if _, _, err := Open(ctx, "docker:python:3.11", []string{"curl"}, nil); err == nil || !strings.Contains(err.Error(), "only apply to a debian:SUITE source") {
		t.Errorf("--include with a docker source: %v", err)
	}
	t.Setenv("PATH", t.TempDir()) // no docker, no mmdebstrap
	if _, _, err := Open(ctx, "docker:python:3.11-slim", nil, nil); !errors.Is(err, ErrNoDocker) {
		t.Errorf("without docker: %v", err)
	}
	if _, _, err := Open(ctx, "debian:bookworm", []string{"python3-pip"}, nil); !errors.Is(err, ErrNoMmdebstrap) {
		t.Errorf("without mmdebstrap: %v", err)
	}
}

func TestIncludeList(t *testing.T) {
	got := IncludeList([]string{"python3-pip,python3-numpy", "curl python3"})
	want := []string{"curl", "python-is-python3", "python3", "python3-numpy", "python3-pip"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IncludeList = %v, want %v", got, want)
	}
}
