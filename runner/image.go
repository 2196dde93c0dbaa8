package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/baseimage"
)

// DefaultBaseInclude are the Debian packages of the default base when a run
// has to build it (python3 is always added).
var DefaultBaseInclude = []string{"python3-pip"}

// errNotInEngine is returned by inspect when the engine lacks the image.
var errNotInEngine = errors.New("not in the local Docker engine")

// ensureImage makes Options.Image available in the emulator's registry and
// returns the reference to submit. An image already there is used as it
// is; else it is pushed from the local Docker engine, with the official
// base it was built on (its org.malocal.base.* labels) pushed and
// registered first when the emulator lacks it. The default base itself is
// built offline when it is found nowhere.
func (r *run) ensureImage(ctx context.Context) (string, error) {
	repo, ref, err := api.ParseImageRef(r.o.Image)
	if err != nil {
		return "", err
	}
	if ok, err := r.inRegistry(ctx, repo, ref); err != nil || ok {
		return api.FormatImageRef(repo, ref), err
	}
	labels, err := inspectLabels(ctx, r.o.Docker, r.o.Image)
	if errors.Is(err, errNotInEngine) {
		if repo == baseimage.DefaultCPUName && !strings.Contains(ref, ":") {
			return api.FormatImageRef(repo, ref), r.buildDefaultBase(ctx, ref)
		}
		return "", fmt.Errorf("image %s is neither in the emulator's registry nor in the local Docker engine: build or pull it with docker first", r.o.Image)
	}
	if err != nil {
		return "", err
	}
	tag := ref
	if strings.Contains(ref, ":") { // a digest: docker push needs a tag
		tag = r.id
	}
	if name, btag := labels[baseimage.LabelName], labels[baseimage.LabelTag]; name != "" && btag != "" {
		if err := r.ensureBase(ctx, name, btag); err != nil {
			return "", fmt.Errorf("image %s is built on base %s:%s: %w", r.o.Image, name, btag, err)
		}
		if name == repo && btag == tag { // the image is that base
			return repo + ":" + tag, nil
		}
		if err := r.checkBuiltOn(ctx, name, btag); err != nil {
			return "", err
		}
	}
	if err := r.push(ctx, r.o.Image, repo, tag); err != nil {
		return "", err
	}
	return repo + ":" + tag, nil
}

// inRegistry reports whether the registry holds repo at ref (tag or digest).
func (r *run) inRegistry(ctx context.Context, repo, ref string) (bool, error) {
	imgs, err := r.t.client.Images(ctx)
	if err != nil {
		return false, fmt.Errorf("listing the emulator's images: %w", err)
	}
	for _, im := range imgs {
		if im.Repository == repo && (im.Tag == ref || im.Digest == ref) {
			return true, nil
		}
	}
	return false, nil
}

// ensureBase makes sure name:tag is an official base of the emulator: in
// its catalog, else registered from its registry, else pushed from the
// local Docker engine and registered.
func (r *run) ensureBase(ctx context.Context, name, tag string) error {
	cat := baseimage.OpenCatalog(r.t.dataDir)
	cur, err := cat.Current()
	if err != nil {
		return err
	}
	for _, rec := range cur {
		if rec.Name == name && rec.Tag == tag {
			return nil
		}
	}
	inReg, err := r.inRegistry(ctx, name, tag)
	if err != nil {
		return err
	}
	if !inReg {
		src, err := findInEngine(ctx, r.o.Docker, name+":"+tag)
		if err != nil {
			return err
		}
		if src == "" {
			return fmt.Errorf("the base is neither in the emulator nor in the local Docker engine: load it into Docker (docker load, docker pull) or build it with `malocal base build --name %s --tag %s`", name, tag)
		}
		r.logf("pushing base %s from the local Docker engine", src)
		if err := r.push(ctx, src, name, tag); err != nil {
			return err
		}
	}
	rec, err := baseimage.Add(ctx, cat, baseimage.AddOptions{Registry: r.t.registry, Name: name, Tag: tag, Auth: r.t.auth()})
	if err != nil {
		return fmt.Errorf("registering the base: %w", err)
	}
	r.logf("registered base %s (%s)", rec.Ref(), rec.Digest)
	return nil
}

// buildDefaultBase builds the default CPU base offline with mmdebstrap,
// pushes it and records it.
func (r *run) buildDefaultBase(ctx context.Context, tag string) error {
	r.logf("building the default base %s:%s offline from debian:bookworm (mmdebstrap); this takes minutes", baseimage.DefaultCPUName, tag)
	_, err := baseimage.Build(ctx, baseimage.BuildOptions{
		Name: baseimage.DefaultCPUName, Tag: tag, From: "debian:bookworm", Include: DefaultBaseInclude,
		Registry: r.t.registry, Auth: r.t.auth(), Catalog: baseimage.OpenCatalog(r.t.dataDir), Progress: r.o.Stderr,
	})
	if errors.Is(err, baseimage.ErrNoMmdebstrap) {
		return fmt.Errorf("the default base %s:%s is neither in the emulator nor in the local Docker engine, and building it needs mmdebstrap: install it (apt-get install mmdebstrap), or load the base into Docker: %w", baseimage.DefaultCPUName, tag, err)
	}
	if err != nil {
		return fmt.Errorf("building the default base %s:%s: %w", baseimage.DefaultCPUName, tag, err)
	}
	return nil
}

// checkBuiltOn checks, before anything is pushed or submitted, that
// Options.Image is built on the emulator's build of base name:tag: the
// base's diff_ids are a prefix of the image's. When it is another build,
// the error says so in one line, with both digests and the fix.
func (r *run) checkBuiltOn(ctx context.Context, name, tag string) error {
	cur, err := baseimage.OpenCatalog(r.t.dataDir).Current()
	if err != nil {
		return err
	}
	var rec *baseimage.Record
	for i := range cur {
		if cur[i].Name == name && cur[i].Tag == tag {
			rec = &cur[i]
		}
	}
	if rec == nil || len(rec.DiffIDs) == 0 {
		return nil // registered just now from the engine's own base
	}
	layers, err := inspectDiffIDs(ctx, r.o.Docker, r.o.Image)
	if err != nil {
		return err
	}
	if hasPrefix(layers, rec.DiffIDs) {
		return nil
	}
	local := "not in the local Docker engine"
	if src, err := findInEngine(ctx, r.o.Docker, name+":"+tag); err == nil && src != "" {
		if id, err := dockerCmd(ctx, r.o.Docker, "image", "inspect", "--format", "{{.Id}}", src); err == nil {
			local = strings.TrimSpace(id)
		}
	}
	return fmt.Errorf("%w: image %s is built on another build of base %s:%s than the emulator's (emulator: %s; local Docker engine: %s): register the local base (docker push it to the emulator's registry, then `malocal base add %s:%s`), or rebuild %s FROM the emulator's base",
		ErrBaseMismatch, r.o.Image, name, tag, rec.Digest, local, name, tag, r.o.Image)
}

// ErrBaseMismatch is returned when the image is built on another build
// of its base than the emulator's.
var ErrBaseMismatch = errors.New("base mismatch")

// inspectDiffIDs returns the rootfs diff_ids of the engine's image ref.
func inspectDiffIDs(ctx context.Context, docker, ref string) ([]string, error) {
	out, err := dockerCmd(ctx, docker, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref)
	if err != nil {
		return nil, err
	}
	var layers []string
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &layers); err != nil {
		return nil, fmt.Errorf("reading the layers of %s: %w", ref, err)
	}
	return layers, nil
}

func hasPrefix(s, prefix []string) bool {
	if len(prefix) > len(s) {
		return false
	}
	for i := range prefix {
		if s[i] != prefix[i] {
			return false
		}
	}
	return true
}

// push pushes the engine's image src to the registry as repo:tag, under a
// temporary tag that is removed afterwards.
func (r *run) push(ctx context.Context, src, repo, tag string) error {
	dst := r.t.pushRegistry + "/" + repo + ":" + tag
	r.logf("pushing %s to the emulator's registry as %s:%s", src, repo, tag)
	if _, err := dockerCmd(ctx, r.o.Docker, "tag", src, dst); err != nil {
		return err
	}
	// The registry takes no anonymous push: log the engine in, as
	// `malocal registry login` does, in a docker config dir of this run's
	// own, so that runs side by side do not rewrite one config file and
	// the user's own config is left alone.
	cfg, err := os.MkdirTemp("", "malocal-run-docker-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfg)
	login := exec.CommandContext(ctx, r.o.Docker, "--config", cfg, "login", "--username", r.t.regAuth.Username, "--password-stdin", r.t.pushRegistry)
	login.Stdin = strings.NewReader(r.t.regAuth.Password)
	if out, err := login.CombinedOutput(); err != nil {
		return fmt.Errorf("docker login %s: %w: %s", r.t.pushRegistry, err, strings.TrimSpace(string(out)))
	}
	_, err = dockerCmd(ctx, r.o.Docker, "--config", cfg, "push", dst)
	// Only the temporary name goes; the image and its layers stay.
	if _, rerr := dockerCmd(context.WithoutCancel(ctx), r.o.Docker, "rmi", dst); err == nil && rerr != nil {
		err = rerr
	}
	return err
}

// dockerCmd runs the docker CLI and returns its output; the error holds
// what it printed.
func dockerCmd(ctx context.Context, docker string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, docker, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return "", fmt.Errorf("the docker CLI (%s) is not installed: it is needed to push images from the local Docker engine: %w", docker, err)
		}
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// inspectLabels returns the labels of the engine's image ref, or
// errNotInEngine.
func inspectLabels(ctx context.Context, docker, ref string) (map[string]string, error) {
	out, err := dockerCmd(ctx, docker, "image", "inspect", "--format", "{{json .Config.Labels}}", ref)
	if err != nil {
		if strings.Contains(err.Error(), "No such image") || strings.Contains(err.Error(), "No such object") {
			return nil, fmt.Errorf("%s: %w", ref, errNotInEngine)
		}
		return nil, err
	}
	var labels map[string]string
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &labels); err != nil {
		return nil, fmt.Errorf("reading the labels of %s: %w", ref, err)
	}
	return labels, nil
}

// findInEngine returns the engine's image named nameTag, or else one whose
// name ends in /nameTag (the base pulled from some registry); "" when none.
func findInEngine(ctx context.Context, docker, nameTag string) (string, error) {
	out, err := dockerCmd(ctx, docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return "", err
	}
	return matchTag(strings.Fields(out), nameTag), nil
}

// matchTag picks nameTag from refs, else the first ref ending in /nameTag.
func matchTag(refs []string, nameTag string) string {
	suffix := ""
	for _, ref := range refs {
		switch {
		case ref == nameTag || ref == "docker.io/"+nameTag:
			return ref
		case suffix == "" && strings.HasSuffix(ref, "/"+nameTag):
			suffix = ref
		}
	}
	return suffix
}
