package registry

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image returns ref (a tag or digest) of repo as a go-containerregistry
// image read straight from our blob files. An index resolves to its
// linux/GOARCH image. ggcr's v1.Hash is sha256 only, so sha512 images
// cannot be opened this way.
func (r *Registry) Image(ctx context.Context, repo, ref string) (v1.Image, error) {
	d, mt, raw, err := r.s.getManifest(repo, ref)
	if err != nil {
		return nil, fmt.Errorf("registry: image %s:%s: %w", repo, ref, err)
	}
	m, err := r.s.manifest(d)
	if err != nil {
		return nil, fmt.Errorf("registry: image %s:%s: %w", repo, ref, err)
	}
	if len(m.Manifests) > 0 {
		for _, c := range m.Manifests {
			p := c.Platform
			if p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
				return r.Image(ctx, repo, c.Digest)
			}
		}
		return nil, fmt.Errorf("registry: image %s:%s: index has no linux/%s image", repo, ref, runtime.GOARCH)
	}
	if m.Config == nil {
		return nil, fmt.Errorf("registry: image %s:%s: %s is not an image manifest", repo, ref, mt)
	}
	img, err := partial.CompressedToImage(&diskImage{s: r.s, repo: repo, mt: mt, raw: raw, m: m})
	if err != nil {
		return nil, fmt.Errorf("registry: image %s:%s: %w", repo, ref, err)
	}
	return img, nil
}

// diskImage is the minimal ggcr image core over our storage.
type diskImage struct {
	s    *store
	repo string
	mt   string
	raw  []byte
	m    *manifestMeta
}

var _ partial.CompressedImageCore = (*diskImage)(nil)

func (i *diskImage) MediaType() (types.MediaType, error) { return types.MediaType(i.mt), nil }
func (i *diskImage) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *diskImage) RawConfigFile() ([]byte, error) {
	d, err := parseDigest(i.m.Config.Digest)
	if err != nil {
		return nil, err
	}
	f, err := i.s.openBlob(i.repo, d)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", d, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

func (i *diskImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	descs := append([]Descriptor{*i.m.Config}, i.m.Layers...)
	for _, l := range descs {
		if l.Digest == h.String() {
			return &diskLayer{s: i.s, repo: i.repo, h: h, desc: l}, nil
		}
	}
	return nil, fmt.Errorf("layer %s not in manifest", h)
}

// diskLayer is one blob of a diskImage.
type diskLayer struct {
	s    *store
	repo string
	h    v1.Hash
	desc Descriptor
}

var _ partial.CompressedLayer = (*diskLayer)(nil)

func (l *diskLayer) Digest() (v1.Hash, error) { return l.h, nil }
func (l *diskLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *diskLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

func (l *diskLayer) Compressed() (io.ReadCloser, error) {
	d, err := parseDigest(l.h.String())
	if err != nil {
		return nil, err
	}
	var f *os.File
	if f, err = l.s.openBlob(l.repo, d); err != nil {
		return nil, fmt.Errorf("layer %s: %w", d, err)
	}
	return f, nil
}
