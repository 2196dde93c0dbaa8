package baseimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrRegistryNotRunning is returned when nothing answers at the registry
// address.
var ErrRegistryNotRunning = errors.New("the registry is not running")

// registryHost strips a scheme from a registry address: "http://h:p" and
// "h:p" both give "h:p".
func registryHost(registry string) string {
	r := strings.TrimPrefix(strings.TrimPrefix(registry, "http://"), "https://")
	return strings.TrimSuffix(r, "/")
}

// Reference is the image reference of name:tag in registry, e.g.
// 127.0.0.1:5000/eiwizard/custom-cpu-base:1.0.
func Reference(registry, repo, tag string) (name.Tag, error) {
	ref, err := name.NewTag(registryHost(registry)+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return name.Tag{}, fmt.Errorf("bad base name %s:%s: %w", repo, tag, err)
	}
	return ref, nil
}

// ping checks that a registry answers on /v2/ at all (any HTTP status).
func ping(ctx context.Context, registry string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	scheme := "http://"
	if strings.HasPrefix(registry, "https://") {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, scheme+registryHost(registry)+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil { // the caller gave up; the registry may be fine
			return fmt.Errorf("checking the registry at %s: %w", registryHost(registry), ctx.Err())
		}
		return fmt.Errorf("%w at %s (start it with `malocal up`): %v", ErrRegistryNotRunning, registryHost(registry), err)
	}
	resp.Body.Close()
	return nil
}

// authOption is the remote option that presents a (nil: none).
func authOption(a authn.Authenticator) []remote.Option {
	if a == nil {
		return nil
	}
	return []remote.Option{remote.WithAuth(a)}
}

// Push writes img to ref, reporting progress to w (when not nil) about
// every 10% and at the end. The registry may be plain HTTP; opts add to
// the push's remote options (remote.WithAuth with the registry's
// credentials: malocal's registry takes no anonymous push).
func Push(ctx context.Context, img v1.Image, ref name.Tag, w io.Writer, opts ...remote.Option) (v1.Hash, error) {
	if err := ping(ctx, ref.RegistryStr()); err != nil {
		return v1.Hash{}, err
	}
	updates := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := -1
		for u := range updates {
			if w == nil || u.Total <= 0 {
				continue
			}
			pct := int(u.Complete * 100 / u.Total)
			if pct/10 != last/10 || u.Complete == u.Total && last != 100 {
				last = pct
				fmt.Fprintf(w, "pushing %s: %s / %s (%d%%)\n", ref, mb(u.Complete), mb(u.Total), pct)
			}
		}
	}()
	err := remote.Write(ref, img, append(opts, remote.WithContext(ctx), remote.WithProgress(updates))...)
	<-done
	if err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if w != nil {
		fmt.Fprintf(w, "pushed %s@%s\n", ref, d)
	}
	return d, nil
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
