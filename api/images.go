package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Image is one manifest of the registry, once per tag; an untagged
// manifest (a child of an index, or one pushed by digest) has no Tag.
type Image struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	MediaType  string `json:"media_type"`
	Size       int64  `json:"size"` // manifest, config and layers; an index counts its children
}

// GCResult is what a registry garbage collection removed.
type GCResult struct {
	BlobsDeleted   int   `json:"blobs_deleted"`
	BytesFreed     int64 `json:"bytes_freed"`
	UploadsDeleted int   `json:"uploads_deleted"`
	// Unreferenced blobs younger than the grace period, kept for pushes
	// that may still reference them.
	BlobsKept int      `json:"blobs_kept"`
	BytesKept int64    `json:"bytes_kept"`
	Grace     Duration `json:"grace"`
}

// ImageGCGracer is the optional capability of a GC with another grace
// period than the registry's (0: collect every unreferenced blob now).
type ImageGCGracer interface {
	RegistryGCGrace(ctx context.Context, grace time.Duration) (GCResult, error)
}

// ImageBackend is the optional backend capability behind the image and
// registry routes.
type ImageBackend interface {
	Images(ctx context.Context) ([]Image, error)
	// DeleteImage removes tag ref, or manifest ref (a digest) with its tags.
	DeleteImage(ctx context.Context, repo, ref string) error
	RegistryGC(ctx context.Context) (GCResult, error)
}

// registerImages adds the image routes when the backend has a registry.
func (s *Server) registerImages() {
	b, ok := s.backend.(ImageBackend)
	if !ok {
		return
	}
	s.handle("GET /images", func(r *http.Request) (any, error) {
		imgs, err := b.Images(r.Context())
		if imgs == nil {
			imgs = []Image{}
		}
		return imgs, err
	})
	s.handle("DELETE /images", func(r *http.Request) (any, error) {
		repo, ref := r.URL.Query().Get("repo"), r.URL.Query().Get("ref")
		if repo == "" || ref == "" {
			return nil, Invalidf("repo and ref are required")
		}
		if err := b.DeleteImage(r.Context(), repo, ref); err != nil {
			return nil, err
		}
		return struct {
			Deleted string `json:"deleted"`
		}{FormatImageRef(repo, ref)}, nil
	})
	s.handle("POST /registry/gc", func(r *http.Request) (any, error) {
		g := r.URL.Query().Get("grace")
		if g == "" {
			return b.RegistryGC(r.Context())
		}
		d, err := time.ParseDuration(g)
		if err != nil || d < 0 {
			return nil, Invalidf("grace %q: want a duration such as 0s or 10m", g)
		}
		gb, ok := b.(ImageGCGracer)
		if !ok {
			return nil, fmt.Errorf("%w: this registry's GC has a fixed grace period", ErrUnavailable)
		}
		return gb.RegistryGCGrace(r.Context(), d)
	})
}

// Images lists the registry's images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var out []Image
	return out, c.do(ctx, http.MethodGet, "/images", nil, &out)
}

// DeleteImage removes tag ref of repo, or manifest ref (a digest) with
// every tag that points at it.
func (c *Client) DeleteImage(ctx context.Context, repo, ref string) error {
	q := url.Values{"repo": {repo}, "ref": {ref}}
	return c.do(ctx, http.MethodDelete, "/images?"+q.Encode(), nil, nil)
}

// RegistryGC removes registry blobs no image references any more.
func (c *Client) RegistryGC(ctx context.Context) (*GCResult, error) {
	var out GCResult
	return &out, c.do(ctx, http.MethodPost, "/registry/gc", nil, &out)
}

// RegistryGCGrace is RegistryGC that keeps only the unreferenced blobs
// younger than grace (0: none).
func (c *Client) RegistryGCGrace(ctx context.Context, grace time.Duration) (*GCResult, error) {
	var out GCResult
	q := url.Values{"grace": {grace.String()}}
	return &out, c.do(ctx, http.MethodPost, "/registry/gc?"+q.Encode(), nil, &out)
}

// ParseImageRef splits "repo:tag", "repo@digest" or "repo" (tag latest)
// into repository and reference. A leading registry host, as docker
// names it ("localhost:5000/team/app:v1"), is dropped.
func ParseImageRef(s string) (repo, ref string, err error) {
	in := s
	if first, rest, ok := strings.Cut(s, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		s = rest
	}
	byDigest := false
	if r, d, ok := strings.Cut(s, "@"); ok {
		repo, ref, byDigest = r, d, true
	} else if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		repo, ref = s[:i], s[i+1:]
	} else {
		repo, ref = s, "latest"
	}
	if repo == "" || ref == "" {
		return "", "", Invalidf("image reference %q: want repo[:tag] or repo@digest", in)
	}
	if !repoRe.MatchString(repo) || len(repo) > 255 {
		return "", "", Invalidf("image reference %q: repository %q is not a valid name: lowercase letters, digits and . _ - separators, path components joined by /, e.g. team/train:1.0", in, repo)
	}
	if byDigest {
		if !digestRe.MatchString(ref) {
			return "", "", Invalidf("image reference %q: %q is not a valid digest (want sha256:<64 hex digits>)", in, ref)
		}
	} else if !tagRe.MatchString(ref) {
		return "", "", Invalidf("image reference %q: tag %q is not valid: up to 128 letters, digits, _ . -, not starting with . or -", in, ref)
	}
	return repo, ref, nil
}

// The distribution spec's grammar of repository names, tags and digests.
var (
	repoRe   = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRe = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
)

// FormatImageRef is the inverse of ParseImageRef.
func FormatImageRef(repo, ref string) string {
	if strings.Contains(ref, ":") {
		return repo + "@" + ref
	}
	return repo + ":" + ref
}

// AuditBase is an official base image, as the audit matched it.
type AuditBase struct {
	Name         string `json:"name"`
	Tag          string `json:"tag,omitempty"`
	Digest       string `json:"digest"`
	Superseded   bool   `json:"superseded,omitempty"`
	SupersededBy string `json:"superseded_by,omitempty"`
}

// AuditViolation is one broken image rule.
type AuditViolation struct {
	Rule       string `json:"rule"`
	Layer      string `json:"layer,omitempty"`
	LayerIndex int    `json:"layer_index"` // -1: the image as a whole
	Path       string `json:"path,omitempty"`
	Detail     string `json:"detail"`
}

// AuditReport is an audit's result: the verdict, each violation with its
// rule, layer and path, and the audit's log.
type AuditReport struct {
	Verdict        string           `json:"verdict"` // pass or fail
	ManifestDigest string           `json:"manifest_digest"`
	ConfigDigest   string           `json:"config_digest"`
	Base           *AuditBase       `json:"base,omitempty"`
	Layers         int              `json:"layers"`
	AddedLayers    int              `json:"added_layers"`
	Size           int64            `json:"size"` // uncompressed bytes of all layers
	Violations     []AuditViolation `json:"violations"`
	Ignored        []AuditViolation `json:"ignored,omitempty"`
	Log            []string         `json:"log,omitempty"`
	Started        time.Time        `json:"started"`
	Duration       Duration         `json:"duration"`
	Cached         bool             `json:"cached,omitempty"`
}

// ImageAudit is what the console shows of an image's audit: the verdict
// (empty when it was never audited), the official base it is built on,
// and the last report.
type ImageAudit struct {
	Repository string `json:"repository"`
	Reference  string `json:"reference"`
	Digest     string `json:"digest"`
	Verdict    string `json:"verdict,omitempty"` // pass, fail, or empty: not audited yet
	// Base is the official base whose layers the image starts with; nil
	// when none does. IsBase marks an official base itself.
	Base   *AuditBase   `json:"base,omitempty"`
	IsBase bool         `json:"is_base,omitempty"`
	Report *AuditReport `json:"report,omitempty"`
	// Note says what the verdict alone does not: "approved <time>; its
	// base has since been superseded" (the image stays approved).
	Note string `json:"note,omitempty"`
}

// OnceAuditBackend is the optional capability behind POST
// /images/audit?force=false: the stored verdict when there is one, else a
// new audit. It is the one verdict jobs use too.
type OnceAuditBackend interface {
	AuditImageOnce(ctx context.Context, repo, ref string) (*ImageAudit, error)
}

// AuditBackend is the optional backend capability behind the image audit
// routes.
type AuditBackend interface {
	// ImageAudit returns the stored verdict of repo:ref; it audits nothing.
	ImageAudit(ctx context.Context, repo, ref string) (*ImageAudit, error)
	// AuditImage audits repo:ref again now, replacing the stored verdict.
	AuditImage(ctx context.Context, repo, ref string) (*ImageAudit, error)
}

func (s *Server) registerAudit() {
	b, ok := s.backend.(AuditBackend)
	if !ok {
		return
	}
	query := func(r *http.Request) (string, string, error) {
		repo, ref := r.URL.Query().Get("repo"), r.URL.Query().Get("ref")
		if repo == "" || ref == "" {
			return "", "", Invalidf("repo and ref are required")
		}
		return repo, ref, nil
	}
	s.handle("GET /images/audit", func(r *http.Request) (any, error) {
		repo, ref, err := query(r)
		if err != nil {
			return nil, err
		}
		return b.ImageAudit(r.Context(), repo, ref)
	})
	s.handle("POST /images/audit", func(r *http.Request) (any, error) {
		repo, ref, err := query(r)
		if err != nil {
			return nil, err
		}
		// force (default true, the console's re-audit) audits again;
		// force=false serves the stored verdict when there is one.
		switch f := r.URL.Query().Get("force"); f {
		case "", "true":
		case "false":
			if ob, ok := b.(OnceAuditBackend); ok {
				return ob.AuditImageOnce(r.Context(), repo, ref)
			}
		default:
			return nil, Invalidf("force=%q: want true or false", f)
		}
		return b.AuditImage(r.Context(), repo, ref)
	})
}

// ImageAudit returns the stored audit verdict and report of repo:ref.
func (c *Client) ImageAudit(ctx context.Context, repo, ref string) (*ImageAudit, error) {
	var out ImageAudit
	q := url.Values{"repo": {repo}, "ref": {ref}}
	return &out, c.do(ctx, http.MethodGet, "/images/audit?"+q.Encode(), nil, &out)
}

// AuditImage audits repo:ref again and returns the new report.
func (c *Client) AuditImage(ctx context.Context, repo, ref string) (*ImageAudit, error) {
	var out ImageAudit
	q := url.Values{"repo": {repo}, "ref": {ref}}
	return &out, c.do(ctx, http.MethodPost, "/images/audit?"+q.Encode(), nil, &out)
}

// AuditImageOnce returns the emulator's verdict of repo:ref: the stored
// one when there is one, else a new audit's (stored for jobs too).
func (c *Client) AuditImageOnce(ctx context.Context, repo, ref string) (*ImageAudit, error) {
	var out ImageAudit
	q := url.Values{"repo": {repo}, "ref": {ref}, "force": {"false"}}
	return &out, c.do(ctx, http.MethodPost, "/images/audit?"+q.Encode(), nil, &out)
}
