package audit

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeDockerSave writes img as `docker save` of Docker < 25 does: a
// manifest.json and uncompressed layer tars, the repeated layer as a
// symlink to the first copy.
func writeDockerSave(t *testing.T, img v1.Image, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cn, _ := img.ConfigName()
	put(cn.Hex+".json", cfg)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	written := map[v1.Hash]string{}
	for i, l := range ls {
		d, _ := l.DiffID()
		name := fmt.Sprintf("%02d%s/layer.tar", i, d.Hex[:20]) // docker names them by v1 layer ID, one per position
		files = append(files, name)
		if first, ok := written[d]; ok {
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: "../" + first})
			continue
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		put(name, b)
		written[d] = name
	}
	m, _ := json.Marshal([]map[string]any{{"Config": cn.Hex + ".json", "RepoTags": []string{"example/app:1"}, "Layers": files}})
	put("manifest.json", m)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFromTarball(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	bad := f.custom(t,
		[]tf{whiteout("bin/.wh.ls"), file("tmp/e", eicar, 0o644)},
		[]tf{file("usr/local/bin/empty1", "", 0o644)},
		[]tf{file("usr/local/bin/empty1", "", 0o644)}, // same diff_id twice
	)
	good := f.custom(t, []tf{file("usr/local/bin/ok", "ok", 0o755)})
	want := rulesOf(mustAudit(t, NewAuditor(f.catalog, nil), bad, Options{}))
	if !slices.Equal(want, []string{RuleMalware, RuleProtDeleted}) {
		t.Fatalf("in memory: %v", want)
	}

	sources := map[string]func(img v1.Image, tag string) string{
		"ggcr tarball (gzip layers)": func(img v1.Image, tag string) string {
			p := filepath.Join(dir, tag+".ggcr.tar")
			ref, _ := name.NewTag("example/app:" + tag)
			if err := tarball.WriteToFile(p, ref, img); err != nil {
				t.Fatal(err)
			}
			return p
		},
		"docker save (plain layers)": func(img v1.Image, tag string) string {
			p := filepath.Join(dir, tag+".save.tar")
			writeDockerSave(t, img, p)
			return p
		},
		"OCI layout dir": func(img v1.Image, tag string) string {
			p := filepath.Join(dir, tag+".oci")
			lp, err := layout.Write(p, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := lp.AppendImage(img); err != nil {
				t.Fatal(err)
			}
			return p
		},
	}
	for name, write := range sources {
		t.Run(name, func(t *testing.T) {
			a := NewAuditor(f.catalog, nil)
			for tag, tc := range map[string]struct {
				img  v1.Image
				want []string
			}{"bad": {bad, want}, "good": {good, nil}} {
				img, err := FromTarball(write(tc.img, tag))
				if err != nil {
					t.Fatal(err)
				}
				rep := mustAudit(t, a, img, Options{})
				if got := rulesOf(rep); !slices.Equal(got, tc.want) {
					t.Fatalf("%s: rules %v, want %v:\n%s", tag, got, tc.want, dump(rep))
				}
			}
		})
	}
	// A plain docker-save tarball is described as stored, so its digest
	// costs no compression of the layers.
	plain, err := FromTarball(filepath.Join(dir, "bad.save.tar"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := plain.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := bad.ConfigFile()
	for i, l := range m.Layers {
		if l.MediaType != types.DockerUncompressedLayer || l.Digest != cfg.RootFS.DiffIDs[i] || l.Size == 0 {
			t.Fatalf("layer %d: %+v", i, l)
		}
	}
	if _, err := FromTarball(filepath.Join(dir, "missing.tar")); err == nil {
		t.Fatal("missing file: want an error")
	}
	junk := filepath.Join(dir, "junk.tar")
	os.WriteFile(junk, []byte("not a tar"), 0o644)
	if _, err := FromTarball(junk); err == nil {
		t.Fatal("junk: want an error")
	}
}

func TestCatalogFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bases.json")
	if bs, err := CatalogFile(p).Bases(context.Background()); err != nil || len(bs) != 0 {
		t.Fatalf("missing catalog: %v %v", bs, err)
	}
	// The layout baseimage writes.
	doc := `{"version":1,"bases":[{"name":"eiwizard/custom-cpu-base","tag":"1.0","digest":"sha256:aa","diff_ids":["sha256:` +
		strings.Repeat("b", 64) + `"],"gpu":false,"superseded":true,"superseded_by":"eiwizard/custom-cpu-base:1.0@sha256:cc","created":"2026-01-01T00:00:00Z"}]}`
	os.WriteFile(p, []byte(doc), 0o644)
	bs, err := CatalogFile(p).Bases(context.Background())
	if err != nil || len(bs) != 1 || !bs[0].Superseded || bs[0].DiffIDs[0].Hex != strings.Repeat("b", 64) || bs[0].SupersededBy == "" {
		t.Fatalf("%+v %v", bs, err)
	}
}

func TestIgnoreFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), IgnoreFile)
	if l, err := ReadIgnoreFile(p); err != nil || l != nil {
		t.Fatalf("missing: %v %v", l, err)
	}
	os.WriteFile(p, []byte("# accepted risk\nMA-SUID-001 /usr/local/bin/*\n\nMA-MAL-001 /opt/tests/\n"), 0o644)
	lines, err := ReadIgnoreFile(p)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	img := f.custom(t, []tf{file("usr/local/bin/su2", "x", 0o4755), file("opt/tests/eicar.txt", eicar, 0o644), file("opt/e", eicar, 0o644)})
	rep := mustAudit(t, NewAuditor(f.catalog, nil), img, Options{Ignore: lines})
	if len(rep.Ignored) != 2 || len(rep.Violations) != 1 || rep.Violations[0].Path != "/opt/e" {
		t.Fatalf("%s", dump(rep))
	}
	os.WriteFile(p, []byte("MA-SUID-001 /a /b\n"), 0o644)
	if _, err := ReadIgnoreFile(p); err == nil {
		t.Fatal("bad line: want an error")
	}
}

// TestDockerEngine audits images made by the Docker engine itself: the
// base loaded with `docker load`, one image built with `docker build`
// (COPY only, so nothing runs in the fake base) and one made with `docker
// create` + `docker cp` + `docker commit`, all read back with FromDockerEngine.
func TestDockerEngine(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil || exec.Command("docker", "info").Run() != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and no Docker engine")
		}
		t.Skip("no Docker engine")
	}
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	tag := fmt.Sprintf("malocal-audit-test/base:%d", os.Getpid())
	docker := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("docker %v: %v\n%s%s", args, err, out, stderr.String())
		}
		return strings.TrimSpace(string(out))
	}
	ref, _ := name.NewTag(tag)
	baseTar := filepath.Join(dir, "base.tar")
	if err := tarball.WriteToFile(baseTar, ref, f.base); err != nil {
		t.Fatal(err)
	}
	docker("load", "-i", baseTar)
	built, committed := tag+"-built", tag+"-committed"
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag, built, committed).Run() })

	ctxDir := filepath.Join(dir, "ctx")
	os.MkdirAll(ctxDir, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "main.py"), []byte("print('train')\n"), 0o644)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+tag+"\nCOPY main.py /home/work/user-job-dir/app/main.py\n"), 0o644)
	docker("build", "-q", "-t", built, ctxDir)

	os.WriteFile(filepath.Join(dir, "e.txt"), []byte(eicar), 0o644)
	id := docker("create", tag, "/bin/true")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	docker("cp", filepath.Join(dir, "e.txt"), id+":/tmp/e.txt")
	docker("commit", id, committed)

	a := NewAuditor(f.catalog, nil)
	for ref, want := range map[string][]string{built: nil, committed: {RuleMalware}} {
		img, cleanup, err := FromDockerEngine(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		rep := mustAudit(t, a, img, Options{})
		cleanup()
		if got := rulesOf(rep); !slices.Equal(got, want) || rep.Base == nil {
			t.Fatalf("%s: rules %v, want %v:\n%s", ref, got, want, dump(rep))
		}
	}
	if _, _, err := FromDockerEngine(ctx, "malocal-audit-test/none:missing"); err == nil {
		t.Fatal("missing image: want an error")
	}
}
