package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FromTarball opens an image stored in a file: a `docker save` tar (legacy
// or Docker 25+), or an OCI image layout directory. Nothing is extracted;
// layers are streamed from the file when the audit reads them.
func FromTarball(p string) (v1.Image, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	if st.IsDir() {
		return fromLayout(p)
	}
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("%s: not a docker-save image tarball (no usable manifest.json): %w", p, err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("%s holds %d images; save one at a time", p, len(m))
	}
	img, err := tarball.Image(opener, nil)
	if err != nil {
		return nil, fmt.Errorf("read image tarball %s: %w", p, err)
	}
	t := &tarballImage{Image: img, path: p, files: m[0].Layers}
	if t.sizes, err = plainLayerSizes(p, m[0].Layers); err != nil {
		return nil, err
	}
	return t, nil
}

// plainLayerSizes returns the sizes of the layer files when all of them
// are stored uncompressed, else nil. It reads only tar headers and the
// first bytes of each file.
func plainLayerSizes(p string, layers []string) ([]int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	type member struct {
		size  int64
		link  string
		magic []byte
	}
	files := map[string]member{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		m := member{size: h.Size}
		if h.Typeflag == tar.TypeSymlink {
			m.link = path.Join(path.Dir(path.Clean(h.Name)), h.Linkname)
		} else {
			m.magic = make([]byte, 4)
			n, _ := io.ReadFull(tr, m.magic)
			m.magic = m.magic[:n]
		}
		files[path.Clean(h.Name)] = m
	}
	sizes := make([]int64, len(layers))
	for i, l := range layers {
		m, ok := files[path.Clean(l)]
		for hops := 0; ok && m.link != "" && hops < 8; hops++ {
			m, ok = files[m.link]
		}
		if !ok || m.link != "" {
			return nil, fmt.Errorf("%s: layer %s not found", p, l)
		}
		if bytes.HasPrefix(m.magic, []byte{0x1f, 0x8b}) || bytes.HasPrefix(m.magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			return nil, nil
		}
		sizes[i] = m.size
	}
	return sizes, nil
}

func fromLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout %s: %w", dir, err)
	}
	return firstImage(idx, 0)
}

// firstImage returns the only (or first) image of an index, going into
// nested indexes.
func firstImage(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, errors.New("image indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsImage():
			return idx.Image(d.Digest)
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("read index %s: %w", d.Digest, err)
			}
			return firstImage(child, depth+1)
		}
	}
	return nil, errors.New("the layout holds no image")
}

// tarballImage is a docker-save image whose layers read their stored bytes
// straight from the tar file, rather than through go-containerregistry,
// which would gzip the uncompressed layers of such a file to hand them out
// as "compressed".
type tarballImage struct {
	v1.Image
	path  string
	files []string // layer files in the tar, bottom first
	sizes []int64  // their sizes when all are stored uncompressed, else nil

	once     sync.Once
	manifest []byte
	err      error
}

// RawManifest describes the image as the tarball stores it. For plain
// layers that is a manifest of uncompressed layers (as Docker 25's own OCI
// manifest in such a file): go-containerregistry would otherwise gzip every
// layer, the base's too, only to name the compressed blobs.
func (t *tarballImage) RawManifest() ([]byte, error) {
	if t.sizes == nil {
		return t.Image.RawManifest()
	}
	t.once.Do(func() { t.manifest, t.err = t.plainManifest() })
	return t.manifest, t.err
}

func (t *tarballImage) plainManifest() ([]byte, error) {
	raw, err := t.Image.RawConfigFile()
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(t.sizes) {
		return t.Image.RawManifest()
	}
	cd, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2,
		Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(raw)), Digest: cd}}
	for i, d := range cfg.RootFS.DiffIDs {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.DockerUncompressedLayer, Size: t.sizes[i], Digest: d})
	}
	return json.Marshal(m)
}

func (t *tarballImage) Manifest() (*v1.Manifest, error) {
	raw, err := t.RawManifest()
	if err != nil {
		return nil, err
	}
	return v1.ParseManifest(bytes.NewReader(raw))
}

func (t *tarballImage) Digest() (v1.Hash, error) {
	raw, err := t.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

func (t *tarballImage) MediaType() (types.MediaType, error) {
	if t.sizes == nil {
		return t.Image.MediaType()
	}
	return types.DockerManifestSchema2, nil
}

func (t *tarballImage) Size() (int64, error) {
	raw, err := t.RawManifest()
	return int64(len(raw)), err
}

func (t *tarballImage) Layers() ([]v1.Layer, error) {
	ls, err := t.Image.Layers()
	if err != nil {
		return nil, err
	}
	if len(ls) != len(t.files) {
		return ls, nil
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &tarballLayer{Layer: l, tarPath: t.path, name: t.files[i]}
	}
	return out, nil
}

type tarballLayer struct {
	v1.Layer
	tarPath string
	name    string
}

var _ rawLayer = (*tarballLayer)(nil)

// RawLayer implements rawLayer.
func (l *tarballLayer) RawLayer() (io.ReadCloser, error) {
	return openInTar(l.tarPath, l.name, 0)
}

// openInTar returns the content of the file name inside the tar at p,
// following the symlinks docker save uses for repeated layers.
func openInTar(p, name string, depth int) (io.ReadCloser, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: too many symlinks", name)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	want := path.Clean(name)
	for {
		h, err := tr.Next()
		if err != nil {
			f.Close()
			if err == io.EOF {
				return nil, fmt.Errorf("%s not found in %s", name, p)
			}
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		if path.Clean(h.Name) != want {
			continue
		}
		if h.Typeflag == tar.TypeSymlink {
			f.Close()
			return openInTar(p, path.Join(path.Dir(want), h.Linkname), depth+1)
		}
		return struct {
			io.Reader
			io.Closer
		}{tr, f}, nil
	}
}

// FromDockerEngine saves ref from the local Docker engine (`docker save`)
// to a temporary file and opens it. Call cleanup when the audit is done.
func FromDockerEngine(ctx context.Context, ref string) (img v1.Image, cleanup func() error, err error) {
	dir, err := os.MkdirTemp("", "malocal-audit-")
	if err != nil {
		return nil, nil, fmt.Errorf("temp dir: %w", err)
	}
	rm := func() error { return os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			rm() // the error return has cleared cleanup
		}
	}()
	out := filepath.Join(dir, "image.tar")
	cmd := exec.CommandContext(ctx, "docker", "save", "-o", out, ref)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("docker save %s: %w: %s", ref, err, msg)
	}
	img, err = FromTarball(out)
	if err != nil {
		return nil, nil, err
	}
	return img, rm, nil
}

// StaticCatalog is a fixed list of bases.
type StaticCatalog []Base

var _ BaseCatalog = StaticCatalog(nil)

// Bases implements BaseCatalog.
func (c StaticCatalog) Bases(context.Context) ([]Base, error) { return c, nil }

// CatalogFile reads the base catalog baseimage keeps in the data dir
// (bases.json: {"bases": [{name, tag, digest, diff_ids, superseded,
// superseded_by}]}) on every call, so it sees new builds. A missing file is
// an empty catalog.
type CatalogFile string

var _ BaseCatalog = CatalogFile("")

// Bases implements BaseCatalog.
func (c CatalogFile) Bases(ctx context.Context) ([]Base, error) {
	raw, err := os.ReadFile(string(c))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read base catalog: %w", err)
	}
	var doc struct {
		Bases []Base `json:"bases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse base catalog %s: %w", c, err)
	}
	return doc.Bases, nil
}

// BaseFromImage describes img as a current official base name:tag.
func BaseFromImage(name, tag string, img v1.Image) (Base, error) {
	d, err := img.Digest()
	if err != nil {
		return Base{}, fmt.Errorf("base digest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Base{}, fmt.Errorf("base config: %w", err)
	}
	return Base{Name: name, Tag: tag, Digest: d.String(), DiffIDs: cfg.RootFS.DiffIDs}, nil
}
