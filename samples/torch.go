package samples

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/malocal/malocal/baseimage"
)

// DefaultTorchImage is the PyTorch sample image: an official base plus
// Debian's python3-torch.
const DefaultTorchImage = "demo/mnist-pytorch:1.0"

// TorchPackages are the Debian packages the PyTorch image adds to the base.
var TorchPackages = []string{"python3-torch"}

// TorchBasePackages are the dependencies of python3-torch that the base
// must already have, with why: their maintainer scripts change files the
// audit protects.
var TorchBasePackages = map[string]string{
	"libibverbs1": "PyTorch's gloo backend needs and whose install adds the system group rdma to /etc/group",
}

// LabelSampleBase is set on the PyTorch image's config: the digest of the
// base it was built on and its packages, so that a rebuild on the same
// base is skipped.
const LabelSampleBase = "org.malocal.sample.base"

// ErrNoDocker is returned when the docker command is missing.
var ErrNoDocker = errors.New("the docker command is not installed: the PyTorch image is built the guide's way, in a container of the base (docker run, docker commit)")

// BuildTorchImage makes the PyTorch sample image the guide's way (run the
// base, install, commit) and pushes it as image (repo:tag):
//
//  1. the .deb files of packages and of what they need beyond the base are
//     downloaded on this host with apt-get, against the base's own dpkg
//     status (the host's apt sources; nothing else is reached);
//  2. the base is loaded into the Docker engine and a container of it, with
//     no network, installs them with dpkg as root;
//  3. the container is committed, and its one new layer is appended to the
//     base from the registry (so the base's layers stay an exact prefix, as
//     the audit wants) and pushed.
//
// It returns the image's digest. An image already built on this base with
// these packages is kept.
func BuildTorchImage(ctx context.Context, registry, base, image string, packages []string, progress io.Writer, opts ...remote.Option) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	if len(packages) == 0 {
		packages = TorchPackages
	}
	imgRef, bimg, err := readBase(ctx, registry, base, image, opts)
	if err != nil {
		return "", err
	}
	bd, err := bimg.Digest()
	if err != nil {
		return "", err
	}
	stamp := bd.String() + " " + strings.Join(packages, ",")
	if old, err := remote.Image(imgRef, append(opts, remote.WithContext(ctx))...); err == nil {
		if cf, err := old.ConfigFile(); err == nil && cf.Config.Labels[LabelSampleBase] == stamp {
			d, _ := old.Digest()
			fmt.Fprintf(progress, "image %s@%s is up to date (on %s@%s with %s)\n", imgRef, d, base, bd, strings.Join(packages, ", "))
			return d.String(), nil
		}
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		return "", ErrNoDocker
	}
	work, err := os.MkdirTemp("", "malocal-torch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	status, err := dpkgStatus(bimg)
	if err != nil {
		return "", err
	}
	for pkg, why := range TorchBasePackages {
		if !dpkgInstalled(status, pkg) {
			return "", fmt.Errorf("the base %s lacks %s, which %s: an image layer that adds it fails the audit (MA-PROT-001), so it must come with the base; build the base again with `malocal base build --from debian:bookworm --include %s`",
				base, pkg, why, strings.Join(BaseInclude, ","))
		}
	}
	debs := filepath.Join(work, "debs")
	fmt.Fprintf(progress, "downloading %s and what the base lacks of its dependencies (apt-get, the host's apt sources)\n", strings.Join(packages, ", "))
	n, err := downloadDebs(ctx, work, status, debs, packages)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "downloaded %d packages\n", n)

	// A name of our own for the loaded base and the container.
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	loaded := "malocal-build/base:" + id
	committed := "malocal-build/torch:" + id
	cname := "malocal-build-torch-" + id
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = exec.CommandContext(dctx, docker, "rm", "-f", cname).Run()
		_ = exec.CommandContext(dctx, docker, "rmi", "-f", loaded, committed).Run()
	}
	defer cleanup()
	// The loaded copy gets an image ID of its own (a label): the same base
	// loaded under its own name by someone else has the same ID, and the
	// engine's removal of our name, racing their load, could take their
	// image with it.
	lbase, err := withLabels(bimg, map[string]string{"org.malocal.build": id})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "loading the base %s into the Docker engine\n", base)
	if err := dockerLoad(ctx, docker, loaded, lbase); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "installing %s in a container of the base (dpkg, no network)\n", strings.Join(packages, ", "))
	// Privileges that maintainer scripts grant are dropped before the
	// commit: libtorch needs OpenCV, whose video I/O needs GStreamer, whose
	// postinst gives its PTP clock helper (gst-ptp-helper) network
	// capabilities, or setuid root where setcap fails. No training job
	// uses it, and the audit refuses any new privileged file
	// (MA-SUID-001); each file dropped is printed.
	script := "set -e; export DEBIAN_FRONTEND=noninteractive; " +
		"touch /tmp/.malocal-before; " +
		"dpkg -i /debs/*.deb; " +
		dropPrivileges +
		"rm -f /tmp/.malocal-before; " +
		"rm -rf /var/log/apt /var/log/dpkg.log /var/cache/ldconfig/aux-cache"
	if err := dockerRun(ctx, progress, docker, "run", "--name", cname, "--network", "none", "--user", "root",
		"--entrypoint", "/bin/sh", "-v", debs+":/debs:ro", loaded, "-c", script); err != nil {
		return "", fmt.Errorf("installing %s in the base: %w", strings.Join(packages, ", "), err)
	}
	if err := dockerRun(ctx, io.Discard, docker, "commit", cname, committed); err != nil {
		return "", fmt.Errorf("docker commit: %w", err)
	}
	cimg, closeImg, err := baseimage.Open(ctx, "docker:"+committed, nil, progress)
	if err != nil {
		return "", err
	}
	defer closeImg()
	layers, err := cimg.Layers()
	if err != nil {
		return "", err
	}
	blayers, err := bimg.Layers()
	if err != nil {
		return "", err
	}
	if len(layers) != len(blayers)+1 {
		return "", fmt.Errorf("the committed image has %d layers, want the base's %d and one more", len(layers), len(blayers))
	}
	img, err := sampleImage(bimg, layers[len(layers)-1], "malocal samples install --engine pytorch: apt-get install "+strings.Join(packages, " "),
		map[string]string{LabelSample: "mnist-pytorch", LabelSampleBase: stamp})
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "pushing %s\n", imgRef)
	if _, err := baseimage.Push(ctx, img, imgRef, progress, opts...); err != nil {
		return "", err
	}
	return d.String(), nil
}

// dropPrivileges is the shell that removes file capabilities and the
// setuid/setgid bits from the files the install created or changed (ctime
// after /tmp/.malocal-before), naming each one.
const dropPrivileges = "find / -xdev -cnewer /tmp/.malocal-before -type f -perm /6000 " +
	"-exec chmod ug-s {} + -exec echo 'dropped setuid/setgid:' {} \\; ; " +
	"if command -v getcap >/dev/null; then " +
	"find / -xdev -cnewer /tmp/.malocal-before -type f -exec getcap {} + 2>/dev/null | " +
	"while read -r f caps; do setcap -r \"$f\" && echo \"dropped file capabilities ($caps): $f\"; done; fi; "

// dpkgInstalled reports whether the dpkg status file lists pkg as
// installed.
func dpkgInstalled(status []byte, pkg string) bool {
	for _, stanza := range strings.Split(string(status), "\n\n") {
		var name, state string
		for _, line := range strings.Split(stanza, "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				name = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(line, "Status: "); ok {
				state = strings.TrimSpace(v)
			}
		}
		if name == pkg && state == "install ok installed" {
			return true
		}
	}
	return false
}

// dpkgStatus returns the base's /var/lib/dpkg/status (the top layer that
// has it).
func dpkgStatus(img v1.Image) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for i := len(layers) - 1; i >= 0; i-- {
		data, found, err := fileInLayer(layers[i], "var/lib/dpkg/status")
		if err != nil {
			return nil, fmt.Errorf("reading layer %d of the base: %w", i+1, err)
		}
		if found {
			return data, nil
		}
	}
	return nil, errors.New("the base has no /var/lib/dpkg/status: the PyTorch image installs Debian packages, so it needs a Debian base (malocal base build --from debian:bookworm)")
}

func fileInLayer(l v1.Layer, want string) ([]byte, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if strings.TrimPrefix(path.Clean("/"+hdr.Name), "/") != want || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > 64<<20 {
			return nil, false, fmt.Errorf("/%s is %d bytes", want, hdr.Size)
		}
		data, err := io.ReadAll(tr)
		return data, true, err
	}
}

// downloadDebs runs the host's apt-get with the base's dpkg status, so
// that it fetches packages and what the base lacks of their dependencies
// into dir. It returns the number of .deb files.
func downloadDebs(ctx context.Context, work string, status []byte, dir string, packages []string) (int, error) {
	aptGet, err := exec.LookPath("apt-get")
	if err != nil {
		return 0, errors.New("apt-get is not installed: the PyTorch image's packages come from this host's Debian apt sources")
	}
	stateDir := filepath.Join(work, "state")
	cacheDir := filepath.Join(work, "cache")
	for _, d := range []string{filepath.Join(dir, "partial"), stateDir, cacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	statusPath := filepath.Join(stateDir, "status")
	if err := os.WriteFile(statusPath, status, 0o644); err != nil {
		return 0, err
	}
	args := []string{"install", "--download-only", "-y", "--no-install-recommends", "-q",
		"-o", "Dir::State::status=" + statusPath,
		"-o", "Dir::Cache=" + cacheDir,
		"-o", "Dir::Cache::archives=" + dir,
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Sandbox::User=root",
	}
	cmd := exec.CommandContext(ctx, aptGet, append(args, packages...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("apt-get --download-only %s: %w: %s (run `sudo apt-get update` if the package lists are missing or old)",
			strings.Join(packages, " "), err, lastLines(out.String(), 8))
	}
	os.RemoveAll(filepath.Join(dir, "partial"))
	os.Remove(filepath.Join(dir, "lock"))
	matches, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(matches) == 0 {
		return 0, fmt.Errorf("apt-get downloaded nothing for %s: does the base have them already? %s", strings.Join(packages, " "), lastLines(out.String(), 4))
	}
	return len(matches), nil
}

// dockerLoad loads img into the engine as tag.
func dockerLoad(ctx context.Context, docker, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(t, img, pw)) }()
	cmd := exec.CommandContext(ctx, docker, "load", "-q")
	cmd.Stdin = pr
	out, err := cmd.CombinedOutput()
	pr.CloseWithError(io.EOF)
	if err != nil {
		return fmt.Errorf("docker load of the base: %w: %s", err, lastLines(string(out), 4))
	}
	return nil
}

// dockerRun runs the docker command with args, its output to w; an error
// carries the output's last lines.
func dockerRun(ctx context.Context, w io.Writer, docker string, args ...string) error {
	cmd := exec.CommandContext(ctx, docker, args...)
	var tail bytes.Buffer
	mw := io.MultiWriter(w, &tail)
	cmd.Stdout, cmd.Stderr = mw, mw
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("docker %s: %w: %s", args[0], err, lastLines(tail.String(), 8))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
