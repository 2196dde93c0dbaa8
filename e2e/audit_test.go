package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/audit"
)

// dockerImages builds images with the Docker engine on a busybox base and
// pushes them to an emulator's registry with `docker push`, as a user does.
type dockerImages struct {
	t      *testing.T
	prefix string // localhost:<registry port>
	base   string // the base's name:tag in the engine, for FROM and docker run
	tag    string // unique to the test
	label  string // key=value on everything the test makes
	config string // the docker CLI's config dir, logged in to the registry
}

// newDockerImages loads the busybox base into the engine, pushes it with
// `docker push` and registers it as an official base (`malocal base add`).
func newDockerImages(t *testing.T, e *Emulator) *dockerImages {
	t.Helper()
	imgs := LoadBusyboxImages(t)
	_, port, err := net.SplitHostPort(e.Registry)
	if err != nil {
		t.Fatalf("registry address %q: %v", e.Registry, err)
	}
	d := &dockerImages{t: t, prefix: "localhost:" + port, base: imgs.Base,
		tag: imgs.Base[strings.LastIndexByte(imgs.Base, ':')+1:], label: DockerLabel(t)}
	// Jobs pull the images they run from the registry into the engine.
	t.Cleanup(func() { removeFromRegistry(e.Registry, d.prefix) })
	d.config = DockerLogin(t, e, d.prefix)
	d.push(imgs.Base, imgs.Base)
	if r := e.Run("base", "add", imgs.Base); r.Code != 0 {
		t.Fatalf("malocal base add %s: exit %d\n%s%s", imgs.Base, r.Code, r.Stdout, r.Stderr)
	}
	return d
}

// removeFromRegistry removes the engine's references to images of the
// registries named by prefixes (host:port), as jobs pulled them.
func removeFromRegistry(prefixes ...string) {
	out, err := exec.Command("docker", "images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		for _, p := range prefixes {
			if !strings.HasPrefix(f[0], p+"/") {
				continue
			}
			if f[1] != "<none>" {
				exec.Command("docker", "rmi", f[0]+":"+f[1]).Run()
			}
			if f[2] != "<none>" {
				exec.Command("docker", "rmi", f[0]+"@"+f[2]).Run()
			}
		}
	}
}

// docker runs a docker command with the legacy builder: BuildKit needs the
// buildx plugin, which Debian's docker.io lacks, and the legacy builder
// uses the engine's local images for FROM without asking a registry.
func (d *dockerImages) docker(args ...string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if d.config != "" {
		args = append([]string{"--config", d.config}, args...)
	}
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// push tags the engine's image src as the registry's repoTag and pushes
// it with `docker push`; the tag is removed when the test ends.
func (d *dockerImages) push(src, repoTag string) {
	d.t.Helper()
	dst := d.prefix + "/" + repoTag
	d.docker("tag", src, dst)
	d.t.Cleanup(func() { exec.Command("docker", "rmi", dst).Run() })
	d.docker("push", dst)
}

// build runs `docker build` of dockerfile (FROM is prepended) with files
// in its context, and pushes the result as repo:<test tag>.
func (d *dockerImages) build(repo, dockerfile string, files map[string]string) string {
	d.t.Helper()
	dir := d.t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			d.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			d.t.Fatal(err)
		}
	}
	df := "FROM " + d.base + "\n" + dockerfile
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		d.t.Fatal(err)
	}
	local := repo + ":" + d.tag
	d.t.Cleanup(func() { exec.Command("docker", "rmi", local).Run() })
	d.docker("build", "--force-rm", "--label", d.label, "-t", local, dir)
	d.push(local, local)
	return local
}

// commit runs script as root in a container of the base, commits the
// container with `docker commit` and pushes the result as repo:<test tag>.
func (d *dockerImages) commit(repo, script string) string {
	d.t.Helper()
	name := fmt.Sprintf("malocal-audit-%s-%d", strings.ReplaceAll(repo, "/", "-"), time.Now().UnixNano())
	d.docker("run", "--name", name, "--label", d.label, "--user", "0", d.base, "/bin/sh", "-c", script)
	local := repo + ":" + d.tag
	d.t.Cleanup(func() { exec.Command("docker", "rmi", local).Run() })
	d.docker("commit", name, local)
	d.docker("rm", name)
	d.push(local, local)
	return local
}

// auditCLI runs `malocal image audit --format json` on a pushed ref and
// returns the exit code and the report.
func auditCLI(t *testing.T, e *Emulator, ref string, args ...string) (int, *audit.Report) {
	t.Helper()
	r := e.Run(append([]string{"image", "audit", "--format", "json"}, append(args, ref)...)...)
	var rep audit.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("malocal image audit %s: exit %d, no JSON report (%v)\nstdout:\n%s\nstderr:\n%s", ref, r.Code, err, r.Stdout, r.Stderr)
	}
	// The running emulator holds the verdict cache; the CLI must not wait
	// on it and warn on every run.
	if strings.Contains(r.Stderr, "verdict cache") {
		t.Errorf("malocal image audit %s warned about the cache:\n%s", ref, r.Stderr)
	}
	return r.Code, &rep
}

// hasViolation reports whether rep holds rule at path.
func hasViolation(rep *audit.Report, rule, path string) bool {
	for _, v := range rep.Violations {
		if v.Rule == rule && strings.TrimPrefix(v.Path, "/") == strings.TrimPrefix(path, "/") {
			return true
		}
	}
	return false
}

// submitAndWait submits a job on image and waits for its final status.
// submitRefused submits a job on an image whose stored verdict is fail:
// the API answers 422 with the report, which it returns, and makes no job.
func submitRefused(t *testing.T, e *Emulator, name, image string) string {
	t.Helper()
	_, err := e.Client().SubmitJob(context.Background(), api.JobSpec{Name: name, Image: image, AppURL: "s3://code/x/", Command: []string{"true"}})
	var re *api.RemoteError
	if !errors.As(err, &re) || re.Status != http.StatusUnprocessableEntity || len(re.Audit) == 0 {
		t.Fatalf("job on %s: want 422 with the stored report, got %v", image, err)
	}
	return strings.Join(re.Audit, "\n")
}

func submitAndWait(t *testing.T, e *Emulator, name, image string, command ...string) *api.Job {
	t.Helper()
	j := submit(t, e, api.JobSpec{Name: name, Image: image, AppURL: "s3://code/x/", Command: command})
	return waitFinal(t, e, j.ID, 3*time.Minute)
}

// TestAuditImagesBuiltWithDocker audits images made by `docker build` and
// `docker commit` and pushed with `docker push`: what the engine writes
// (directory entries re-emitted over the base, copied-up files, whiteouts
// of deleted files) is what the rules must judge right.
func TestAuditImagesBuiltWithDocker(t *testing.T) {
	RequireDocker(t)
	e := Start(t)
	e.CleanupJobs()
	e.MakeBucket(t, "code")
	d := newDockerImages(t, e)

	t.Run("build adding files under /usr/local passes", func(t *testing.T) {
		ref := d.build("team/usr-local", `USER root
COPY hello.txt /usr/local/share/app/hello.txt
RUN mkdir -p /usr/local/bin && printf '#!/bin/sh\necho tool ran\n' > /usr/local/bin/tool && chmod 755 /usr/local/bin/tool
USER work
`, map[string]string{"hello.txt": "hello from the build context\n"})
		code, rep := auditCLI(t, e, ref)
		if code != 0 || rep.Verdict != audit.Pass {
			t.Fatalf("exit %d, verdict %s, violations %+v", code, rep.Verdict, rep.Violations)
		}
		if rep.Base == nil || rep.Base.Name != strings.Split(d.base, ":")[0] || rep.AddedLayers != 2 {
			t.Errorf("base %+v, %d added layers; want %s and 2 (COPY and RUN)", rep.Base, rep.AddedLayers, d.base)
		}
		j := submitAndWait(t, e, "usr-local", ref, "/bin/sh", "-c", "/usr/local/bin/tool && cat /usr/local/share/app/hello.txt")
		if j.Status != api.StatusCompleted {
			t.Errorf("job on the passing image: %s %q %q", j.Status, j.Reason, j.Audit)
		}
	})

	t.Run("commit of chmod u+s on a new root file fails", func(t *testing.T) {
		ref := d.commit("team/setuid", `mkdir -p /usr/local/bin &&
printf '#!/bin/sh\nid\n' > /usr/local/bin/become-root &&
chmod 755 /usr/local/bin/become-root && chmod u+s /usr/local/bin/become-root`)
		code, rep := auditCLI(t, e, ref)
		if code != 1 || !hasViolation(rep, audit.RuleSetuid, "/usr/local/bin/become-root") {
			t.Fatalf("exit %d, want 1 with %s on /usr/local/bin/become-root; violations %+v", code, audit.RuleSetuid, rep.Violations)
		}
		if len(rep.Violations) != 1 {
			t.Errorf("only the setuid file is wrong, got %+v", rep.Violations)
		}
		// The text report names the rule and the path too.
		r := e.Run("image", "audit", ref)
		if r.Code != 1 || !strings.Contains(r.Stdout, "verdict: FAIL") || !strings.Contains(r.Stdout, audit.RuleSetuid) || !strings.Contains(r.Stdout, "usr/local/bin/become-root") {
			t.Errorf("text report: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		// The CLI's verdict is the emulator's: a job on the image is refused.
		reasons := submitRefused(t, e, "setuid", ref)
		if !strings.Contains(reasons, audit.RuleSetuid) || !strings.Contains(reasons, "usr/local/bin/become-root") {
			t.Errorf("job on the setuid image: stored report %q", reasons)
		}
	})

	t.Run("build changing /usr/bin and /bin fails", func(t *testing.T) {
		ref := d.build("team/patched-bin", `USER root
RUN echo '# patched' >> /usr/bin/python3 && rm /bin/ls
USER work
`, nil)
		code, rep := auditCLI(t, e, ref)
		if code != 1 || !hasViolation(rep, audit.RuleProtModified, "/usr/bin/python3") || !hasViolation(rep, audit.RuleProtDeleted, "/bin/ls") {
			t.Fatalf("exit %d, want 1 with %s on /usr/bin/python3 and %s on /bin/ls; violations %+v",
				code, audit.RuleProtModified, audit.RuleProtDeleted, rep.Violations)
		}
		reasons := submitRefused(t, e, "patched-bin", ref)
		if !strings.Contains(reasons, audit.RuleProtModified) || !strings.Contains(reasons, "usr/bin/python3") ||
			!strings.Contains(reasons, audit.RuleProtDeleted) || !strings.Contains(reasons, "bin/ls") {
			t.Errorf("job on the patched image: stored report %q", reasons)
		}
	})
}
