package audit

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RemoteSource reads images from a registry over the distribution API:
// an existing registry named instead of the embedded one. Layers are
// fetched when the audit reads them.
type RemoteSource struct {
	// Registry is the registry's host:port.
	Registry string
	// Insecure allows plain HTTP.
	Insecure bool
	// Transport, when set, carries the requests; default: http.DefaultTransport.
	Transport http.RoundTripper
	// Auth, when set, is the registry login for reads.
	Auth authn.Authenticator
}

// Reference names repo at ref (a tag or a digest) in the registry.
func (s RemoteSource) Reference(repo, ref string) (name.Reference, error) {
	sep := ":"
	if strings.Contains(ref, ":") { // a digest: a tag has no colon
		sep = "@"
	}
	var opts []name.Option
	if s.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(s.Registry+"/"+repo+sep+ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %s/%s%s%s: %w", s.Registry, repo, sep, ref, err)
	}
	return r, nil
}

// Options are the remote options every request of the source uses.
func (s RemoteSource) Options(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	if s.Auth != nil {
		opts = append(opts, remote.WithAuth(s.Auth))
	}
	if s.Transport != nil {
		opts = append(opts, remote.WithTransport(s.Transport))
	}
	return opts
}

// Image opens repo at ref; ctx bounds the layer reads too.
func (s RemoteSource) Image(ctx context.Context, repo, ref string) (v1.Image, error) {
	r, err := s.Reference(repo, ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, s.Options(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("reading %s from the registry %s: %w", r, s.Registry, err)
	}
	return img, nil
}
