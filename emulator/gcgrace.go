package emulator

import (
	"context"
	"fmt"
	"time"

	"github.com/malocal/malocal/api"
)

var _ api.ImageGCGracer = apiBackend{}

// RegistryGCGrace passes `malocal registry gc --grace` to the registry.
func (b apiBackend) RegistryGCGrace(ctx context.Context, grace time.Duration) (api.GCResult, error) {
	if g, ok := b.ImageBackend.(api.ImageGCGracer); ok {
		return g.RegistryGCGrace(ctx, grace)
	}
	return api.GCResult{}, fmt.Errorf("%w: the registry's GC has a fixed grace period", api.ErrUnavailable)
}
