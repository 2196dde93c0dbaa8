package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/audit"
	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/emulator"
)

// attachImageAudit adds `audit` to the `image` command.
func attachImageAudit(root *cobra.Command, g *globals) {
	for _, c := range root.Commands() {
		if c.Name() == "image" {
			c.AddCommand(newImageAuditCmd(g))
			return
		}
	}
	img := &cobra.Command{Use: "image", Short: "Work with images"}
	img.AddCommand(newImageAuditCmd(g))
	root.AddCommand(img)
}

type auditFlags struct {
	format     string
	ignore     []string
	ignoreFile string
	rules      []string
	bases      []string
	maxSize    int64
	force      bool
	noCache    bool
}

func newImageAuditCmd(g *globals) *cobra.Command {
	f := &auditFlags{}
	cmd := &cobra.Command{
		Use:   "audit IMAGE",
		Short: "Audit an image against the platform's image rules",
		Long: `Audit an image as the platform does before a job first uses it: built on a
current official base, every layer matching its diff_id, no malicious code,
protected base files unchanged, no new setuid root files, at most 9.5 GB.

IMAGE is one of:
  REPO:TAG, REPO@DIGEST   an image in the running emulator's registry
  PATH                    a docker-save tarball or an OCI layout directory
  docker:REF              an image in the local Docker engine (docker save)

When an emulator runs on the data dir, an image of its registry is audited
by the emulator (POST /api/v1/images/audit): the verdict is the one its jobs
use, kept once per image digest; an image approved before its base was
superseded stays approved. --force audits again. With no emulator running
(or with --base, --rules, --ignore or --max-size, which set a policy of
their own) the CLI audits by itself.

The official bases are those recorded in the data dir (malocal base build /
base add), plus any given with --base (same forms as IMAGE). Verdicts are
cached in the data dir by digest (not when --base is given): --force audits
again. Violations listed in .malocalignore (one "RULE" or "RULE PATH" a
line) or given with --ignore are reported as ignored; MA-BASE-002 and
MA-LAYER-001 cannot be ignored.

Exit status: 0 the image passes, 1 it violates a rule, 2 it could not be audited.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("format") && g.output == "json" {
				f.format = "json" // the global -o json
			}
			if err := runAudit(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), g, f, args[0]); err != nil {
				var ee *exitError
				if errors.As(err, &ee) {
					return err
				}
				return &exitError{code: 2, err: err}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.format, "format", "text", "report format: text, json or sarif (-o json also gives json)")
	fl.StringArrayVar(&f.ignore, "ignore", nil, `ignore a rule: "RULE" or "RULE PATH" (repeatable)`)
	fl.StringVar(&f.ignoreFile, "ignore-file", audit.IgnoreFile, "ignore file, read when it exists")
	fl.StringArrayVar(&f.rules, "rules", nil, "extra signature rules file (format: see audit/signatures.rules; repeatable)")
	fl.StringArrayVar(&f.bases, "base", nil, "also accept this image as a current official base (repeatable)")
	fl.Int64Var(&f.maxSize, "max-size", audit.DefaultMaxSize, "largest allowed image size in bytes, uncompressed")
	fl.BoolVar(&f.force, "force", false, "audit again even if a verdict is cached")
	fl.BoolVar(&f.noCache, "no-cache", false, "neither read nor store cached verdicts")
	return cmd
}

func runAudit(ctx context.Context, stdout, stderr io.Writer, g *globals, f *auditFlags, ref string) error {
	if f.format != "text" && f.format != "json" && f.format != "sarif" {
		return fmt.Errorf("--format %q: use text, json or sarif", f.format)
	}
	opts := audit.Options{MaxSize: f.maxSize, Force: f.force}
	lines, err := audit.ReadIgnoreFile(f.ignoreFile)
	if err != nil {
		return err
	}
	opts.Ignore = append(lines, f.ignore...)
	for _, p := range f.rules {
		sigs, err := readRules(p)
		if err != nil {
			return err
		}
		opts.Signatures = append(opts.Signatures, sigs...)
	}

	// The data dir is optional: without one (CI on a tarball) there is no
	// recorded base, cache or log, and --base names the bases.
	var dataDir string
	if p, err := g.dataDirPath(); err == nil {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			dataDir = p
		}
	}
	if dataDir != "" && !isLocalImage(ref) && len(f.bases) == 0 && len(f.rules) == 0 && len(opts.Ignore) == 0 && f.maxSize == audit.DefaultMaxSize && !f.noCache {
		if _, err := (&emulator.DataDir{Path: dataDir}).Running(); err == nil {
			return auditThroughAPI(ctx, stdout, g, f, ref)
		}
	}
	var catalog multiCatalog
	if dataDir != "" {
		catalog = append(catalog, audit.CatalogFile(baseimage.OpenCatalog(dataDir).Path()))
	}
	var extra audit.StaticCatalog
	var cleanups []func() error
	defer func() {
		for _, c := range cleanups {
			c()
		}
	}()
	open := func(ref string) (v1.Image, error) {
		img, cleanup, err := openAuditImage(ctx, g, ref)
		if cleanup != nil {
			cleanups = append(cleanups, cleanup)
		}
		return img, err
	}
	for _, b := range f.bases {
		img, err := open(b)
		if err != nil {
			return fmt.Errorf("--base %s: %w", b, err)
		}
		rec, err := audit.BaseFromImage(b, "", img)
		if err != nil {
			return fmt.Errorf("--base %s: %w", b, err)
		}
		extra = append(extra, rec)
	}
	catalog = append(catalog, extra)

	// Verdicts reached with bases given on the command line must not be
	// served to the emulator's jobs: no cache then.
	var cache audit.Cache
	// A running emulator holds the cache file open for its jobs' audits:
	// waiting for it would only time out, so audit without it then.
	_, runErr := (&emulator.DataDir{Path: dataDir}).Running()
	if dataDir != "" && !f.noCache && len(f.bases) == 0 && runErr != nil {
		p := filepath.Join(dataDir, audit.VerdictsFile)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("audit dir: %w", err)
		}
		bc, err := audit.OpenBoltCache(p)
		if err != nil {
			// An emulator starting just now may hold the file.
			fmt.Fprintf(stderr, "malocal: verdict cache unavailable, auditing without it: %v\n", err)
		} else {
			defer bc.Close()
			cache = bc
		}
	}

	img, err := open(ref)
	if err != nil {
		return err
	}
	rep, err := audit.NewAuditor(catalog, cache).Audit(ctx, img, opts)
	if err != nil {
		return err
	}
	rep.Image = ref
	if rep.Cached {
		if bases, err := catalog.Bases(ctx); err == nil {
			rep.Note = audit.SupersededNote(rep, bases)
		}
	}
	if dataDir != "" {
		if err := audit.AppendLog(filepath.Join(dataDir, "audit", "logs"), rep); err != nil {
			fmt.Fprintf(stderr, "malocal: %v\n", err)
		}
	}
	return writeAuditReport(stdout, f.format, ref, rep)
}

func writeAuditReport(stdout io.Writer, format, ref string, rep *audit.Report) error {
	var err error
	switch format {
	case "json":
		err = rep.WriteJSON(stdout)
	case "sarif":
		err = rep.WriteSARIF(stdout)
	default:
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Verdict != audit.Pass {
		return &exitError{code: 1, err: fmt.Errorf("%s failed the audit: %d violations", ref, len(rep.Violations))}
	}
	return nil
}

// isLocalImage says whether ref names an image outside the registry: the
// Docker engine's, or a file.
func isLocalImage(ref string) bool {
	if strings.HasPrefix(ref, "docker:") {
		return true
	}
	_, err := os.Stat(ref)
	return err == nil
}

// auditThroughAPI asks the running emulator for its verdict of ref, an
// image of its registry: the one verdict its jobs use too.
func auditThroughAPI(ctx context.Context, stdout io.Writer, g *globals, f *auditFlags, ref string) error {
	repo, tag, err := api.ParseImageRef(ref)
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var a *api.ImageAudit
	if f.force {
		a, err = c.AuditImage(ctx, repo, tag)
	} else {
		a, err = c.AuditImageOnce(ctx, repo, tag)
	}
	if err != nil {
		return err
	}
	if a.Report == nil {
		return fmt.Errorf("the emulator answered no report for %s", ref)
	}
	return writeAuditReport(stdout, f.format, ref, reportFromAPI(ref, a))
}

// reportFromAPI turns the API's report back into the audit's, to print it
// the same way as a local audit.
func reportFromAPI(ref string, a *api.ImageAudit) *audit.Report {
	r := a.Report
	conv := func(vs []api.AuditViolation) []audit.Violation {
		out := make([]audit.Violation, len(vs))
		for i, v := range vs {
			out[i] = audit.Violation{Rule: v.Rule, Layer: v.Layer, LayerIndex: v.LayerIndex, Path: v.Path, Detail: v.Detail}
		}
		return out
	}
	rep := &audit.Report{Verdict: audit.Verdict(r.Verdict), Image: ref, ManifestDigest: r.ManifestDigest, ConfigDigest: r.ConfigDigest,
		Layers: r.Layers, AddedLayers: r.AddedLayers, Size: r.Size, Violations: conv(r.Violations), Ignored: conv(r.Ignored),
		Log: r.Log, Started: r.Started, Duration: time.Duration(r.Duration), Cached: r.Cached, Note: a.Note}
	if r.Base != nil {
		rep.Base = &audit.Base{Name: r.Base.Name, Tag: r.Base.Tag, Digest: r.Base.Digest, Superseded: r.Base.Superseded, SupersededBy: r.Base.SupersededBy}
	}
	return rep
}

func readRules(p string) ([]audit.Signature, error) {
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("--rules: %w", err)
	}
	defer fh.Close()
	sigs, err := audit.ParseSignatures(fh)
	if err != nil {
		return nil, fmt.Errorf("--rules %s: %w", p, err)
	}
	return sigs, nil
}

// openAuditImage opens docker:REF from the Docker engine, a path as a
// tarball or OCI layout, and anything else from the emulator's registry.
func openAuditImage(ctx context.Context, g *globals, ref string) (v1.Image, func() error, error) {
	if r, ok := strings.CutPrefix(ref, "docker:"); ok {
		return audit.FromDockerEngine(ctx, r)
	}
	if _, err := os.Stat(ref); err == nil {
		img, err := audit.FromTarball(ref)
		return img, nil, err
	}
	reg, err := g.baseRegistry("")
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not a file, and no registry to find it in: %w", ref, err)
	}
	r, err := name.ParseReference(ref, name.Insecure, name.WithDefaultRegistry(strings.TrimPrefix(reg, "http://")))
	if err != nil {
		return nil, nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	if a := g.registryAuth(""); a != nil {
		opts = append(opts, remote.WithAuth(a))
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s from the registry: %w", r, err)
	}
	return img, nil, nil
}

// multiCatalog is the union of catalogs.
type multiCatalog []audit.BaseCatalog

func (m multiCatalog) Bases(ctx context.Context) ([]audit.Base, error) {
	var out []audit.Base
	for _, c := range m {
		bs, err := c.Bases(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	return out, nil
}
