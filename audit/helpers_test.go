package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// tf is one tar entry of a test layer.
type tf struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
	pax      map[string]string
	maj, min int64 // device numbers
}

func device(name string, typ byte, maj, min, mode int64) tf {
	return tf{name: name, typ: typ, mode: mode, maj: maj, min: min}
}

func dir(name string) tf { return tf{name: name, typ: tar.TypeDir, mode: 0o755} }

func file(name, body string, mode int64) tf {
	return tf{name: name, typ: tar.TypeReg, mode: mode, body: body}
}

func symlink(name, target string) tf {
	return tf{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

func hardlink(name, target string) tf {
	return tf{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}

func whiteout(name string) tf { return file(name, "", 0o644) }

func owned(e tf, uid, gid int) tf { e.uid, e.gid = uid, gid; return e }

func tarOf(t testing.TB, es ...tf) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link,
			PAXRecords: e.pax, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX, Devmajor: e.maj, Devminor: e.min}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layerOf(t testing.TB, es ...tf) v1.Layer {
	t.Helper()
	return layerFromTar(t, tarOf(t, es...))
}

func layerFromTar(t testing.TB, b []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendLayers(t testing.TB, img v1.Image, ls ...v1.Layer) v1.Image {
	t.Helper()
	out, err := mutate.AppendLayers(img, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const runTrainV1 = "#!/bin/bash\n# run_train.sh v1\nexec \"$@\"\n"

// baseFS is the fake official base: the paths the rules care about.
func baseFS(runTrain string) [][]tf {
	return [][]tf{{
		dir("bin"), file("bin/ls", "ELF ls binary", 0o755),
		dir("dev"), device("dev/null", tar.TypeChar, 1, 3, 0o666),
		dir("etc"), file("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nwork:x:1101:1101::/home/work:/bin/bash\n", 0o644),
		dir("home"),
		dir("lib64"), file("lib64/ld-linux-x86-64.so.2", "ELF ld.so", 0o755),
		{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
		dir("usr"), dir("usr/bin"),
		file("usr/bin/python3", "ELF python3", 0o755), symlink("usr/bin/python", "python3"),
		file("usr/bin/passwd", "ELF passwd, setuid root", 0o4755),
		dir("usr/lib"), file("usr/lib/x", "libx.so", 0o644),
		dir("usr/local"), dir("usr/local/bin"),
		dir("var"), dir("var/cache"), file("var/cache/junk", "cache", 0o644),
	}, {
		owned(dir("home/work"), 1101, 1101),
		file("home/work/run_train.sh", runTrain, 0o755),
		dir("home/work/malocal_toolkit"), file("home/work/malocal_toolkit/download.py", "def download(): pass\n", 0o644),
		owned(dir("home/work/user-job-dir"), 1101, 1101),
	}}
}

func imageOf(t testing.TB, layers [][]tf) v1.Image {
	t.Helper()
	img := empty.Image
	for _, es := range layers {
		img = appendLayers(t, img, layerOf(t, es...))
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// fixture is the corpus's base and its catalog.
type fixture struct {
	base    v1.Image
	record  Base
	catalog *mutableCatalog
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	base := imageOf(t, baseFS(runTrainV1))
	rec, err := BaseFromImage("eiwizard/custom-cpu-base", "1.0", base)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{base: base, record: rec, catalog: &mutableCatalog{bases: []Base{rec}}}
}

// custom is the base plus layers made of the given entries.
func (f *fixture) custom(t testing.TB, layers ...[]tf) v1.Image {
	t.Helper()
	img := f.base
	for _, es := range layers {
		img = appendLayers(t, img, layerOf(t, es...))
	}
	return img
}

type mutableCatalog struct{ bases []Base }

func (c *mutableCatalog) Bases(context.Context) ([]Base, error) { return slices.Clone(c.bases), nil }

func rulesOf(r *Report) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range r.Violations {
		if !seen[v.Rule] {
			seen[v.Rule] = true
			out = append(out, v.Rule)
		}
	}
	sort.Strings(out)
	return out
}

func mustAudit(t testing.TB, a *Auditor, img v1.Image, o Options) *Report {
	t.Helper()
	r, err := a.Audit(context.Background(), img, o)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return r
}

func dump(r *Report) string {
	var b bytes.Buffer
	r.WriteText(&b)
	return b.String()
}

// rawImage is an image put together byte by byte, to say things
// go-containerregistry would never write: lying configs, bad blobs.
type rawImage struct {
	manifest, config []byte
	blobs            map[v1.Hash]*rawBlob
}

type rawBlob struct {
	digest v1.Hash
	data   []byte
	mt     types.MediaType
	err    error // returned by Compressed: the source failing
}

func (b *rawBlob) Digest() (v1.Hash, error) { return b.digest, nil }
func (b *rawBlob) Compressed() (io.ReadCloser, error) {
	if b.err != nil {
		return io.NopCloser(io.MultiReader(bytes.NewReader(b.data[:len(b.data)/2]), errReader{b.err})), nil
	}
	return io.NopCloser(bytes.NewReader(b.data)), nil
}
func (b *rawBlob) Size() (int64, error)                { return int64(len(b.data)), nil }
func (b *rawBlob) MediaType() (types.MediaType, error) { return b.mt, nil }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func (r *rawImage) RawConfigFile() ([]byte, error)      { return r.config, nil }
func (r *rawImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (r *rawImage) RawManifest() ([]byte, error)        { return r.manifest, nil }
func (r *rawImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if b, ok := r.blobs[h]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no blob %s", h)
}

func sha(b []byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256(b))}
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// craft builds an image of stored blobs whose config lists diffIDs.
func craft(t testing.TB, blobs [][]byte, diffIDs []v1.Hash, mts ...types.MediaType) (v1.Image, *rawImage) {
	t.Helper()
	cfg := v1.ConfigFile{Architecture: "amd64", OS: "linux", RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}}
	cb, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ri := &rawImage{config: cb, blobs: map[v1.Hash]*rawBlob{}}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: sha(cb), Size: int64(len(cb))}}
	for i, b := range blobs {
		mt := types.OCILayer
		if i < len(mts) {
			mt = mts[i]
		}
		d := sha(b)
		ri.blobs[d] = &rawBlob{digest: d, data: b, mt: mt}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))})
	}
	if ri.manifest, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	img, err := partial.CompressedToImage(ri)
	if err != nil {
		t.Fatal(err)
	}
	return img, ri
}

// storedLayers returns an image's layer blobs and diff_ids.
func storedLayers(t testing.TB, img v1.Image) ([][]byte, []v1.Hash) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	var ids []v1.Hash
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		blobs, ids = append(blobs, b), append(ids, d)
	}
	return blobs, ids
}

func zstdOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
