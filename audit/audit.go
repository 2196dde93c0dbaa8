package audit

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/malocal/malocal/audit/lineage"
)

// DefaultMaxSize is the platform's limit on an image's size: 9.5 GB.
const DefaultMaxSize int64 = 9_500_000_000

// Base is one build of an official base image. The JSON names are those of
// the base catalog file (bases.json) that baseimage keeps.
type Base struct {
	Name         string    `json:"name"`
	Tag          string    `json:"tag"`
	Digest       string    `json:"digest"`
	DiffIDs      []v1.Hash `json:"diff_ids"`
	Superseded   bool      `json:"superseded"`
	SupersededBy string    `json:"superseded_by,omitempty"`
}

// Ref is name:tag@digest, or name@digest without a tag.
func (b Base) Ref() string {
	if b.Tag == "" {
		return b.Name + "@" + b.Digest
	}
	return b.Name + ":" + b.Tag + "@" + b.Digest
}

// BaseCatalog answers which official bases exist, current and superseded.
type BaseCatalog interface {
	Bases(ctx context.Context) ([]Base, error)
}

// Verdict is the outcome of an audit.
type Verdict string

// The verdicts.
const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
)

// Violation is one broken rule.
type Violation struct {
	Rule string `json:"rule"`
	// Layer is the diff_id of the layer as the config lists it; empty for
	// the image as a whole.
	Layer string `json:"layer,omitempty"`
	// LayerIndex counts from 0 at the bottom layer; -1 for the whole image.
	LayerIndex int    `json:"layer_index"`
	Path       string `json:"path,omitempty"`
	Detail     string `json:"detail"`
}

// Report is the result of an audit; it is also what the verdict cache keeps.
type Report struct {
	Verdict        Verdict `json:"verdict"`
	Image          string  `json:"image,omitempty"` // the caller's name for the image
	ManifestDigest string  `json:"manifest_digest"`
	ConfigDigest   string  `json:"config_digest"`
	// Policy fingerprints the options the verdict was reached under; a
	// cached verdict is used only under the same options. The base catalog
	// is not part of it: use one Cache with one catalog.
	Policy      string        `json:"policy"`
	Base        *Base         `json:"base,omitempty"`
	Layers      int           `json:"layers"`
	AddedLayers int           `json:"added_layers"`
	Size        int64         `json:"size"` // uncompressed bytes of all layers
	Violations  []Violation   `json:"violations"`
	Ignored     []Violation   `json:"ignored,omitempty"`
	Log         []string      `json:"log"`
	Started     time.Time     `json:"started"`
	Duration    time.Duration `json:"duration_ns"`
	Cached      bool          `json:"cached"` // served from the verdict cache
	// Note says what the verdict alone does not (SupersededNote).
	Note string `json:"note,omitempty"`
}

// Options tune one audit. The zero value applies the platform's rules.
type Options struct {
	MaxSize int64  // most uncompressed bytes of the whole image; default DefaultMaxSize
	Limits  Limits // per-layer caps
	// Signatures are added to the built-in ones (BuiltinSignatures) unless
	// NoBuiltinSignatures is set.
	Signatures          []Signature
	NoBuiltinSignatures bool
	Protected           []string // default DefaultProtected
	// Ignore holds lines of a .malocalignore file: "RULE" or "RULE PATH",
	// PATH a path.Match pattern or a directory prefix ending in "/".
	// MA-BASE-002 and MA-LAYER-001 cannot be ignored.
	Ignore      []string
	Force       bool // audit again even if the cache holds a verdict
	Concurrency int  // layers read at once; default min(GOMAXPROCS, 4)
}

// resolved are Options with defaults applied and parts prepared.
type resolved struct {
	Options
	sigs   *matcher
	prot   *protector
	ignore []ignoreRule
	policy string
}

func (o Options) resolve() (*resolved, error) {
	r := &resolved{Options: o}
	if r.MaxSize <= 0 {
		r.MaxSize = DefaultMaxSize
	}
	if r.Limits.MaxEntries <= 0 {
		r.Limits.MaxEntries = defaultMaxEntries
	}
	if r.Limits.MaxLayerBytes <= 0 {
		r.Limits.MaxLayerBytes = r.MaxSize
	}
	if r.Limits.MaxRatio <= 0 {
		r.Limits.MaxRatio = defaultMaxRatio
	}
	if r.Protected == nil {
		r.Protected = DefaultProtected
	}
	if r.Concurrency <= 0 {
		r.Concurrency = min(runtime.GOMAXPROCS(0), 4)
	}
	var sigs []Signature
	if !r.NoBuiltinSignatures {
		sigs = BuiltinSignatures()
	}
	sigs = append(sigs, r.Signatures...)
	r.sigs = newMatcher(sigs)
	var err error
	if r.prot, err = newProtector(r.Protected); err != nil {
		return nil, err
	}
	if r.ignore, err = parseIgnore(r.Ignore); err != nil {
		return nil, err
	}
	// The policy covers what a caller chose, not the built-in signature
	// list: an upgrade of malocal must not re-audit, and so possibly stop,
	// images that were approved (DESIGN 1.1); Force audits again.
	h := sha256.New()
	fmt.Fprintf(h, "v1\x00%d\x00%d\x00%d\x00%g\x00%t\x00", r.MaxSize, r.Limits.MaxEntries, r.Limits.MaxLayerBytes, r.Limits.MaxRatio, r.NoBuiltinSignatures)
	for _, s := range r.Signatures {
		fmt.Fprintf(h, "sig\x00%s\x00%t\x00%x\x00", s.Name, s.NoCase, s.Pattern)
	}
	for _, p := range r.Protected {
		fmt.Fprintf(h, "prot\x00%s\x00", p)
	}
	for _, i := range r.ignore {
		fmt.Fprintf(h, "ign\x00%s\x00%s\x00", i.rule, i.pattern)
	}
	r.policy = fmt.Sprintf("sha256:%x", h.Sum(nil))
	return r, nil
}

// Auditor audits images against one base catalog. It keeps in memory, per
// base, the merged file index of the base and which stored layer blobs have
// already been seen to hash to their diff_ids, so that auditing images on a
// known base reads only the layers added on top of it. An Auditor is safe
// for concurrent use.
type Auditor struct {
	bases BaseCatalog
	cache Cache

	mu       sync.Mutex
	indexes  map[string]*fsIndex // by the base's chain of diff_ids
	order    []string            // indexes keys, oldest first
	verified map[string]verified // by stored blob digest
}

type verified struct {
	diffID v1.Hash
	size   int64
}

// maxIndexes bounds the base indexes kept in memory.
const maxIndexes = 8

// NewAuditor returns an Auditor over bases; cache may be nil.
func NewAuditor(bases BaseCatalog, cache Cache) *Auditor {
	return &Auditor{bases: bases, cache: cache, indexes: map[string]*fsIndex{}, verified: map[string]verified{}}
}

// Audit audits img once, without a verdict cache.
func Audit(ctx context.Context, img v1.Image, bases BaseCatalog, opts Options) (*Report, error) {
	return NewAuditor(bases, nil).Audit(ctx, img, opts)
}

// Audit checks img against the rules. A returned error means the image
// could not be audited (it could not be read, or the context ended); a
// broken rule, including a corrupt or hostile layer, is a Fail verdict.
func (a *Auditor) Audit(ctx context.Context, img v1.Image, opts Options) (*Report, error) {
	start := time.Now()
	ro, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("audit options: %w", err)
	}
	md, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("config digest: %w", err)
	}
	if a.cache != nil && !ro.Force {
		prev, ok, err := a.cache.Get(ctx, md.String(), cd.String())
		if err != nil {
			return nil, fmt.Errorf("verdict cache: %w", err)
		}
		if ok && prev.Policy == ro.policy {
			prev.Cached = true
			prev.Log = append(prev.Log, fmt.Sprintf("%s: verdict %s served from the cache (audited %s); use --force to audit again",
				time.Now().UTC().Format(time.RFC3339), prev.Verdict, prev.Started.UTC().Format(time.RFC3339)))
			return prev, nil
		}
	}
	rep := &Report{ManifestDigest: md.String(), ConfigDigest: cd.String(), Policy: ro.policy, Started: start.UTC(), Violations: []Violation{}}
	rep.logf("audit of image %s (config %s)", md, cd)
	if err := a.run(ctx, img, rep, ro); err != nil {
		return nil, err
	}
	rep.finish(ro, time.Since(start))
	if a.cache != nil {
		if err := a.cache.Put(ctx, rep); err != nil {
			return nil, fmt.Errorf("verdict cache: %w", err)
		}
	}
	return rep, nil
}

func (r *Report) logf(format string, a ...any) {
	r.Log = append(r.Log, fmt.Sprintf(format, a...))
}

func (r *Report) add(v Violation) { r.Violations = append(r.Violations, v) }

func (a *Auditor) run(ctx context.Context, img v1.Image, rep *Report, ro *resolved) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read image config: %w", err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	rep.Layers = len(layers)
	if len(layers) != len(diffIDs) {
		rep.add(Violation{Rule: RuleLayerDiffID, LayerIndex: -1, Detail: fmt.Sprintf("the manifest has %d layers but the config lists %d diff_ids", len(layers), len(diffIDs))})
		return nil
	}
	if a.bases == nil {
		return errors.New("no base catalog")
	}
	bases, err := a.bases.Bases(ctx)
	if err != nil {
		return fmt.Errorf("base catalog: %w", err)
	}
	base := matchBase(bases, diffIDs)
	nBase := 0
	if base == nil {
		// With no base to compare with, the base's own files would be
		// judged as added (its setuid binaries…): that is reported alone,
		// besides what the layers' signature scan finds.
		detail := fmt.Sprintf("no official base's diff_ids are a prefix of the image's %d diff_ids (%d bases known); build FROM an official base, and do not squash", len(diffIDs), len(bases))
		if n, t := cfg.Config.Labels["org.malocal.base.name"], cfg.Config.Labels["org.malocal.base.tag"]; n != "" && t != "" {
			for _, b := range bases {
				if b.Name == n && b.Tag == t && !b.Superseded {
					detail = fmt.Sprintf("the image is built on another build of base %s:%s than the official one (%s): rebuild it FROM that base, or register the build it was made on (push it, then `malocal base add %s:%s`)", n, t, b.Digest, n, t)
				}
			}
		}
		rep.add(Violation{Rule: RuleBaseLineage, LayerIndex: -1, Detail: detail})
		rep.logf("no official base matched; all %d layers are scanned for malicious code, not compared with a base", len(layers))
	} else {
		nBase = len(base.DiffIDs)
		rep.Base = base
		rep.logf("base %s, %d layers", base.Ref(), nBase)
		if base.Superseded {
			rep.add(Violation{Rule: RuleBaseOutdated, LayerIndex: -1, Detail: fmt.Sprintf("base image mismatch: %s:%s (%s) has been superseded; rebuild on %s", base.Name, base.Tag, base.Digest, currentFor(*base, bases))})
		}
	}
	rep.AddedLayers = len(layers) - nBase
	ix, err := a.baseIndex(ctx, layers[:nBase], diffIDs[:nBase], rep, ro)
	if err != nil {
		return err
	}
	size := ix.size
	reads := make([]*layerRead, len(layers))
	took := make([]time.Duration, len(layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(ro.Concurrency)
	for i := nBase; i < len(layers); i++ {
		g.Go(func() error {
			t := time.Now()
			// The stored digest is not verified here: the diff_id check
			// covers what is scanned, and added layers are not cached.
			spec := readSpec{
				parse: true, keep: true, sigs: ro.sigs, limits: ro.Limits,
				hashPath: func(e *entry) bool {
					b := ix.files[e.path]
					return b != nil && b.hash != nil
				},
			}
			r, err := readLayer(gctx, layers[i], diffIDs[i], spec)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i, diffIDs[i], err)
			}
			reads[i], took[i] = r, time.Since(t)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	ch := newChecker(ix, ro.prot, rep)
	for i := nBase; i < len(layers); i++ {
		r := reads[i]
		size += r.size
		rep.logf("layer %d %s added: %s %s → %s, %d entries, read in %s", i, diffIDs[i], r.format, mib(r.rawBytes), mib(r.size), len(r.entries), took[i].Round(time.Millisecond))
		layerViolations(rep, i, diffIDs[i], r)
		if base != nil {
			ch.layer(i, diffIDs[i].String(), r.entries)
		}
	}
	rep.Size = size
	if size > ro.MaxSize {
		rep.add(Violation{Rule: RuleSize, LayerIndex: -1, Detail: fmt.Sprintf("image is %d bytes uncompressed, above the limit of %d", size, ro.MaxSize)})
	}
	return nil
}

// layerViolations files the layer's own findings and checks its diff_id.
func layerViolations(rep *Report, i int, want v1.Hash, r *layerRead) {
	for _, v := range r.bad {
		v.Layer, v.LayerIndex = want.String(), i
		rep.add(v)
	}
	if !r.complete {
		rep.add(Violation{Rule: RuleLayerDiffID, Layer: want.String(), LayerIndex: i, Detail: "layer could not be read to its end, so its diff_id is not verified"})
		return
	}
	if r.diffID != want {
		rep.add(Violation{Rule: RuleLayerDiffID, Layer: want.String(), LayerIndex: i, Detail: fmt.Sprintf("layer hashes to %s, not to the diff_id %s the config lists", r.diffID, want)})
	}
}

// storedDigest is the digest to verify the stored blob against, or zero
// when the blob is not stored compressed (a docker-save tarball) and asking
// for it would mean compressing the layer.
func storedDigest(l v1.Layer) (v1.Hash, error) {
	if _, ok := l.(rawLayer); ok {
		return v1.Hash{}, nil
	}
	d, err := l.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("layer digest: %w", err)
	}
	return d, nil
}

// matchBase returns the base the image is built on, by lineage.Match (the
// one rule the catalog and the console use too).
func matchBase(bases []Base, diffIDs []v1.Hash) *Base {
	i := lineage.Match(Candidates(bases), hashStrings(diffIDs))
	if i < 0 {
		return nil
	}
	c := bases[i]
	return &c
}

// MatchBase returns the base, of bases, that an image with these
// rootfs.diff_ids is built on, or nil.
func MatchBase(bases []Base, diffIDs []v1.Hash) *Base { return matchBase(bases, diffIDs) }

// Candidates turns bases into what lineage.Match reads.
func Candidates(bases []Base) []lineage.Candidate {
	out := make([]lineage.Candidate, len(bases))
	for i, b := range bases {
		out[i] = lineage.Candidate{DiffIDs: hashStrings(b.DiffIDs), Superseded: b.Superseded}
	}
	return out
}

func hashStrings(hs []v1.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.String()
	}
	return out
}

// currentFor names the build that replaced b.
func currentFor(b Base, bases []Base) string {
	if b.SupersededBy != "" {
		return b.SupersededBy
	}
	for _, o := range bases {
		if o.Name == b.Name && !o.Superseded {
			return o.Ref()
		}
	}
	return "the current build of " + b.Name
}

// baseIndex returns the merged file index of the base layers, reading only
// what this Auditor has not seen before, and files the base layers'
// violations.
func (a *Auditor) baseIndex(ctx context.Context, layers []v1.Layer, diffIDs []v1.Hash, rep *Report, ro *resolved) (*fsIndex, error) {
	if len(layers) == 0 {
		ix := newIndex()
		ix.seal()
		return ix, nil
	}
	key := chainKey(diffIDs)
	digests := make([]v1.Hash, len(layers))
	a.mu.Lock()
	ix := a.indexes[key]
	known := 0
	var size int64
	for i, l := range layers {
		d, err := storedDigest(l)
		if err != nil {
			a.mu.Unlock()
			return nil, err
		}
		digests[i] = d
		if v, ok := a.verified[d.String()]; ok && d.Algorithm != "" && v.diffID == diffIDs[i] {
			known++
			size += v.size
		}
	}
	a.mu.Unlock()
	if ix != nil && known == len(layers) {
		rep.logf("base layers 0-%d verified by an earlier audit and indexed: not read", len(layers)-1)
		return ix, nil
	}
	// Build the index (or only hash, when the index is known) layer by layer.
	build := ix == nil
	next := newIndex()
	good := true
	size = 0
	for i, l := range layers {
		t := time.Now()
		spec := readSpec{parse: build, keep: build, limits: ro.Limits, wantDigest: digests[i]}
		if build {
			spec.hashPath = func(e *entry) bool { return ro.prot.covers(e.path) || e.setuidRoot() || e.hasCaps() }
		}
		r, err := readLayer(ctx, l, diffIDs[i], spec)
		if err != nil {
			return nil, fmt.Errorf("base layer %d (%s): %w", i, diffIDs[i], err)
		}
		layerViolations(rep, i, diffIDs[i], r)
		if len(r.bad) > 0 || !r.complete || r.diffID != diffIDs[i] {
			good = false
		}
		if build {
			next.apply(r.entries)
		}
		size += r.size
		rep.logf("layer %d %s base: %s %s → %s, %s in %s", i, diffIDs[i], r.format, mib(r.rawBytes), mib(r.size),
			map[bool]string{true: "hashed and indexed", false: "hashed"}[build], time.Since(t).Round(time.Millisecond))
		if good && digests[i].Algorithm != "" {
			a.mu.Lock()
			a.verified[digests[i].String()] = verified{diffID: diffIDs[i], size: r.size}
			a.mu.Unlock()
		}
	}
	if !build {
		return ix, nil
	}
	next.size = size
	next.seal()
	if good {
		a.mu.Lock()
		if _, ok := a.indexes[key]; !ok {
			a.indexes[key] = next
			a.order = append(a.order, key)
			if len(a.order) > maxIndexes {
				delete(a.indexes, a.order[0])
				a.order = a.order[1:]
			}
		}
		a.mu.Unlock()
	}
	return next, nil
}

func chainKey(diffIDs []v1.Hash) string {
	h := sha256.New()
	for _, d := range diffIDs {
		fmt.Fprintf(h, "%s\n", d)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// finish applies the ignore rules, caps repetitive findings, sorts, and
// sets the verdict.
func (r *Report) finish(ro *resolved, d time.Duration) {
	var keep []Violation
	for _, v := range r.Violations {
		if ig := matchIgnore(ro.ignore, v); ig {
			r.Ignored = append(r.Ignored, v)
			continue
		}
		keep = append(keep, v)
	}
	sort.SliceStable(keep, func(i, j int) bool {
		if keep[i].LayerIndex != keep[j].LayerIndex {
			return keep[i].LayerIndex < keep[j].LayerIndex
		}
		return keep[i].Rule < keep[j].Rule
	})
	r.Violations = capViolations(keep, maxPerRuleLayer)
	if r.Violations == nil {
		r.Violations = []Violation{} // "violations": [] in JSON, not null
	}
	r.Verdict = Pass
	if len(r.Violations) > 0 {
		r.Verdict = Fail
	}
	r.Duration = d
	r.logf("verdict %s: %d violations, %d ignored, %s uncompressed, in %s", r.Verdict, len(r.Violations), len(r.Ignored), mib(r.Size), d.Round(time.Millisecond))
	for _, v := range r.Violations {
		r.logf("%s layer %d %s %s: %s", v.Rule, v.LayerIndex, v.Layer, v.Path, v.Detail)
	}
}

// maxPerRuleLayer bounds the findings of one rule in one layer, so that a
// hostile layer of a million bad entries gives a readable report.
const maxPerRuleLayer = 50

func capViolations(vs []Violation, n int) []Violation {
	type k struct {
		rule  string
		layer int
	}
	count := map[k]int{}
	var out []Violation
	for _, v := range vs {
		key := k{v.Rule, v.LayerIndex}
		count[key]++
		if count[key] <= n {
			out = append(out, v)
		}
	}
	for _, v := range vs {
		key := k{v.Rule, v.LayerIndex}
		if c := count[key]; c > n {
			out = append(out, Violation{Rule: v.Rule, Layer: v.Layer, LayerIndex: v.LayerIndex, Detail: fmt.Sprintf("and %d more %s findings in this layer", c-n, v.Rule)})
			count[key] = 0
		}
	}
	return out
}

// checker applies added layers in order over the base index and files
// protected-path and setuid findings.
type checker struct {
	base *fsIndex
	prot *protector
	rep  *Report
	// files holds the regular files of the added layers so far, for
	// resolving hardlinks to them.
	files map[string]*entry
}

func newChecker(base *fsIndex, prot *protector, rep *Report) *checker {
	return &checker{base: base, prot: prot, rep: rep, files: map[string]*entry{}}
}

func (c *checker) layer(i int, diffID string, es []entry) {
	add := func(rule, p, format string, a ...any) {
		c.rep.add(Violation{Rule: rule, Layer: diffID, LayerIndex: i, Path: p, Detail: fmt.Sprintf(format, a...)})
	}
	retyped := map[string]bool{} // protected base paths already reported as retyped in this layer
	for k := range es {
		e := &es[k]
		// On a merged-/usr base, /bin is a symlink to usr/bin; an entry
		// below it (bin/ls, or a whiteout bin/.wh.ls) makes the layer's
		// /bin a directory, which hides the base's /bin when the layers
		// are stacked.
		for d := path.Dir(e.path); d != "/"; d = path.Dir(d) {
			if b := c.base.files[d]; b != nil && typeOf(b) != kindDir && c.prot.covers(d) && !retyped[d] {
				retyped[d] = true
				add(RuleProtRetyped, d, "protected base %s would become a directory: the layer has %s below it", typeOf(b), e.path)
			}
		}
		switch e.kind {
		case kindWhiteout:
			if hidden := c.base.under(e.path, true, c.prot); len(hidden) > 0 {
				add(RuleProtDeleted, e.path, "whiteout deletes protected base content (%s)", sample(hidden))
			}
			delete(c.files, e.path)
			continue
		case kindOpaque:
			if hidden := c.base.under(e.path, false, c.prot); len(hidden) > 0 {
				add(RuleProtDeleted, e.path, "opaque directory hides protected base content (%s)", sample(hidden))
			}
			continue
		}
		if e.kind == kindChar || e.kind == kindBlock || e.kind == kindFifo {
			// A device node gives a container whatever the host's device
			// of that number is; only what the base itself has may stay.
			if b := c.base.files[e.path]; b == nil || b.kind != e.kind || b.dev != e.dev || b.mode != e.mode || b.uid != e.uid || b.gid != e.gid {
				what := e.kind.String()
				if e.dev != "" {
					what += " " + e.dev
				}
				add(RuleSpecialFile, e.path, "new %s, mode %04o, owner %d:%d, not in the base", what, e.mode, e.uid, e.gid)
			}
		}
		cur := e
		if e.kind == kindHardlink {
			t := c.files[e.link]
			if t == nil {
				t = c.base.files[e.link]
			}
			r := resolveLink(*e, t)
			cur = &r
		}
		b := c.base.files[e.path]
		if b != nil && c.prot.covers(e.path) {
			if !sameType(b, cur) {
				if !retyped[e.path] { // else reported from an entry below it
					retyped[e.path] = true
					what := typeOf(cur).String()
					if cur.kind == kindSymlink {
						what += " to " + cur.link
					}
					add(RuleProtRetyped, e.path, "protected base %s replaced by a %s", typeOf(b), what)
				}
			} else if d := differences(b, cur); len(d) > 0 {
				add(RuleProtModified, e.path, "protected base %s modified: %s", typeOf(b), strings.Join(d, "; "))
			}
		}
		if cur.setuidRoot() || cur.hasCaps() {
			if b == nil || !sameFile(b, cur) {
				var what []string
				if cur.setuidRoot() {
					what = append(what, fmt.Sprintf("root-owned with mode %04o", cur.mode))
				}
				if cur.hasCaps() {
					what = append(what, "file capabilities (security.capability)")
				}
				detail := "new " + strings.Join(what, " and ")
				if e.kind == kindHardlink {
					detail = "new hardlink to " + e.link + ", " + strings.Join(what, " and ")
				}
				add(RuleSetuid, e.path, "%s", detail)
			}
		}
		if cur.kind == kindFile {
			c.files[e.path] = cur
		} else {
			delete(c.files, e.path)
		}
	}
}

// sameFile is whether cur is exactly the base's file b.
func sameFile(b, cur *entry) bool {
	return b.kind == kindFile && cur.kind == kindFile &&
		b.mode == cur.mode && b.uid == cur.uid && b.gid == cur.gid && b.xattrs == cur.xattrs &&
		b.hash != nil && string(b.hash) == string(cur.hash)
}

func sample(paths []string) string {
	const n = 3
	if len(paths) <= n {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:n], ", "), len(paths)-n)
}

// ignoreRule is one line of a .malocalignore.
type ignoreRule struct {
	rule    string
	pattern string // path.Match pattern or "dir/" prefix; "" for any path
}

func parseIgnore(lines []string) ([]ignoreRule, error) {
	var out []ignoreRule
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) > 2 {
			return nil, fmt.Errorf("ignore %q: want RULE [PATH]", l)
		}
		if _, ok := ruleInfo(f[0]); !ok {
			return nil, fmt.Errorf("ignore %q: unknown rule %s", l, f[0])
		}
		r := ignoreRule{rule: f[0]}
		if len(f) == 2 {
			if _, err := path.Match(f[1], "/"); err != nil {
				return nil, fmt.Errorf("ignore %q: %w", l, err)
			}
			r.pattern = f[1]
		}
		out = append(out, r)
	}
	return out, nil
}

func matchIgnore(rules []ignoreRule, v Violation) bool {
	if info, _ := ruleInfo(v.Rule); !info.Ignorable {
		return false
	}
	for _, r := range rules {
		if r.rule != v.Rule {
			continue
		}
		if r.pattern == "" {
			return true
		}
		if strings.HasSuffix(r.pattern, "/") && strings.HasPrefix(v.Path, r.pattern) {
			return true
		}
		if ok, _ := path.Match(r.pattern, v.Path); ok {
			return true
		}
	}
	return false
}

// IgnoreFile is the name of the ignore file read next to a build context,
// as dockle reads .dockleignore.
const IgnoreFile = ".malocalignore"

// ReadIgnoreFile returns the lines of an ignore file for Options.Ignore; a
// missing file gives none. Each line is "RULE" or "RULE PATH"; '#' starts a
// comment line.
func ReadIgnoreFile(p string) ([]string, error) {
	raw, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ignore file: %w", err)
	}
	lines := strings.Split(string(raw), "\n")
	if _, err := parseIgnore(lines); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return lines, nil
}
