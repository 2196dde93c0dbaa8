package samples

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/baseimage"
	"github.com/malocal/malocal/emulator"
	"github.com/malocal/malocal/fakeobs/obsclient"
)

// LabelSample is set on the sample image's config.
const LabelSample = "org.malocal.sample"

// ErrNoData is returned when the idx files are not where Install looks.
var ErrNoData = errors.New("no MNIST data")

// InstallOptions say where the samples go.
type InstallOptions struct {
	S3       *obsclient.Client   // the object store
	Bucket   string              // default DefaultBucket
	DataDir  string              // the four idx files; default FashionMNIST
	Registry string              // host:port of the registry
	Auth     authn.Authenticator // the registry's credentials; nil: anonymous
	Base     string              // the official base, name:tag; default eiwizard/custom-cpu-base:1.0
	Image    string              // the sample image, repo:tag; default DefaultImage (DefaultTorchImage for pytorch)
	Engine   string              // EngineNumpy (default) or EnginePyTorch: which image is built
	Progress io.Writer           // progress lines; nil: none
}

// InstallResult is what Install put where.
type InstallResult struct {
	Bucket       string `json:"bucket"`
	AppURL       string `json:"app_url"`  // s3://bucket/new/
	DataURL      string `json:"data_url"` // s3://bucket/new/mnist_data/
	Scripts      int    `json:"scripts"`
	DataUploaded int    `json:"data_uploaded"` // idx files uploaded (the others were there already)
	Image        string `json:"image"`         // repo:tag, as jobs name it
	Digest       string `json:"digest"`
}

func (o *InstallOptions) defaults() {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.DataDir == "" {
		o.DataDir = FashionMNIST
	}
	if o.Base == "" {
		o.Base = baseimage.DefaultCPUName + ":" + baseimage.DefaultTag
	}
	if o.Engine == "" {
		o.Engine = EngineNumpy
	}
	if o.Image == "" {
		o.Image = DefaultImage
		if o.Engine == EnginePyTorch {
			o.Image = DefaultTorchImage
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// DataHint says how to get the data when dir lacks it.
func DataHint(dir string, missing []string) error {
	if dir == FashionMNIST {
		return fmt.Errorf("%w in %s: install Debian's Fashion-MNIST (sudo apt-get install dataset-fashion-mnist), or pass --data DIR with the idx files of MNIST (%s, plain or .gz)",
			ErrNoData, dir, strings.Join(IdxFiles, ", "))
	}
	return fmt.Errorf("%w in %s: missing %s (plain or .gz)", ErrNoData, dir, strings.Join(missing, ", "))
}

// Install uploads the scripts to s3://bucket/new/mnist/ and the idx files
// to s3://bucket/new/mnist_data/ (skipping files already there with the
// same size), then builds the sample image on the base and pushes it. Run
// again, it changes nothing that is already in place.
func Install(ctx context.Context, o InstallOptions) (InstallResult, error) {
	o.defaults()
	if o.S3 == nil || o.Registry == "" {
		return InstallResult{}, errors.New("samples: install needs the object store and the registry")
	}
	if err := CheckEngine(o.Engine); err != nil {
		return InstallResult{}, err
	}
	if missing := CheckData(o.DataDir); len(missing) > 0 {
		return InstallResult{}, DataHint(o.DataDir, missing)
	}
	res := InstallResult{Bucket: o.Bucket, AppURL: "s3://" + o.Bucket + "/" + CodePrefix, DataURL: "s3://" + o.Bucket + "/" + DataPrefix}
	if err := EnsureBucket(ctx, o.S3, o.Bucket); err != nil {
		return res, err
	}
	n, err := uploadScripts(ctx, o.S3, o.Bucket)
	if err != nil {
		return res, err
	}
	res.Scripts = n
	fmt.Fprintf(o.Progress, "uploaded %d scripts to s3://%s/%s\n", n, o.Bucket, ScriptsPrefix)
	if res.DataUploaded, err = uploadData(ctx, o.S3, o.Bucket, o.DataDir, o.Progress); err != nil {
		return res, err
	}
	var digest string
	if o.Engine == EnginePyTorch {
		digest, err = BuildTorchImage(ctx, o.Registry, o.Base, o.Image, nil, o.Progress, registryAuth(o.Auth)...)
	} else {
		digest, err = BuildImage(ctx, o.Registry, o.Base, o.Image, o.Progress, registryAuth(o.Auth)...)
	}
	if err != nil {
		return res, err
	}
	res.Image, res.Digest = o.Image, digest
	return res, nil
}

// EnsureBucket creates the bucket unless it exists.
func EnsureBucket(ctx context.Context, c *obsclient.Client, bucket string) error {
	bs, err := c.ListBuckets(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.Name == bucket {
			return nil
		}
	}
	return c.MakeBucket(ctx, bucket)
}

// uploadScripts writes the embedded scripts to a temp dir and copies it to
// s3://bucket/new/mnist/.
func uploadScripts(ctx context.Context, c *obsclient.Client, bucket string) (int, error) {
	dir, err := os.MkdirTemp("", "malocal-samples-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if err := WriteTo(dir); err != nil {
		return 0, err
	}
	st, err := c.Copy(ctx, filepath.Join(dir, "mnist"), "s3://"+bucket+"/"+ScriptsPrefix, true)
	if err != nil {
		return 0, fmt.Errorf("uploading the samples: %w", err)
	}
	return st.Files, nil
}

// WriteTo writes the embedded sample tree (mnist/*.py) under dir.
func WriteTo(dir string) error {
	return fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}

// uploadData copies the idx files of dir to s3://bucket/new/mnist_data/,
// skipping those already there with the same size.
func uploadData(ctx context.Context, c *obsclient.Client, bucket, dir string, progress io.Writer) (int, error) {
	have := map[string]int64{}
	err := c.List(ctx, obsclient.URL{Bucket: bucket, Key: DataPrefix}, true, func(e obsclient.Entry) error {
		if !e.Folder {
			have[strings.TrimPrefix(e.Key, DataPrefix)] = e.Size
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	uploaded := 0
	for _, e := range ents {
		if !isIdx(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p) // follows links
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if size, ok := have[e.Name()]; ok && size == st.Size() {
			continue
		}
		if _, err := c.Copy(ctx, p, "s3://"+bucket+"/"+DataPrefix+e.Name(), false); err != nil {
			return uploaded, fmt.Errorf("uploading %s: %w", p, err)
		}
		uploaded++
	}
	if uploaded > 0 {
		fmt.Fprintf(progress, "uploaded %d data files from %s to s3://%s/%s\n", uploaded, dir, bucket, DataPrefix)
	} else {
		fmt.Fprintf(progress, "data already in s3://%s/%s\n", bucket, DataPrefix)
	}
	return uploaded, nil
}

func isIdx(n string) bool {
	n = strings.TrimSuffix(n, ".gz")
	for _, f := range IdxFiles {
		if n == f || n == strings.Replace(f, "-idx", ".idx", 1) {
			return true
		}
	}
	return false
}

// BuildImage makes the sample image from the base in the registry and
// pushes it as image (repo:tag): the base's layers, plus one layer with
// /usr/local/bin/python → python3 (the guide's command says `python`, and
// Debian's python3 package has no `python`), and the sample label. It
// returns the image's digest.
func BuildImage(ctx context.Context, registry, base, image string, progress io.Writer, opts ...remote.Option) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	imgRef, bimg, err := readBase(ctx, registry, base, image, opts)
	if err != nil {
		return "", err
	}
	layer, err := pythonLayer()
	if err != nil {
		return "", err
	}
	img, err := sampleImage(bimg, layer, "malocal samples install: /usr/local/bin/python -> /usr/bin/python3",
		map[string]string{LabelSample: "mnist"})
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if old, err := remote.Head(imgRef, append(opts, remote.WithContext(ctx))...); err == nil && old.Digest == d {
		fmt.Fprintf(progress, "image %s@%s is up to date\n", imgRef, d)
		return d.String(), nil
	}
	// The same content under another digest (its layers compressed
	// otherwise, or its manifest written by another tool) is kept as it is:
	// its digest is what jobs and verdicts know it by.
	if old, err := remote.Image(imgRef, append(opts, remote.WithContext(ctx))...); err == nil && sameContent(old, img) {
		od, err := old.Digest()
		if err == nil {
			fmt.Fprintf(progress, "image %s@%s is up to date (same base and files)\n", imgRef, od)
			return od.String(), nil
		}
	}
	fmt.Fprintf(progress, "building %s on %s\n", image, base)
	if _, err := baseimage.Push(ctx, img, imgRef, progress, opts...); err != nil {
		return "", err
	}
	return d.String(), nil
}

// registryAuth is the remote option that presents a (nil: none).
func registryAuth(a authn.Authenticator) []remote.Option {
	if a == nil {
		return nil
	}
	return []remote.Option{remote.WithAuth(a)}
}

// CredentialsAuth turns the emulator's credentials into what pushes present.
func CredentialsAuth(c emulator.Credentials) authn.Authenticator {
	if c.RegistryPassword == "" {
		return nil
	}
	return &authn.Basic{Username: c.RegistryUsername, Password: c.RegistryPassword}
}

// sameContent reports whether two images have the same layers (by
// diff_id, uncompressed) and old is the sample image.
func sameContent(old, img v1.Image) bool {
	ocf, err := old.ConfigFile()
	if err != nil || ocf.Config.Labels[LabelSample] == "" {
		return false
	}
	ncf, err := img.ConfigFile()
	if err != nil || len(ocf.RootFS.DiffIDs) != len(ncf.RootFS.DiffIDs) {
		return false
	}
	for i := range ocf.RootFS.DiffIDs {
		if ocf.RootFS.DiffIDs[i] != ncf.RootFS.DiffIDs[i] {
			return false
		}
	}
	return true
}

// readBase names the image to build in the registry and reads its official
// base there, checked to be one.
func readBase(ctx context.Context, registry, base, image string, opts []remote.Option) (name.Tag, v1.Image, error) {
	baseRef, err := ref(registry, base)
	if err != nil {
		return name.Tag{}, nil, err
	}
	imgRef, err := ref(registry, image)
	if err != nil {
		return name.Tag{}, nil, err
	}
	bimg, err := remote.Image(baseRef, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return name.Tag{}, nil, fmt.Errorf("reading the base %s: %w (build it with `malocal base build --from debian:bookworm --include %s`)",
			base, err, strings.Join(BaseInclude, ","))
	}
	if err := baseimage.CheckBase(bimg); err != nil {
		return name.Tag{}, nil, fmt.Errorf("%s: %w", base, err)
	}
	return imgRef, bimg, nil
}

func ref(registry, repoTag string) (name.Tag, error) {
	repo, tag, ok := strings.Cut(repoTag, ":")
	if !ok || repo == "" || tag == "" {
		return name.Tag{}, fmt.Errorf("%q: want NAME:TAG", repoTag)
	}
	return baseimage.Reference(registry, repo, tag)
}

// pythonLayer is one symlink, usr/local/bin/python → /usr/bin/python3, with
// a fixed time so that the image digest depends only on the base.
func pythonLayer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeSymlink, Name: "usr/local/bin/python", Linkname: "/usr/bin/python3",
		Mode: 0o777, ModTime: baseimage.LayerTime, Format: tar.FormatPAX,
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}

// sampleImage is base with one more layer, its history line and the
// sample's labels: how both sample images are made from their base.
func sampleImage(base v1.Image, layer v1.Layer, createdBy string, labels map[string]string) (v1.Image, error) {
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: baseimage.LayerTime}, CreatedBy: createdBy},
	})
	if err != nil {
		return nil, err
	}
	return withLabels(img, labels)
}

// withLabels returns img with labels added to its config.
func withLabels(img v1.Image, labels map[string]string) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		cf.Config.Labels[k] = v
	}
	return mutate.ConfigFile(img, cf)
}
