package samples

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/fakeobs"
	"github.com/malocal/malocal/fakeobs/obsclient"
	"github.com/malocal/malocal/registry"
)

// services starts malocal's registry and object store in process and
// returns the registry's host:port, the store's endpoint and a client of it.
func services(t *testing.T) (string, string, *obsclient.Client) {
	t.Helper()
	reg, err := registry.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(reg.Handler())
	creds := fakeobs.Credentials{AccessKey: "AK", SecretKey: "SK", Region: "cn-north-4"}
	obs, err := fakeobs.New(t.TempDir(), fakeobs.WithCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	obsSrv := httptest.NewServer(obs.Handler())
	t.Cleanup(func() {
		rs.Close()
		obsSrv.Close()
		reg.Close()
	})
	c, err := obsclient.New(obsclient.Config{Endpoint: obsSrv.URL, AccessKey: creds.AccessKey, SecretKey: creds.SecretKey, Region: creds.Region})
	if err != nil {
		t.Fatal(err)
	}
	return rs.Listener.Addr().String(), obsSrv.URL, c
}

// fakeRootfs is a root filesystem tarball with what a base needs: passwd,
// group, bash and python3 (as placeholders).
func fakeRootfs(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, d := range []string{"bin/", "etc/", "home/", "usr/", "usr/bin/", "usr/local/", "usr/local/bin/", "tmp/"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755})
	}
	for n, data := range map[string]string{
		"etc/passwd":      "root:x:0:0:root:/root:/bin/bash\n",
		"etc/group":       "root:x:0:\n",
		"bin/bash":        "#!fake bash",
		"usr/bin/python3": "#!fake python3",
	} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o755, Size: int64(len(data))})
		tw.Write([]byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstall(t *testing.T) {
	ctx := context.Background()
	reg, _, s3 := services(t)
	base, err := baseimage.Build(ctx, baseimage.BuildOptions{Name: baseimage.DefaultCPUName, Tag: baseimage.DefaultTag, From: fakeRootfs(t), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	writeTinyMNIST(t, data)
	os.WriteFile(filepath.Join(data, "README"), []byte("not data"), 0o644)
	var progress bytes.Buffer
	o := InstallOptions{S3: s3, DataDir: data, Registry: reg, Progress: &progress}
	res, err := Install(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.AppURL != "s3://malocal-demo/new/" || res.DataURL != "s3://malocal-demo/new/mnist_data/" || res.Scripts != 5 || res.DataUploaded != 4 || res.Image != DefaultImage {
		t.Errorf("result %+v", res)
	}
	var keys []string
	err = s3.List(ctx, obsclient.URL{Bucket: DefaultBucket}, true, func(e obsclient.Entry) error {
		keys = append(keys, e.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	want := "new/mnist/input_data.py new/mnist/mnist_ddp.py new/mnist/mnist_replica_kill.py new/mnist/mnist_softmax.py new/mnist/mnist_util.py " +
		"new/mnist_data/t10k-images-idx3-ubyte new/mnist_data/t10k-labels-idx1-ubyte new/mnist_data/train-images-idx3-ubyte.gz new/mnist_data/train-labels-idx1-ubyte.gz"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("objects\n got %s\nwant %s", got, want)
	}
	var script bytes.Buffer
	if err := s3.Cat(ctx, obsclient.URL{Bucket: DefaultBucket, Key: ScriptsPrefix + Softmax}, &script); err != nil {
		t.Fatal(err)
	}
	if embedded, _ := files.ReadFile("mnist/" + Softmax); !bytes.Equal(script.Bytes(), embedded) {
		t.Error("the uploaded mnist_softmax.py differs from the embedded one")
	}

	// The image: the base's layers as a prefix, one layer with the python
	// link, the sample label.
	ref, _ := name.ParseReference(reg+"/"+DefaultImage, name.Insecure)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != res.Digest {
		t.Errorf("registry holds %s, install says %s", d, res.Digest)
	}
	cf, _ := img.ConfigFile()
	if len(cf.RootFS.DiffIDs) != len(base.DiffIDs)+1 || cf.Config.Labels[LabelSample] != "mnist" || cf.Config.User != baseimage.WorkUser {
		t.Errorf("image config %+v", cf.Config)
	}
	for i, d := range base.DiffIDs {
		if cf.RootFS.DiffIDs[i].String() != d {
			t.Errorf("layer %d is not the base's", i)
		}
	}
	layers, _ := img.Layers()
	rc, _ := layers[len(layers)-1].Uncompressed()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "usr/local/bin/python" || hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != "/usr/bin/python3" {
		t.Errorf("sample layer: %+v %v", hdr, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("sample layer has more than the link: %v", err)
	}
	rc.Close()

	// Again: nothing to upload but the scripts, the image is up to date.
	progress.Reset()
	res2, err := Install(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res2.DataUploaded != 0 || res2.Digest != res.Digest || !strings.Contains(progress.String(), "is up to date") || !strings.Contains(progress.String(), "data already in") {
		t.Errorf("second install %+v:\n%s", res2, progress.String())
	}

	// The same image under another digest (here: a manifest annotation;
	// in life, layers compressed otherwise) is kept, not re-pointed.
	other := mutate.Annotations(img, map[string]string{"org.example.note": "pushed by another tool"}).(v1.Image)
	if err := remote.Write(ref, other); err != nil {
		t.Fatal(err)
	}
	od, _ := other.Digest()
	progress.Reset()
	res3, err := Install(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res3.Digest != od.String() || res3.Digest == res.Digest || !strings.Contains(progress.String(), "is up to date (same base and files)") {
		t.Errorf("third install re-pointed the unchanged image: %s, want %s kept:\n%s", res3.Digest, od, progress.String())
	}
	if now, err := remote.Head(ref); err != nil || now.Digest != od {
		t.Errorf("the registry's %s is %v (%v), want %s", DefaultImage, now, err, od)
	}

	// Missing data, a missing base.
	o.DataDir = t.TempDir()
	if _, err := Install(ctx, o); !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "missing train-images-idx3-ubyte") {
		t.Errorf("empty data dir: %v", err)
	}
	o.DataDir, o.Base = data, "eiwizard/none:1.0"
	if _, err := Install(ctx, o); err == nil || !strings.Contains(err.Error(), "malocal base build --from debian:bookworm --include python3-pip,python3-numpy") {
		t.Errorf("missing base: %v", err)
	}
	if err := DataHint(FashionMNIST, IdxFiles); !strings.Contains(err.Error(), "apt-get install dataset-fashion-mnist") {
		t.Errorf("hint: %v", err)
	}
}

func TestCheckBaseSource(t *testing.T) {
	if err := CheckBaseSource("rootfs:/x.tar"); err != nil {
		t.Errorf("rootfs source: %v", err)
	}
	t.Setenv("PATH", t.TempDir()) // no mmdebstrap
	err := CheckBaseSource("debian:bookworm")
	if err == nil {
		t.Fatal("no error without mmdebstrap")
	}
	for _, want := range []string{"--from docker:REF", "rootfs.tar"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
	if _, statErr := os.Stat("/etc/debian_version"); statErr == nil && !strings.Contains(err.Error(), "sudo apt-get install mmdebstrap") {
		t.Errorf("on Debian: %v", err)
	}
}

// TestSoftmaxOverS3 runs mnist_softmax.py on the host with data and
// outputs in the object store, through the toolkit's moxing module.
func TestSoftmaxOverS3(t *testing.T) {
	needPython(t)
	ctx := context.Background()
	_, endpoint, s3 := services(t)
	data := t.TempDir()
	writeTinyMNIST(t, data)
	if err := EnsureBucket(ctx, s3, "bkt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Copy(ctx, data, "s3://bkt/new/mnist_data/", true); err != nil {
		t.Fatal(err)
	}
	toolkit := t.TempDir()
	if err := os.CopyFS(toolkit, baseimage.Toolkit()); err != nil {
		t.Fatal(err)
	}
	out, code := python(t, ctx, t.TempDir(), []string{
		"PYTHONPATH=" + toolkit, "MALOCAL_CACHE_DIR=" + t.TempDir(),
		"AWS_ENDPOINT_URL=" + endpoint, "AWS_ACCESS_KEY_ID=AK", "AWS_SECRET_ACCESS_KEY=SK", "AWS_DEFAULT_REGION=cn-north-4",
		"DLS_DATA_URL=s3://bkt/new/mnist_data/", "DLS_TRAIN_URL=obs://bkt/out/softmax/",
	}, filepath.Join(scriptsDir(t), Softmax), "--train_steps", "5", "--batch_size", "4")
	if code != 0 || !strings.Contains(out, "copying s3://bkt/new/mnist_data/ to ") || ParseAccuracy(out) < 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	var m bytes.Buffer
	if err := s3.Cat(ctx, obsclient.URL{Bucket: "bkt", Key: "out/softmax/metrics.json"}, &m); err != nil {
		t.Fatalf("metrics.json in the store: %v\n%s", err, out)
	}
	if metricsAccuracy(m.String()) != ParseAccuracy(out) {
		t.Errorf("metrics.json %s, log %v", m.String(), ParseAccuracy(out))
	}
}
