package baseimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Errors for missing tools, so that callers can tell them apart.
var (
	ErrNoDocker     = errors.New("the Docker CLI (docker) is not installed or not on PATH: install Docker, or build from an image tarball (docker save output), an OCI layout or a root filesystem tarball")
	ErrNoMmdebstrap = errors.New("mmdebstrap is not installed: install it (apt-get install mmdebstrap) to build a base from debian:SUITE, or build from an image or root filesystem tarball")
)

// Source forms accepted by Open (the --from of `malocal base build`):
//
//	docker:REF      an image in the local Docker engine (read with docker save)
//	debian:SUITE    a root filesystem made by mmdebstrap from the host's apt
//	                sources, with the packages of Include
//	oci:DIR|TAR     an OCI image layout, as a directory or a tar of one
//	image:TAR       an image tarball: docker save output or an OCI layout tar
//	rootfs:TAR      a root filesystem tarball (plain, gzip) as one layer
//	PATH            a directory is an OCI layout; a tar file is looked into:
//	                manifest.json makes it docker save output, oci-layout an
//	                OCI layout, anything else a root filesystem.
const sourceHelp = "docker:REF, debian:SUITE, oci:PATH, image:TAR, rootfs:TAR or a path"

// Open reads the source image named by from. include lists Debian packages
// for debian:SUITE (python3 and python-is-python3 are always added). Progress, when not nil,
// receives what the slow steps print. The caller must call cleanup (never
// nil when err is nil) once it no longer reads the image.
func Open(ctx context.Context, from string, include []string, progress io.Writer) (img v1.Image, cleanup func(), err error) {
	if progress == nil {
		progress = io.Discard
	}
	kind, arg, _ := strings.Cut(from, ":")
	if len(include) > 0 && kind != "debian" {
		return nil, nil, fmt.Errorf("packages to include (%s) only apply to a debian:SUITE source", strings.Join(include, ","))
	}
	switch kind {
	case "docker":
		return fromDocker(ctx, arg, progress)
	case "debian":
		return fromDebian(ctx, arg, include, progress)
	case "oci":
		if st, err := os.Stat(arg); err == nil && !st.IsDir() {
			return fromImageTar(arg)
		}
		return fromOCI(arg)
	case "image":
		return fromImageTar(arg)
	case "rootfs":
		return FromRootfs(arg)
	}
	if from == "" {
		return nil, nil, fmt.Errorf("no source: give one of %s", sourceHelp)
	}
	st, err := os.Stat(from)
	if err != nil {
		return nil, nil, fmt.Errorf("source %q is not %s: %w", from, sourceHelp, err)
	}
	if st.IsDir() {
		return fromOCI(from)
	}
	kindOf, err := sniffTar(from)
	if err != nil {
		return nil, nil, err
	}
	switch kindOf {
	case "docker", "oci":
		return fromImageTar(from)
	}
	return FromRootfs(from)
}

// sniffTar says what a tar file holds: "docker" (manifest.json at the top),
// "oci" (oci-layout and index.json) or "rootfs".
func sniffTar(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p, err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	var hasManifest, hasLayout, hasIndex bool
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if n == 0 {
				return "", fmt.Errorf("%s is not a tar file: %w", p, err)
			}
			return "", fmt.Errorf("reading %s: %w", p, err)
		}
		switch cleanName(hdr.Name) {
		case "manifest.json":
			hasManifest = true
		case "oci-layout":
			hasLayout = true
		case "index.json":
			hasIndex = true
		}
	}
	switch {
	case hasManifest:
		return "docker", nil
	case hasLayout && hasIndex:
		return "oci", nil
	}
	return "rootfs", nil
}

// fromImageTar reads docker save output, or an OCI layout tar.
func fromImageTar(p string) (v1.Image, func(), error) {
	kind, err := sniffTar(p)
	if err != nil {
		return nil, nil, err
	}
	switch kind {
	case "docker":
		img, err := tarball.ImageFromPath(p, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("reading image tarball %s: %w", p, err)
		}
		return img, func() {}, nil
	case "oci":
		dir, err := os.MkdirTemp("", "malocal-oci-")
		if err != nil {
			return nil, nil, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		if err := untarLayout(p, dir); err != nil {
			cleanup()
			return nil, nil, err
		}
		img, _, err := fromOCI(dir)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		return img, cleanup, nil
	}
	return nil, nil, fmt.Errorf("%s is neither docker save output nor an OCI layout tar", p)
}

// untarLayout extracts the regular files of an OCI layout tar into dir,
// refusing any path that would land outside it.
func untarLayout(p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := cleanName(hdr.Name) // rooted, then made relative: cannot climb out of dir
		if name == "" {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// fromOCI reads the one image of an OCI layout directory; when the layout
// holds several, the one for linux/GOARCH.
func fromOCI(dir string) (v1.Image, func(), error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	img, err := pickImage(idx, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return img, func() {}, nil
}

func pickImage(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("image indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var candidates []v1.Descriptor
	for _, d := range im.Manifests {
		if d.Platform != nil && (d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH) {
			continue // another platform, or an attestation (unknown/unknown)
		}
		candidates = append(candidates, d)
	}
	if len(candidates) == 0 && len(im.Manifests) == 1 {
		candidates = im.Manifests
	}
	if len(candidates) != 1 {
		return nil, fmt.Errorf("holds %d images for linux/%s; want exactly one", len(candidates), runtime.GOARCH)
	}
	d := candidates[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return pickImage(child, depth+1)
	}
	return idx.Image(d.Digest)
}

// FromRootfs makes a one-layer image of a root filesystem tarball (plain or
// gzip). Device nodes and fifos are left out: container runtimes make /dev
// themselves, and unprivileged engines cannot create them. The layer is
// compressed once, into a temp file that cleanup removes.
func FromRootfs(p string) (img v1.Image, cleanup func(), err error) {
	in, err := filteredRootfs(p)
	if err != nil {
		return nil, nil, fmt.Errorf("root filesystem tarball: %w", err)
	}
	defer in.Close()
	f, err := os.CreateTemp("", "malocal-rootfs-*.tar.gz")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.Remove(f.Name()) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	_, err = io.Copy(zw, in)
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading root filesystem tarball %s: %w", p, err)
	}
	layer, err := tarball.LayerFromFile(f.Name())
	if err != nil {
		return nil, nil, fmt.Errorf("reading root filesystem tarball %s: %w", p, err)
	}
	img, err = mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: LayerTime}, CreatedBy: "malocal base build: root filesystem tarball"},
	})
	if err != nil {
		return nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, nil, err
	}
	return img, cleanup, nil
}

// filteredRootfs streams the tarball at p, uncompressed, without device
// nodes and fifos.
func filteredRootfs(p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		r = zr
	}
	pr, pw := io.Pipe()
	go func() {
		defer f.Close()
		tr := tar.NewReader(r)
		tw := tar.NewWriter(pw)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				pw.CloseWithError(tw.Close())
				return
			}
			if err != nil {
				pw.CloseWithError(fmt.Errorf("reading %s: %w", p, err))
				return
			}
			switch hdr.Typeflag {
			case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
				continue
			}
			if err := tw.WriteHeader(hdr); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr, nil
}

// fromDocker reads an image of the local Docker engine through docker save.
func fromDocker(ctx context.Context, ref string, progress io.Writer) (v1.Image, func(), error) {
	if ref == "" {
		return nil, nil, errors.New("docker: needs an image reference, e.g. docker:python:3.11-slim")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		return nil, nil, ErrNoDocker
	}
	f, err := os.CreateTemp("", "malocal-docker-save-*.tar")
	if err != nil {
		return nil, nil, err
	}
	f.Close()
	cleanup := func() { os.Remove(f.Name()) }
	fmt.Fprintf(progress, "reading %s from the Docker engine (docker save)\n", ref)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, docker, "save", "-o", f.Name(), ref)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, nil, fmt.Errorf("docker save %s: %s", ref, msg)
	}
	img, err := tarball.ImageFromPath(f.Name(), nil)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("reading docker save output of %s: %w", ref, err)
	}
	return img, cleanup, nil
}

// fromDebian builds a root filesystem with mmdebstrap into a temp file.
func fromDebian(ctx context.Context, suite string, include []string, progress io.Writer) (v1.Image, func(), error) {
	dir, err := os.MkdirTemp("", "malocal-debian-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	out := filepath.Join(dir, "rootfs.tar")
	if err := Mmdebstrap(ctx, suite, include, out, progress); err != nil {
		cleanup()
		return nil, nil, err
	}
	img, rmLayer, err := FromRootfs(out)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return img, func() { rmLayer(); cleanup() }, nil
}

// Mmdebstrap writes a root filesystem tarball of Debian SUITE (e.g.
// bookworm) with the apt variant, python3 and the packages of include, to
// out. It uses the host's apt sources: no mirror is named. out is written
// under a temp name and renamed, so it never holds a partial tarball.
func Mmdebstrap(ctx context.Context, suite string, include []string, out string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	if suite == "" || strings.ContainsAny(suite, " /") {
		return fmt.Errorf("debian: needs a suite name, e.g. debian:bookworm (got %q)", suite)
	}
	bin, err := exec.LookPath("mmdebstrap")
	if err != nil {
		return ErrNoMmdebstrap
	}
	pkgs := IncludeList(include)
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-*.tar")
	if err != nil {
		return err
	}
	f.Close()
	tmp := f.Name()
	args := []string{"--variant=apt", "--include=" + strings.Join(pkgs, ","), suite, tmp}
	fmt.Fprintf(progress, "running mmdebstrap %s\n", strings.Join(args[:len(args)-1], " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	var tail tailBuffer
	w := io.MultiWriter(progress, &tail) // one writer: exec copies both streams in one goroutine
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mmdebstrap %s: %w: %s", suite, err, strings.TrimSpace(tail.String()))
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// IncludeList is the package list given to mmdebstrap: include split on
// commas and spaces, with python3 and python-is-python3 (the `python`
// command of the platform's run commands) added, sorted and deduplicated.
func IncludeList(include []string) []string {
	seen := map[string]bool{"python3": true, "python-is-python3": true}
	out := []string{"python-is-python3", "python3"}
	for _, s := range include {
		for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
