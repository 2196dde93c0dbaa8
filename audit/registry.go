package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageSource hands out images by repository and tag or digest;
// (*registry.Registry).Image, which reads the registry's files with no
// network hop, is one.
type ImageSource interface {
	Image(ctx context.Context, repo, ref string) (v1.Image, error)
}

// RegistryAuditor audits images of the embedded registry by repository and
// digest. Its Audit method is the one the job manager calls before a job
// first uses an image (jobs.Auditor).
type RegistryAuditor struct {
	Source  ImageSource
	Auditor *Auditor
	Options Options
	// LogDir, when set, keeps each audit's text report and log as
	// LogDir/<manifest digest hex>.log, for the user to read.
	LogDir string
}

// Audit audits repo@digest. reasons name rule, layer and path of each
// violation; err means the image could not be audited.
func (r *RegistryAuditor) Audit(ctx context.Context, repo, digest string) (passed bool, reasons []string, err error) {
	img, err := r.Source.Image(ctx, repo, digest)
	if err != nil {
		return false, nil, fmt.Errorf("open %s@%s: %w", repo, digest, err)
	}
	rep, err := r.Report(ctx, img, repo+"@"+digest, r.Options)
	if err != nil {
		return false, nil, err
	}
	return rep.Verdict == Pass, Reasons(rep), nil
}

// Report audits img, named ref in the report, with opts (a cached verdict
// serves unless opts.Force), and keeps its log in LogDir.
func (r *RegistryAuditor) Report(ctx context.Context, img v1.Image, ref string, opts Options) (*Report, error) {
	rep, err := r.Auditor.Audit(ctx, img, opts)
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", ref, err)
	}
	rep.Image = ref
	if r.LogDir != "" {
		if err := AppendLog(r.LogDir, rep); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// Reasons renders a report's violations one line each.
func Reasons(rep *Report) []string {
	var out []string
	for _, v := range rep.Violations {
		where := "image"
		if v.LayerIndex >= 0 {
			where = fmt.Sprintf("layer %d (%s)", v.LayerIndex, v.Layer)
		}
		if v.Path != "" {
			where += " " + v.Path
		}
		out = append(out, fmt.Sprintf("%s %s: %s", v.Rule, where, v.Detail))
	}
	return out
}

// Lines renders a report as the head of a job's log: the image and its
// digest, the base, each violation with rule id, layer and path, and the
// verdict; note (when not empty) follows the verdict.
func Lines(image string, rep *Report, note string) []string {
	out := []string{fmt.Sprintf("audit: image %s (manifest %s)", image, rep.ManifestDigest)}
	if rep.Base != nil {
		out = append(out, "audit: base "+rep.Base.Ref())
	}
	for _, r := range Reasons(rep) {
		out = append(out, "audit: "+r)
	}
	v := "audit: verdict PASS"
	if rep.Verdict != Pass {
		v = fmt.Sprintf("audit: verdict FAIL (%d violations)", len(rep.Violations))
	}
	out = append(out, v)
	if note != "" {
		out = append(out, "audit: "+note)
	}
	return out
}

// SupersededNote is what every surface says of an image approved before
// its base was superseded: it stays approved.
func SupersededNote(rep *Report, bases []Base) string {
	if rep.Verdict != Pass || rep.Base == nil {
		return ""
	}
	for _, b := range bases {
		if b.Digest == rep.Base.Digest && b.Superseded {
			return fmt.Sprintf("approved %s; its base has since been superseded", rep.Started.UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// AppendLog appends an audit's text report and log to
// dir/<manifest digest hex>.log, one file per image, every audit kept.
// The dir is made 0700 and the files 0600, like the rest of the data dir.
func AppendLog(dir string, rep *Report) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit log dir: %w", err)
	}
	name := strings.TrimPrefix(rep.ManifestDigest, "sha256:")
	name = strings.ReplaceAll(name, ":", "-")
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := rep.WriteText(f); err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	fmt.Fprintf(f, "\nlog:\n  %s\n\n", strings.Join(rep.Log, "\n  "))
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}
