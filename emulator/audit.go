package emulator

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/baseimage"
)

// Paths of the audit's state in the data dir.
const (
	auditCacheFile = "audit.db"
	auditLogDir    = "audit"
)

// baseCatalog shows baseimage's catalog file to the auditor. It reads the
// file on every audit, so bases that `malocal base build` publishes from
// another process count at once.
type baseCatalog struct{ c *baseimage.Catalog }

var _ audit.BaseCatalog = baseCatalog{}

func (b baseCatalog) Bases(context.Context) ([]audit.Base, error) {
	recs, err := b.c.List()
	if err != nil {
		return nil, err
	}
	out := make([]audit.Base, 0, len(recs))
	for _, r := range recs {
		base := audit.Base{Name: r.Name, Tag: r.Tag, Digest: r.Digest, Superseded: r.Superseded, SupersededBy: r.SupersededBy}
		for _, d := range r.DiffIDs {
			h, err := v1.NewHash(d)
			if err != nil {
				return nil, fmt.Errorf("base catalog: %s: diff_id %q: %w", r.Ref(), d, err)
			}
			base.DiffIDs = append(base.DiffIDs, h)
		}
		out = append(out, base)
	}
	return out, nil
}
