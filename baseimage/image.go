package baseimage

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Labels set on every base image's config.
const (
	LabelBase    = "org.malocal.base"         // "true"
	LabelName    = "org.malocal.base.name"    // e.g. eiwizard/custom-cpu-base
	LabelTag     = "org.malocal.base.tag"     // e.g. 1.0
	LabelGPU     = "org.malocal.base.gpu"     // "true" or "false"
	LabelToolkit = "org.malocal.base.toolkit" // ToolkitDigest()
)

// DefaultPath is the PATH of a base whose source sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// AssembleOptions describe the base image made from a source image.
type AssembleOptions struct {
	Name string // repository name, e.g. eiwizard/custom-cpu-base
	Tag  string // e.g. 1.0
	GPU  bool   // jobs on images built from this base default to GPU flavors
	// Arch is the architecture recorded when the source sets none (a root
	// filesystem tarball); default runtime.GOARCH.
	Arch string
}

// Assemble adds the toolkit layer to base and sets the base image's config:
// OS and architecture, USER work, WORKDIR /home/work, PATH, PYTHONPATH
// (with the toolkit, so `import moxing` works anywhere) and the malocal
// labels. The base's other settings (its environment, entrypoint, labels)
// are kept.
func Assemble(base v1.Image, o AssembleOptions) (v1.Image, error) {
	layer, err := ToolkitLayer(base)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: LayerTime},
			CreatedBy: "malocal base build: user work (1101:1101), /cache, toolkit in /home/work",
			Comment:   "malocal toolkit " + ToolkitDigest()[:12],
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the source image's config: %w", err)
	}
	cf = cf.DeepCopy()
	if cf.OS == "" {
		cf.OS = "linux"
	}
	if cf.Architecture == "" {
		cf.Architecture = o.Arch
		if cf.Architecture == "" {
			cf.Architecture = runtime.GOARCH
		}
	}
	cf.Config.User = WorkUser
	cf.Config.WorkingDir = WorkHome
	cf.Config.Env = setEnv(cf.Config.Env, "PATH", func(old string) string {
		if old == "" {
			return DefaultPath
		}
		return old
	})
	cf.Config.Env = setEnv(cf.Config.Env, "PYTHONPATH", func(old string) string {
		if old == "" {
			return WorkHome
		}
		for _, p := range strings.Split(old, ":") {
			if p == WorkHome {
				return old
			}
		}
		return WorkHome + ":" + old
	})
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels[LabelBase] = "true"
	cf.Config.Labels[LabelName] = o.Name
	cf.Config.Labels[LabelTag] = o.Tag
	cf.Config.Labels[LabelGPU] = strconv.FormatBool(o.GPU)
	cf.Config.Labels[LabelToolkit] = ToolkitDigest()
	return mutate.ConfigFile(img, cf)
}

// setEnv sets KEY=f(old value) in env, keeping its position when present.
func setEnv(env []string, key string, f func(string) string) []string {
	for i, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			out := append([]string(nil), env...)
			out[i] = key + "=" + f(v)
			return out
		}
	}
	return append(append([]string(nil), env...), key+"="+f(""))
}
