package emulator

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/jobs"
	"github.com/malocal/malocal/registry"
)

// auditAPI serves the console's image audit routes (api.AuditBackend):
// stored verdicts read from the verdict cache, and audits run again with
// the job runner's own auditor, so a new verdict counts for the next job.
type auditAPI struct {
	reg     *registry.Registry
	auditor *audit.RegistryAuditor
	cache   audit.Cache
	catalog audit.BaseCatalog
}

var _ api.AuditBackend = auditAPI{}

func (e *Emulator) auditAPI() auditAPI {
	return auditAPI{reg: e.svc.reg, auditor: e.svc.auditor, cache: e.svc.auditCache,
		catalog: audit.CatalogFile(baseimage.OpenCatalog(e.dd.Path).Path())}
}

func (a auditAPI) ImageAudit(ctx context.Context, repo, ref string) (*api.ImageAudit, error) {
	out, img, err := a.describe(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("image %s: config digest: %w", api.FormatImageRef(repo, ref), err)
	}
	rep, ok, err := a.cache.Get(ctx, out.Digest, cd.String())
	if err != nil {
		return nil, err
	}
	if ok {
		rep.Cached = true
		setReport(out, rep)
		out.Note = note(ctx, a.catalog, rep)
	}
	return out, nil
}

func (a auditAPI) AuditImage(ctx context.Context, repo, ref string) (*api.ImageAudit, error) {
	out, img, err := a.describe(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	opts := a.auditor.Options
	opts.Force = true
	rep, err := a.auditor.Report(ctx, img, repo+"@"+out.Digest, opts)
	if err != nil {
		return nil, err
	}
	setReport(out, rep)
	out.Note = note(ctx, a.catalog, rep)
	return out, nil
}

// describe resolves repo:ref and finds the official base it is built on.
func (a auditAPI) describe(ctx context.Context, repo, ref string) (*api.ImageAudit, v1.Image, error) {
	name := api.FormatImageRef(repo, ref)
	img, err := a.reg.Image(ctx, repo, ref)
	if registry.IsNotFound(err) {
		return nil, nil, fmt.Errorf("%w: image %s is not in the registry", api.ErrNotFound, name)
	}
	if err != nil {
		return nil, nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: digest: %w", name, err)
	}
	out := &api.ImageAudit{Repository: repo, Reference: ref, Digest: d.String()}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: config: %w", name, err)
	}
	bases, err := a.catalog.Bases(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bases {
		if b.Digest == out.Digest {
			out.IsBase = true
		}
	}
	// The same rule as the auditor's: the console names the base it uses.
	if b := audit.MatchBase(bases, cf.RootFS.DiffIDs); b != nil {
		out.Base = apiBase(*b)
	}
	return out, img, nil
}

func apiBase(b audit.Base) *api.AuditBase {
	return &api.AuditBase{Name: b.Name, Tag: b.Tag, Digest: b.Digest, Superseded: b.Superseded, SupersededBy: b.SupersededBy}
}

// setReport puts rep's verdict and report, in the API's terms, into o.
func setReport(o *api.ImageAudit, rep *audit.Report) {
	conv := func(vs []audit.Violation) []api.AuditViolation {
		out := make([]api.AuditViolation, len(vs))
		for i, v := range vs {
			out[i] = api.AuditViolation{Rule: v.Rule, Layer: v.Layer, LayerIndex: v.LayerIndex, Path: v.Path, Detail: v.Detail}
		}
		return out
	}
	r := &api.AuditReport{
		Verdict: string(rep.Verdict), ManifestDigest: rep.ManifestDigest, ConfigDigest: rep.ConfigDigest,
		Layers: rep.Layers, AddedLayers: rep.AddedLayers, Size: rep.Size,
		Violations: conv(rep.Violations), Ignored: conv(rep.Ignored), Log: rep.Log,
		Started: rep.Started, Duration: api.Duration(rep.Duration.Round(time.Millisecond)), Cached: rep.Cached,
	}
	if rep.Base != nil {
		r.Base = apiBase(*rep.Base)
	}
	o.Verdict, o.Report = r.Verdict, r
}

// verdictAuditor is the emulator's one audit truth per manifest digest,
// whoever asks (a job, the console, `malocal image audit`): it audits
// through the shared RegistryAuditor and its verdict cache. Its two
// methods are the job core's Auditor.
var _ jobs.Auditor = verdictAuditor{}

type verdictAuditor struct {
	ra      *audit.RegistryAuditor
	catalog audit.BaseCatalog
}

func (e *Emulator) verdicts() verdictAuditor {
	return verdictAuditor{ra: e.svc.auditor, catalog: audit.CatalogFile(baseimage.OpenCatalog(e.dd.Path).Path())}
}

// Audit returns the verdict of repo@digest: the cached one when there is
// one, else a new audit's (then stored). err means it could not be audited.
func (v verdictAuditor) Audit(ctx context.Context, repo, digest string) (jobs.Verdict, error) {
	img, err := v.ra.Source.Image(ctx, repo, digest)
	if err != nil {
		return jobs.Verdict{}, fmt.Errorf("open %s@%s: %w", repo, digest, err)
	}
	rep, err := v.ra.Report(ctx, img, repo+"@"+digest, v.ra.Options)
	if err != nil {
		return jobs.Verdict{}, err
	}
	return v.verdict(ctx, repo+"@"+digest, rep), nil
}

// Cached returns the stored verdict of the image with manifest digest
// digest, without auditing; ok is false when it was never audited.
func (v verdictAuditor) Cached(ctx context.Context, digest string) (jobs.Verdict, bool, error) {
	rep, ok, err := v.ra.Auditor.Cached(ctx, digest, v.ra.Options)
	if err != nil || !ok {
		return jobs.Verdict{}, false, err
	}
	return v.verdict(ctx, digest, rep), true, nil
}

func (v verdictAuditor) verdict(ctx context.Context, image string, rep *audit.Report) jobs.Verdict {
	return jobs.Verdict{Passed: rep.Verdict == audit.Pass, Cached: rep.Cached, AuditedAt: rep.Started,
		Lines: audit.Lines(image, rep, note(ctx, v.catalog, rep))}
}

// note is what surfaces add to a report: that an approved image's base has
// since been superseded (it stays approved), else nothing.
func note(ctx context.Context, catalog audit.BaseCatalog, rep *audit.Report) string {
	bases, err := catalog.Bases(ctx)
	if err != nil {
		return ""
	}
	return audit.SupersededNote(rep, bases)
}

// AuditImageOnce is `malocal image audit` through the API: the stored
// verdict when there is one, else a new audit, stored for jobs.
func (a auditAPI) AuditImageOnce(ctx context.Context, repo, ref string) (*api.ImageAudit, error) {
	out, img, err := a.describe(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	rep, err := a.auditor.Report(ctx, img, repo+"@"+out.Digest, a.auditor.Options)
	if err != nil {
		return nil, err
	}
	setReport(out, rep)
	out.Note = note(ctx, a.catalog, rep)
	return out, nil
}
