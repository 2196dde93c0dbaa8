package baseimage

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/registry"
)

// startRegistry serves malocal's registry on loopback and returns its
// host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	reg, err := registry.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	return srv.Listener.Addr().String()
}

func TestBuildPushesAndRecords(t *testing.T) {
	ctx := context.Background()
	host := startRegistry(t)
	cat := OpenCatalog(t.TempDir())
	rootfs := writeRootfs(t, baseEntries(), false)
	var progress bytes.Buffer
	opts := BuildOptions{Name: DefaultCPUName, Tag: DefaultTag, From: rootfs, Registry: host, Catalog: cat, Progress: &progress}
	res, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ref != host+"/eiwizard/custom-cpu-base:1.0" || len(res.DiffIDs) != 2 || res.Record == nil {
		t.Fatalf("result %+v", res)
	}
	for _, w := range []string{"adding the toolkit layer", "pushing " + res.Ref, "(100%)", "pushed " + res.Ref + "@" + res.Digest} {
		if !strings.Contains(progress.String(), w) {
			t.Errorf("progress lacks %q:\n%s", w, progress.String())
		}
	}
	ref, _ := name.ParseReference(res.Ref, name.Insecure)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != res.Digest {
		t.Errorf("registry holds %s, built %s", d, res.Digest)
	}
	if err := CheckBase(img); err != nil {
		t.Errorf("CheckBase of the pushed base: %v", err)
	}

	// The same source again: same digest, nothing superseded.
	res2, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Digest != res.Digest {
		t.Errorf("rebuild of the same source: %s, first %s", res2.Digest, res.Digest)
	}
	// A different source under the same name:tag supersedes the first.
	es := append(baseEntries(), entry{name: "./usr/bin/pip3", typ: '0', mode: 0o755, data: "pip"})
	opts.From = writeRootfs(t, es, false)
	res3, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sup, known, _ := cat.IsSuperseded(res.Digest); !sup || !known {
		t.Errorf("first build not superseded after a rebuild")
	}
	// A newer tag that supersedes 1.0, and output as a tarball too.
	out := filepath.Join(t.TempDir(), "base.tar")
	opts.Tag, opts.Supersedes, opts.Output = "1.1", []string{DefaultCPUName + ":" + DefaultTag}, out
	res4, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if sup, _, _ := cat.IsSuperseded(res3.Digest); !sup {
		t.Error("1.0 not superseded by 1.1 --supersedes")
	}
	cur, _ := cat.Current()
	if len(cur) != 1 || cur[0].Tag != "1.1" {
		t.Errorf("current: %+v", cur)
	}
	if saved, err := tarball.ImageFromPath(out, nil); err != nil {
		t.Errorf("output tarball: %v", err)
	} else if d, _ := saved.Digest(); d.String() != res4.Digest {
		t.Errorf("output tarball digest %s, built %s", d, res4.Digest)
	}

	// base add: a pushed image registered under its own name.
	if err := remote.Write(mustTag(t, host+"/team/custom:2"), img); err != nil {
		t.Fatal(err)
	}
	rec, err := Add(ctx, cat, AddOptions{Registry: host, Name: "team/custom", Tag: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Digest != res.Digest || rec.Source != "registry" || len(rec.DiffIDs) != 2 {
		t.Errorf("added %+v", rec)
	}
	// An image without the toolkit is not a base.
	plain := rootfsImage(t, rootfs)
	if err := remote.Write(mustTag(t, host+"/team/plain:1"), plain); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(ctx, cat, AddOptions{Registry: host, Name: "team/plain", Tag: "1"}); err == nil || !strings.Contains(err.Error(), "not a malocal base") {
		t.Errorf("adding a plain image: %v", err)
	}
	if _, err := Add(ctx, cat, AddOptions{Registry: host, Name: "team/missing", Tag: "1"}); err == nil {
		t.Error("adding a missing image succeeded")
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	rootfs := writeRootfs(t, baseEntries(), false)
	// Nothing listens on the discard port: the registry is not running,
	// and Build says so before reading the source.
	_, err := Build(ctx, BuildOptions{Name: "n", Tag: "t", From: "/nonexistent", Registry: "127.0.0.1:9"})
	if !errors.Is(err, ErrRegistryNotRunning) {
		t.Errorf("registry down: %v", err)
	}
	if _, err := Build(ctx, BuildOptions{Name: "n", From: rootfs}); err == nil {
		t.Error("built without a tag")
	}
	if _, err := Build(ctx, BuildOptions{Name: "n", Tag: "t", From: rootfs, Catalog: OpenCatalog(t.TempDir())}); err == nil {
		t.Error("recorded a base that was not pushed")
	}
	if _, err := Build(ctx, BuildOptions{Name: "Bad Name", Tag: "t", From: rootfs}); err == nil {
		t.Error("accepted a bad name")
	}
	res, err := Build(ctx, BuildOptions{Name: "n/x", Tag: "t", From: rootfs})
	if err != nil || res.Ref != "n/x:t" {
		t.Errorf("build without push: %+v %v", res, err)
	}
}

func TestPingCanceled(t *testing.T) {
	host := startRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ping(ctx, host); !errors.Is(err, context.Canceled) || errors.Is(err, ErrRegistryNotRunning) {
		t.Errorf("ping with a canceled context: %v", err)
	}
	if err := ping(context.Background(), "http://"+host); err != nil {
		t.Errorf("ping: %v", err)
	}
}
