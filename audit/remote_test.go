package audit

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistryImage audits images as a registry serves them (here
// go-containerregistry's in-memory one on loopback): gzip blobs whose
// digests are verified, base blobs remembered as verified.
func TestRegistryImage(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	f := newFixture(t)
	a := NewAuditor(f.catalog, nil)
	for i, tc := range []struct {
		layer []tf
		want  []string
	}{
		{[]tf{file("usr/local/bin/ok", "ok", 0o755)}, nil},
		{[]tf{file("usr/bin/python3", "ELF python3 trojan", 0o755)}, []string{RuleProtModified}},
	} {
		ref, err := name.ParseReference(host+"/team/app:"+string(rune('a'+i)), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, f.custom(t, tc.layer), remote.WithContext(context.Background())); err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		rep := mustAudit(t, a, img, Options{})
		if got := rulesOf(rep); !slices.Equal(got, tc.want) {
			t.Fatalf("%s: rules %v, want %v:\n%s", ref, got, tc.want, dump(rep))
		}
		if log := strings.Join(rep.Log, "\n"); i == 1 && !strings.Contains(log, "not read") {
			t.Fatalf("second image read the base again:\n%s", log)
		}
	}
}
