// Package registry is malocal's image registry (the SWR stand-in): the OCI
// distribution API over persistent storage in the data dir.
//
// Blobs are stored once by digest (sha256 or sha512) and written temp file
// → fsync → rename after their digest is checked; uploads stream to disk and
// survive restarts; manifests and tags are small files replaced atomically.
// With WithCredentials it authenticates as SWR does: the distribution token
// flow (a Bearer challenge naming the token endpoint at TokenPath), and
// anonymous pulls of PublicNamespace only. A manifest whose descriptor
// sizes do not match its blobs is refused (MANIFEST_INVALID).
// Other packages read images straight from storage with Image, without HTTP:
//
//	reg, err := registry.New(filepath.Join(dataDir, "registry"))
//	srv := &http.Server{Addr: "127.0.0.1:5000", Handler: reg.Handler()}
//	img, err := reg.Image(ctx, "eiwizard/custom-cpu-base", "1.0")
//
// We serve the protocol ourselves rather than through go-containerregistry's
// pkg/registry: its manifests and upload sessions live in memory, it
// buffers whole uploads, and its v1.Hash cannot name a sha512 blob.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"
)

type options struct {
	log   *slog.Logger
	quota int64
	grace time.Duration
	creds *Credentials
}

// Option configures New.
type Option func(*options)

// WithLogger sets the logger; requests are logged at debug level.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithQuota caps the bytes stored in blobs and uploads; 0 means unlimited.
func WithQuota(bytes int64) Option { return func(o *options) { o.quota = bytes } }

// WithGCGrace sets how long GC leaves an unreferenced blob or an idle upload
// alone after it was last written (default one hour): a push uploads its
// blobs before the manifest that references them.
func WithGCGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// Registry is a persistent OCI distribution registry.
type Registry struct {
	s    *store
	log  *slog.Logger
	auth *auth // nil: open to anyone
}

// New opens (creating it 0700 if needed) the registry stored under root.
func New(root string, opts ...Option) (*Registry, error) {
	o := options{log: slog.New(slog.NewTextHandler(io.Discard, nil)), grace: time.Hour}
	for _, opt := range opts {
		opt(&o)
	}
	if o.quota < 0 {
		return nil, fmt.Errorf("registry: negative quota %d", o.quota)
	}
	if o.grace < 0 {
		return nil, fmt.Errorf("registry: negative GC grace %s", o.grace)
	}
	if root == "" {
		return nil, fmt.Errorf("registry: empty root")
	}
	var a *auth
	if o.creds != nil {
		var err error
		if a, err = newAuth(*o.creds); err != nil {
			return nil, err
		}
	}
	s, err := openStore(root, o.quota, o.grace, o.log)
	if err != nil {
		return nil, err
	}
	return &Registry{s: s, log: o.log, auth: a}, nil
}

// Handler serves the OCI distribution API, and the token endpoint at
// TokenPath when the registry has credentials; mount it at the site root.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.auth != nil && req.URL.Path == TokenPath {
			r.auth.serveToken(w, req)
			return
		}
		r.serveHTTP(w, req)
	})
}

// Close releases the registry. Every acknowledged write is already on disk,
// so there is nothing to flush.
func (r *Registry) Close() error { return nil }

// Used reports the bytes held in blobs and unfinished uploads (what the
// quota counts).
func (r *Registry) Used() int64 { return r.s.Used() }

// Repositories lists every repository, sorted.
func (r *Registry) Repositories(ctx context.Context) ([]string, error) {
	return r.s.listRepos(ctx)
}

// Tags lists the tags of repo, sorted.
func (r *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	if !r.s.repoExists(repo) {
		return nil, fmt.Errorf("registry: repository %q: %w", repo, errNameUnknown)
	}
	return r.s.listTags(repo)
}

// Resolve describes the manifest that ref (a tag or a digest) names in repo.
func (r *Registry) Resolve(ctx context.Context, repo, ref string) (Descriptor, error) {
	d, mt, err := r.s.resolve(repo, ref)
	if err != nil {
		return Descriptor{}, fmt.Errorf("registry: resolve %s:%s: %w", repo, ref, err)
	}
	fi, err := os.Stat(r.s.blobPath(d))
	if err != nil {
		return Descriptor{}, fmt.Errorf("registry: resolve %s:%s: %w", repo, ref, errManifestUnknown)
	}
	return Descriptor{MediaType: mt, Digest: d.String(), Size: fi.Size()}, nil
}

// Manifest returns the raw manifest ref of repo and its descriptor.
func (r *Registry) Manifest(ctx context.Context, repo, ref string) ([]byte, Descriptor, error) {
	d, mt, b, err := r.s.getManifest(repo, ref)
	if err != nil {
		return nil, Descriptor{}, fmt.Errorf("registry: manifest %s:%s: %w", repo, ref, err)
	}
	return b, Descriptor{MediaType: mt, Digest: d.String(), Size: int64(len(b))}, nil
}

// DeleteManifest removes a tag (ref is a tag) or a manifest with every tag
// that points at it (ref is a digest). GC reclaims the space.
func (r *Registry) DeleteManifest(ctx context.Context, repo, ref string) error {
	if err := r.s.deleteManifest(repo, ref); err != nil {
		return fmt.Errorf("registry: delete %s:%s: %w", repo, ref, err)
	}
	return nil
}

// IsNotFound reports whether err means an unknown repository, tag,
// manifest, blob or upload.
func IsNotFound(err error) bool {
	for _, e := range []*apiError{errNameUnknown, errManifestUnknown, errBlobUnknown, errBlobUploadUnknown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ImageSummary is one manifest of a repository, as `malocal image ls`
// shows it; an untagged manifest has an empty Tag.
type ImageSummary struct {
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	MediaType  string `json:"mediaType"`
	Size       int64  `json:"size"` // manifest, config and layers; an index counts its children
}

// Images lists every manifest of every repository, once per tag.
func (r *Registry) Images(ctx context.Context) ([]ImageSummary, error) {
	repos, err := r.s.listRepos(ctx)
	if err != nil {
		return nil, err
	}
	var out []ImageSummary
	for _, repo := range repos {
		tagged := map[string][]string{}
		tags, err := r.s.listTags(repo)
		if err != nil {
			return nil, err
		}
		for _, t := range tags {
			if d, _, err := r.s.resolve(repo, t); err == nil {
				tagged[d.String()] = append(tagged[d.String()], t)
			}
		}
		ds, err := r.s.listManifests(repo)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			_, mt, err := r.s.resolve(repo, d.String())
			if err != nil {
				continue // deleted while we list
			}
			size, err := r.s.totalSize(d, 0)
			if err != nil {
				continue
			}
			sum := ImageSummary{Repository: repo, Digest: d.String(), MediaType: mt, Size: size}
			if len(tagged[d.String()]) == 0 {
				out = append(out, sum)
			}
			for _, t := range tagged[d.String()] {
				sum.Tag = t
				out = append(out, sum)
			}
		}
	}
	return out, nil
}
