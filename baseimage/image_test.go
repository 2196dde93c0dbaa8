package baseimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type entry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	data     string
	link     string
}

const basePasswd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
const baseGroup = "root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n"

// baseEntries is a small root filesystem with python3, as mmdebstrap lays
// it out ("./" names, a device node, shadow owned by group shadow).
func baseEntries() []entry {
	return []entry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/passwd", typ: tar.TypeReg, mode: 0o644, data: basePasswd},
		{name: "./etc/group", typ: tar.TypeReg, mode: 0o644, data: baseGroup},
		{name: "./etc/shadow", typ: tar.TypeReg, mode: 0o640, gid: 42, data: "root:*:19000:0:99999:7:::\n"},
		{name: "./home/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/bin/bash", typ: tar.TypeReg, mode: 0o755, data: "#!bash"},
		{name: "./usr/bin/python3.11", typ: tar.TypeReg, mode: 0o755, data: "python"},
		{name: "./usr/bin/python3", typ: tar.TypeSymlink, mode: 0o777, link: "python3.11"},
		{name: "./bin", typ: tar.TypeSymlink, mode: 0o777, link: "usr/bin"},
		{name: "./dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "./dev/null", typ: tar.TypeChar, mode: 0o666},
	}
}

func writeRootfs(t *testing.T, entries []entry, gz bool) string {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link, Size: int64(len(e.data))}
		if e.typ == tar.TypeChar {
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	name := "rootfs.tar"
	if gz {
		name += ".gz"
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// layerEntries reads a layer's tar into headers and contents by clean name.
func layerEntries(t *testing.T, l v1.Layer) (map[string]*tar.Header, map[string]string, []string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string]string{}
	var order []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		n := cleanName(h.Name)
		hdrs[n], data[n] = h, string(b)
		order = append(order, n)
	}
	return hdrs, data, order
}

func assemble(t *testing.T, src string) v1.Image {
	t.Helper()
	base := rootfsImage(t, src)
	img, err := Assemble(base, AssembleOptions{Name: "eiwizard/custom-cpu-base", Tag: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestAssembleToolkitLayer(t *testing.T) {
	img := assemble(t, writeRootfs(t, baseEntries(), false))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want rootfs + toolkit", len(layers))
	}
	rootHdrs, _, _ := layerEntries(t, layers[0])
	if _, ok := rootHdrs["dev/null"]; ok {
		t.Error("the rootfs layer kept a device node")
	}
	if _, ok := rootHdrs["usr/bin/python3"]; !ok {
		t.Error("the rootfs layer lost usr/bin/python3")
	}

	hdrs, data, order := layerEntries(t, layers[1])
	wantPasswd := basePasswd + "work:x:1101:1101::/home/work:/bin/bash\n"
	if data["etc/passwd"] != wantPasswd {
		t.Errorf("passwd:\n%s\nwant:\n%s", data["etc/passwd"], wantPasswd)
	}
	if data["etc/group"] != baseGroup+"work:x:1101:\n" {
		t.Errorf("group:\n%s", data["etc/group"])
	}
	if !strings.HasSuffix(data["etc/shadow"], "\nwork:!:19723:0:99999:7:::\n") {
		t.Errorf("shadow:\n%s", data["etc/shadow"])
	}
	if h := hdrs["etc/shadow"]; h.Mode != 0o640 || h.Gid != 42 {
		t.Errorf("shadow mode %o gid %d: the base's were 0640 and 42", h.Mode, h.Gid)
	}
	for name, want := range map[string]struct {
		typ      byte
		mode     int64
		uid, gid int
	}{
		"home/work":                       {tar.TypeDir, 0o755, 1101, 1101},
		"cache":                           {tar.TypeDir, 0o755, 1101, 1101},
		"home/work/user-job-dir":          {tar.TypeDir, 0o755, 1101, 1101},
		"home/work/run_train.sh":          {tar.TypeReg, 0o755, 0, 0},
		"home/work/malocal_toolkit":       {tar.TypeDir, 0o755, 0, 0},
		"home/work/malocal_toolkit/s3.py": {tar.TypeReg, 0o644, 0, 0},
		"home/work/moxing/file.py":        {tar.TypeReg, 0o644, 0, 0},
		"home/work/moxing/__init__.py":    {tar.TypeReg, 0o644, 0, 0},
	} {
		h, ok := hdrs[name]
		if !ok {
			t.Errorf("toolkit layer lacks %s (has %v)", name, order)
			continue
		}
		if h.Typeflag != want.typ || h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.gid {
			t.Errorf("%s: type %c mode %o owner %d:%d, want %c %o %d:%d", name, h.Typeflag, h.Mode, h.Uid, h.Gid, want.typ, want.mode, want.uid, want.gid)
		}
	}
	if _, ok := hdrs["home"]; ok {
		t.Error("the layer rewrote /home, which the base has")
	}
	for n, h := range hdrs {
		if !h.ModTime.Equal(LayerTime) {
			t.Errorf("%s: mtime %s, want %s", n, h.ModTime, LayerTime)
		}
	}
	rt, _ := fsReadFile(t, "run_train.sh")
	if data["home/work/run_train.sh"] != rt {
		t.Error("run_train.sh in the layer differs from the embedded one")
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || c.User != "work" || c.WorkingDir != "/home/work" {
		t.Errorf("config: os %s arch %s user %q workdir %q", cf.OS, cf.Architecture, c.User, c.WorkingDir)
	}
	env := strings.Join(c.Env, "\n")
	if !strings.Contains(env, "PATH="+DefaultPath) || !strings.Contains(env, "PYTHONPATH=/home/work") {
		t.Errorf("env: %v", c.Env)
	}
	for k, v := range map[string]string{LabelBase: "true", LabelName: "eiwizard/custom-cpu-base", LabelTag: "1.0", LabelGPU: "false", LabelToolkit: ToolkitDigest()} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if n := len(cf.RootFS.DiffIDs); n != 2 {
		t.Errorf("%d diff_ids", n)
	}
	if err := CheckBase(img); err != nil {
		t.Errorf("CheckBase of a built base: %v", err)
	}
}

func fsReadFile(t *testing.T, name string) (string, error) {
	t.Helper()
	for _, f := range toolkitFiles() {
		if f.name == name {
			return string(f.data), nil
		}
	}
	t.Fatalf("no %s in the toolkit", name)
	return "", nil
}

func TestAssembleIsDeterministic(t *testing.T) {
	a := assemble(t, writeRootfs(t, baseEntries(), false))
	b := assemble(t, writeRootfs(t, baseEntries(), true)) // same content, gzip
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same rootfs: %s and %s", da, db)
	}
}

func TestAssembleKeepsBaseSettings(t *testing.T) {
	base := rootfsImage(t, writeRootfs(t, baseEntries(), false))
	cf, _ := base.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Env = []string{"PATH=/usr/local/cuda/bin:/usr/bin:/bin", "CUDA_VERSION=12.4", "PYTHONPATH=/opt/lib"}
	cf.Config.Labels = map[string]string{"vendor": "nvidia"}
	cf.Architecture = "arm64"
	base = mustConfig(t, base, cf)
	img, err := Assemble(base, AssembleOptions{Name: "eiwizard/custom-gpu-cuda-base", Tag: "1.0", GPU: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := img.ConfigFile()
	want := []string{"PATH=/usr/local/cuda/bin:/usr/bin:/bin", "CUDA_VERSION=12.4", "PYTHONPATH=/home/work:/opt/lib"}
	if strings.Join(got.Config.Env, " ") != strings.Join(want, " ") {
		t.Errorf("env %v, want %v", got.Config.Env, want)
	}
	if got.Config.Labels["vendor"] != "nvidia" || got.Config.Labels[LabelGPU] != "true" || got.Architecture != "arm64" {
		t.Errorf("labels %v arch %s", got.Config.Labels, got.Architecture)
	}
}

func TestAssembleRefusesBadBases(t *testing.T) {
	noPython := []entry{}
	for _, e := range baseEntries() {
		if !strings.Contains(e.name, "python3") {
			noPython = append(noPython, e)
		}
	}
	base := rootfsImage(t, writeRootfs(t, noPython, false))
	if _, err := Assemble(base, AssembleOptions{Name: "n", Tag: "t"}); !errors.Is(err, ErrNoPython) {
		t.Errorf("no python3: %v, want ErrNoPython", err)
	}

	for _, c := range []struct{ passwd, group, want string }{
		{basePasswd + "work:x:1000:1000::/home/work:/bin/sh\n", baseGroup, "user work with uid 1000"},
		{basePasswd + "other:x:1101:1101::/home/o:/bin/sh\n", baseGroup, `uid 1101 is already taken by user "other"`},
		{basePasswd, baseGroup + "other:x:1101:\n", `gid 1101 is already taken by group "other"`},
	} {
		es := baseEntries()
		es[2].data, es[3].data = c.passwd, c.group
		base := rootfsImage(t, writeRootfs(t, es, false))
		if _, err := Assemble(base, AssembleOptions{Name: "n", Tag: "t"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error with %q", err, c.want)
		}
	}

	// A base that already has work with the right ids keeps one entry.
	es := baseEntries()
	es[2].data = basePasswd + "work:x:1101:1101::/home/work:/bin/bash\n"
	img := assemble(t, writeRootfs(t, es, false))
	layers, _ := img.Layers()
	_, data, _ := layerEntries(t, layers[1])
	if strings.Count(data["etc/passwd"], "\nwork:") != 1 {
		t.Errorf("passwd:\n%s", data["etc/passwd"])
	}
}

// layerOf makes a layer of tar entries.
func layerOf(t *testing.T, entries []entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.data))
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestInspectBaseAppliesWhiteouts(t *testing.T) {
	base := rootfsImage(t, writeRootfs(t, baseEntries(), false))
	for _, c := range []struct {
		name   string
		upper  []entry
		python bool
		passwd string
	}{
		{"python3 deleted", []entry{{name: "usr/bin/.wh.python3", typ: tar.TypeReg}}, false, basePasswd},
		{"usr/bin deleted", []entry{{name: "usr/.wh.bin", typ: tar.TypeReg}}, false, basePasswd},
		{"usr/bin made opaque", []entry{{name: "usr/bin/", typ: tar.TypeDir, mode: 0o755}, {name: "usr/bin/.wh..wh..opq", typ: tar.TypeReg}}, false, basePasswd},
		{"python3 in /usr/local, passwd replaced", []entry{
			{name: "usr/local/bin/python3", typ: tar.TypeReg, mode: 0o755, data: "py"},
			{name: "usr/bin/.wh.python3", typ: tar.TypeReg},
			{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, data: "root:x:0:0::/root:/bin/sh\n"},
		}, true, "root:x:0:0::/root:/bin/sh\n"},
		{"opaque then recreated", []entry{{name: "usr/bin/.wh..wh..opq", typ: tar.TypeReg}, {name: "usr/bin/python3", typ: tar.TypeReg, mode: 0o755, data: "py"}}, true, basePasswd},
	} {
		img, err := mutate.AppendLayers(base, layerOf(t, c.upper))
		if err != nil {
			t.Fatal(err)
		}
		b, err := inspectBase(img)
		if err != nil {
			t.Fatal(err)
		}
		if b.hasPython() != c.python || string(b.content["etc/passwd"]) != c.passwd {
			t.Errorf("%s: python %v passwd %q, want %v %q", c.name, b.hasPython(), b.content["etc/passwd"], c.python, c.passwd)
		}
	}
}

// The guide's run commands say `python`: a base whose source has python3
// alone gets usr/bin/python → python3; one with its own `python` (Debian's
// python-is-python3) keeps it.
func TestAssembleLinksPython(t *testing.T) {
	img := assemble(t, writeRootfs(t, baseEntries(), false))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	hdrs, _, _ := layerEntries(t, layers[len(layers)-1])
	h, ok := hdrs["usr/bin/python"]
	if !ok || h.Typeflag != tar.TypeSymlink || h.Linkname != "python3" {
		t.Fatalf("toolkit layer's usr/bin/python: %+v, want a link to python3", h)
	}

	withPython := append(baseEntries(), entry{name: "./usr/bin/python", typ: tar.TypeSymlink, mode: 0o777, link: "python3"})
	img = assemble(t, writeRootfs(t, withPython, false))
	if layers, err = img.Layers(); err != nil {
		t.Fatal(err)
	}
	hdrs, _, _ = layerEntries(t, layers[len(layers)-1])
	if _, ok := hdrs["usr/bin/python"]; ok {
		t.Error("the toolkit layer rewrote the base's own usr/bin/python")
	}
}
