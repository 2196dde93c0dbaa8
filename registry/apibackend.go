package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/malocal/malocal/api"
)

// APIBackend returns r as the API's optional image capability. The
// emulator's API backend embeds it (struct{ api.ImageBackend; … }) to
// serve `malocal image ls|rm` and `malocal registry gc`.
func (r *Registry) APIBackend() api.ImageBackend { return apiBackend{r} }

type apiBackend struct{ r *Registry }

var _ api.ImageBackend = apiBackend{}

func (b apiBackend) Images(ctx context.Context) ([]api.Image, error) {
	imgs, err := b.r.Images(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, len(imgs))
	for i, im := range imgs {
		out[i] = api.Image{Repository: im.Repository, Tag: im.Tag, Digest: im.Digest, MediaType: im.MediaType, Size: im.Size}
	}
	return out, nil
}

func (b apiBackend) DeleteImage(ctx context.Context, repo, ref string) error {
	err := b.r.DeleteManifest(ctx, repo, ref)
	var ae *apiError
	switch {
	case err == nil:
		return nil
	case IsNotFound(err):
		return fmt.Errorf("%w: image %s", api.ErrNotFound, api.FormatImageRef(repo, ref))
	case errors.As(err, &ae) && ae.status == 400:
		return fmt.Errorf("%w: image %s: %s", api.ErrInvalid, api.FormatImageRef(repo, ref), ae.message)
	}
	return err
}

func (b apiBackend) RegistryGC(ctx context.Context) (api.GCResult, error) {
	st, err := b.r.GC(ctx)
	return gcResult(st), err
}

var _ api.ImageGCGracer = apiBackend{}

func (b apiBackend) RegistryGCGrace(ctx context.Context, grace time.Duration) (api.GCResult, error) {
	st, err := b.r.GCGrace(ctx, grace)
	return gcResult(st), err
}

func gcResult(st GCStats) api.GCResult {
	return api.GCResult{BlobsDeleted: st.BlobsDeleted, BytesFreed: st.BytesFreed, UploadsDeleted: st.UploadsDeleted,
		BlobsKept: st.BlobsKept, BytesKept: st.BytesKept, Grace: api.Duration(st.Grace)}
}
