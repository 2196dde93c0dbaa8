package baseimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Default names of the official bases, as the platform had them.
const (
	DefaultCPUName = "eiwizard/custom-cpu-base"
	DefaultTag     = "1.0"
)

// BuildOptions describe one base build.
type BuildOptions struct {
	Name    string   // repository, e.g. eiwizard/custom-cpu-base
	Tag     string   // e.g. 1.0
	From    string   // the source; see Open
	Include []string // Debian packages for a debian:SUITE source
	GPU     bool     // a GPU base (the source is a CUDA image)
	// Supersedes lists other name:tag bases this build replaces; the
	// earlier build of Name:Tag itself is always replaced.
	Supersedes []string
	// Registry is the registry address (host:port, plain HTTP) to push to;
	// empty: no push.
	Registry string
	// Auth is what pushes present to the registry (the emulator's
	// credentials); nil: anonymous.
	Auth authn.Authenticator
	// Output, when set, is a path where the image is also written as a
	// tarball (docker load can read it).
	Output string
	// Catalog, when set, records the build. It needs Registry: a base the
	// registry does not hold cannot be audited against.
	Catalog *Catalog
	// Arch is the architecture recorded for a root filesystem source;
	// default runtime.GOARCH.
	Arch     string
	Progress io.Writer // progress lines; nil: none
}

// Result is a finished build.
type Result struct {
	Ref     string   // registry/name:tag, or name:tag without a registry
	Digest  string   // manifest digest
	DiffIDs []string // rootfs.diff_ids, the toolkit layer's last
	Record  *Record  // the catalog record, when a catalog was given
}

// Build reads the source, adds the toolkit layer, pushes the base to the
// registry and records it in the catalog.
func Build(ctx context.Context, o BuildOptions) (Result, error) {
	if o.Name == "" || o.Tag == "" {
		return Result{}, errors.New("a base needs a name and a tag")
	}
	if o.Catalog != nil && o.Registry == "" {
		return Result{}, errors.New("recording a base in the catalog needs a registry to push it to")
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	var ref name.Tag
	var err error
	if o.Registry != "" {
		if ref, err = Reference(o.Registry, o.Name, o.Tag); err != nil {
			return Result{}, err
		}
		// Fail before the slow steps when the registry is down.
		if err := ping(ctx, o.Registry); err != nil {
			return Result{}, err
		}
	} else if ref, err = name.NewTag(o.Name+":"+o.Tag, name.WeakValidation); err != nil {
		return Result{}, fmt.Errorf("bad base name %s:%s: %w", o.Name, o.Tag, err)
	}
	src, cleanup, err := Open(ctx, o.From, o.Include, progress)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	fmt.Fprintf(progress, "adding the toolkit layer to %s\n", o.From)
	img, err := Assemble(src, AssembleOptions{Name: o.Name, Tag: o.Tag, GPU: o.GPU, Arch: o.Arch})
	if err != nil {
		return Result{}, fmt.Errorf("building %s:%s from %s: %w", o.Name, o.Tag, o.From, err)
	}
	res, err := describe(img)
	if err != nil {
		return Result{}, err
	}
	res.Ref = ref.String()
	if o.Output != "" {
		fmt.Fprintf(progress, "writing %s\n", o.Output)
		if err := tarball.WriteToFile(o.Output, ref, img); err != nil {
			return Result{}, fmt.Errorf("writing %s: %w", o.Output, err)
		}
	}
	if o.Registry != "" {
		if _, err := Push(ctx, img, ref, progress, authOption(o.Auth)...); err != nil {
			return Result{}, err
		}
	}
	if o.Catalog != nil {
		rec, err := o.Catalog.Add(Record{
			Name: o.Name, Tag: o.Tag, Digest: res.Digest, DiffIDs: res.DiffIDs,
			GPU: o.GPU, Source: o.From,
		}, o.Supersedes...)
		if err != nil {
			return Result{}, fmt.Errorf("recording %s: %w", res.Ref, err)
		}
		res.Record = &rec
	}
	return res, nil
}

func describe(img v1.Image) (Result, error) {
	d, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Result{}, err
	}
	res := Result{Digest: d.String()}
	for _, h := range cf.RootFS.DiffIDs {
		res.DiffIDs = append(res.DiffIDs, h.String())
	}
	return res, nil
}

// AddOptions describe a base registered from an image already in the
// registry.
type AddOptions struct {
	Registry   string
	Auth       authn.Authenticator // nil: anonymous
	Name, Tag  string
	GPU        bool // default: the image's org.malocal.base.gpu label
	Supersedes []string
}

// Add registers the image Name:Tag already in the registry as an official
// base, recording its digest and diff_ids. The image must have python3's
// toolkit: the work user and /home/work/run_train.sh are checked.
func Add(ctx context.Context, c *Catalog, o AddOptions) (Record, error) {
	ref, err := Reference(o.Registry, o.Name, o.Tag)
	if err != nil {
		return Record{}, err
	}
	if err := ping(ctx, o.Registry); err != nil {
		return Record{}, err
	}
	img, err := remote.Image(ref, append(authOption(o.Auth), remote.WithContext(ctx))...)
	if err != nil {
		return Record{}, fmt.Errorf("reading %s from the registry: %w", ref, err)
	}
	if err := CheckBase(img); err != nil {
		return Record{}, fmt.Errorf("%s: %w", ref, err)
	}
	res, err := describe(img)
	if err != nil {
		return Record{}, err
	}
	gpu := o.GPU
	if cf, err := img.ConfigFile(); err == nil && cf.Config.Labels[LabelGPU] == "true" {
		gpu = true
	}
	return c.Add(Record{
		Name: o.Name, Tag: o.Tag, Digest: res.Digest, DiffIDs: res.DiffIDs, GPU: gpu,
		Source: "registry", Created: time.Now().UTC(),
	}, o.Supersedes...)
}

// CheckBase checks that img has what a base needs: python3, the work user
// with uid and gid 1101, and run_train.sh in /home/work.
func CheckBase(img v1.Image) error {
	b, err := inspectBase(img, RunTrain[1:])
	if err != nil {
		return err
	}
	if !b.hasPython() {
		return ErrNoPython
	}
	if !b.exists[RunTrain[1:]] {
		return fmt.Errorf("no %s: not a malocal base (build one with `malocal base build`)", RunTrain)
	}
	if !hasEntry(b.content["etc/passwd"], func(f []string) bool {
		return len(f) >= 4 && f[0] == WorkUser && f[2] == "1101" && f[3] == "1101"
	}) {
		return fmt.Errorf("no user %s with uid and gid 1101 in /etc/passwd", WorkUser)
	}
	return nil
}
