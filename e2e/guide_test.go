package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/malocal/malocal/api"
)

// The guides (docs/guide.en.md, docs/guide.zh-CN.md) mark what this test
// runs with the info string of their fenced blocks:
//
//	```bash step           a step: run with bash, must exit 0
//	```bash step exit=N    a step that must exit N (e.g. exit=1 for an
//	                       audit that fails)
//	```text output         right after a step: what that step prints on
//	                       stdout, compared with what it really printed
//	                       after masking digests, sizes, times, job IDs
//	                       and ports
//
// Any other block is shown to the reader and not run (e.g. `malocal up`,
// which the test starts itself on a temp data dir with port-0 listeners).
//
// The Chinese guide must have the same steps, in the same order, with the
// same exit codes and outputs as the English one; only full-line comments
// (lines starting with #) may differ, so that they can be in Chinese.
//
// The English steps run in order, each in its own `bash -euo pipefail`
// that first evaluates `malocal env`, in one empty working directory, with the binary under test first on PATH and MALOCAL_DATA_DIR set to the
// emulator's data dir. A step sees what the steps before it left on disk,
// in Docker and in the emulator, but not their shell variables.
//
// One step is changed before it runs: when the bookworm root filesystem
// that the samples' and baseimage's tests cache (made by mmdebstrap with
// the same packages) is there, `--from debian:bookworm --include
// python3-pip,python3-numpy,libibverbs1` becomes `--from rootfs:<that file>`, which is
// what mmdebstrap would produce, minutes sooner. And one step is given a
// head start: before section 15's `malocal samples install --engine
// pytorch`, the PyTorch image that an earlier test built on the same base
// (see e2e.CacheImage) is pushed to the registry, so that the step, run as
// written, finds it up to date instead of installing PyTorch again; with
// none cached, the step builds it and this test caches it.
//
// After the step that submits section 15's PyTorch job, the job must have
// completed, and every rank's log must say that it met the others at task
// 0's address and joined the gloo group there.

// guideStep is one runnable block of a guide.
type guideStep struct {
	line   int    // where the block starts in the guide, 1-based
	script string // the block's text
	exit   int    // the exit status it must end with
	output string // the ```text output block after it; "" when none
	hasOut bool
}

var stepInfoRE = regexp.MustCompile(`^bash\s+step(?:\s+exit=(\d+))?\s*$`)

// parseGuide returns the steps of a guide.
func parseGuide(t *testing.T, path string) []guideStep {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []guideStep
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	lastWasStep := false // no prose or other block since the last step
	for sc.Scan() {
		n++
		line := sc.Text()
		info, ok := strings.CutPrefix(line, "```")
		if !ok {
			if strings.TrimSpace(line) != "" {
				lastWasStep = false
			}
			continue
		}
		start := n
		var body []string
		closed := false
		for sc.Scan() {
			n++
			if strings.TrimSpace(sc.Text()) == "```" {
				closed = true
				break
			}
			body = append(body, sc.Text())
		}
		if !closed {
			t.Fatalf("%s:%d: the block is not closed", path, start)
		}
		text := strings.Join(body, "\n") + "\n"
		info = strings.TrimSpace(info)
		switch {
		case stepInfoRE.MatchString(info):
			st := guideStep{line: start, script: text}
			if m := stepInfoRE.FindStringSubmatch(info); m[1] != "" {
				st.exit, _ = strconv.Atoi(m[1])
			}
			steps = append(steps, st)
			lastWasStep = true
			continue
		case info == "text output":
			if !lastWasStep || steps[len(steps)-1].hasOut {
				t.Fatalf("%s:%d: a ```text output block must follow a step directly", path, start)
			}
			steps[len(steps)-1].output, steps[len(steps)-1].hasOut = text, true
		case strings.Contains(info, "step") || strings.Contains(info, "output"):
			t.Fatalf("%s:%d: unknown block info %q: use `bash step`, `bash step exit=N` or `text output`", path, start, info)
		}
		lastWasStep = false
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 {
		t.Fatalf("%s: no steps", path)
	}
	return steps
}

// commands is a step without its full-line comments and blank lines: what
// the two guides must agree on.
func commands(script string) string {
	var out []string
	for _, l := range strings.Split(script, "\n") {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		out = append(out, strings.TrimRight(l, " \t"))
	}
	return strings.Join(out, "\n")
}

var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`sha256:[0-9a-f]{12,64}`), "sha256:<digest>"},
	{regexp.MustCompile(`\b[0-9]+(\.[0-9]+)? (B|KiB|MiB|GiB|MB|GB)\b`), "<size>"},
	{regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z?`), "<time>"},
	{regexp.MustCompile(`\b\d{2}:\d{2}:\d{2}(\.\d+)?\b`), "<time>"},
	{regexp.MustCompile(`\bjob-[0-9a-f]{8}\b`), "job-<id>"},
	{regexp.MustCompile(`\b(localhost|127\.0\.0\.1):\d+\b`), "<host:port>"},
	{regexp.MustCompile(`[ \t]+`), " "},
}

// masked is output with what changes from run to run replaced, spaces
// collapsed (table columns follow the widths of masked fields), trailing
// spaces and blank lines at both ends dropped.
func masked(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Trim(strings.Join(lines, "\n"), "\n")
}

// TestGuideLanguagesAgree needs nothing but the two files: the Chinese
// guide's steps are the English guide's, in the same order.
func TestGuideLanguagesAgree(t *testing.T) {
	en := parseGuide(t, "../docs/guide.en.md")
	zh := parseGuide(t, "../docs/guide.zh-CN.md")
	for i := 0; i < len(en) || i < len(zh); i++ {
		switch {
		case i >= len(zh):
			t.Fatalf("guide.zh-CN.md lacks step %d of guide.en.md (line %d):\n%s", i+1, en[i].line, en[i].script)
		case i >= len(en):
			t.Fatalf("guide.zh-CN.md has a step %d (line %d) that guide.en.md lacks:\n%s", i+1, zh[i].line, zh[i].script)
		}
		e, z := en[i], zh[i]
		if commands(e.script) != commands(z.script) || e.exit != z.exit {
			t.Errorf("step %d differs: guide.en.md line %d (exit %d):\n%s\nguide.zh-CN.md line %d (exit %d):\n%s",
				i+1, e.line, e.exit, e.script, z.line, z.exit, z.script)
		}
		if e.hasOut != z.hasOut || masked(e.output) != masked(z.output) {
			t.Errorf("the output of step %d differs: guide.en.md line %d:\n%s\nguide.zh-CN.md line %d:\n%s",
				i+1, e.line, e.output, z.line, z.output)
		}
	}
}

// TestGuideDigestsConsistent needs nothing but the two files: the audit
// reports a guide shows, whose digests TestGuide masks, still hold
// together. Each image shown has one manifest and one config digest, full
// sha256 ones, and no other image shows them (the guide's images are all
// different builds); both guides show the same ones.
func TestGuideDigestsConsistent(t *testing.T) {
	full := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	shown := map[string]map[string]string{} // guide → "image digest|config" → digest
	for _, path := range []string{"../docs/guide.en.md", "../docs/guide.zh-CN.md"} {
		byImage := map[string]string{}
		owner := map[string]string{} // digest → the image that shows it
		for _, st := range parseGuide(t, path) {
			fields := map[string]string{}
			for _, l := range strings.Split(st.output, "\n") {
				if k, v, ok := strings.Cut(l, ":"); ok && (k == "image" || k == "digest" || k == "config") {
					fields[k] = strings.TrimSpace(v)
				}
			}
			img := fields["image"]
			if img == "" {
				continue
			}
			for _, k := range []string{"digest", "config"} {
				d := fields[k]
				if !full.MatchString(d) {
					t.Errorf("%s:%d: %s's %s %q is not a full sha256 digest", path, st.line, img, k, d)
				}
				if prev, ok := byImage[img+" "+k]; ok && prev != d {
					t.Errorf("%s:%d: %s's %s is %s here and %s before", path, st.line, img, k, d, prev)
				}
				if o, ok := owner[d]; ok && o != img {
					t.Errorf("%s:%d: %s shows the %s %s that %s showed: a report shown for one image carries another's digest", path, st.line, img, k, d, o)
				}
				byImage[img+" "+k], owner[d] = d, img
			}
		}
		if len(byImage) == 0 {
			t.Fatalf("%s shows no audit report", path)
		}
		shown[path] = byImage
	}
	en, zh := shown["../docs/guide.en.md"], shown["../docs/guide.zh-CN.md"]
	for k, d := range en {
		if zh[k] != d {
			t.Errorf("%s: guide.en.md shows %s, guide.zh-CN.md %q", k, d, zh[k])
		}
	}
	for k, d := range zh {
		if _, ok := en[k]; !ok {
			t.Errorf("%s: guide.zh-CN.md shows %s, guide.en.md nothing", k, d)
		}
	}
}

// guideRootfs is the cached bookworm root filesystem with the guide's
// packages, or "" when there is none and the step must run mmdebstrap.
func guideRootfs() string {
	p := RootfsCachePath([]string{"python3-pip", "python3-numpy", "libibverbs1"})
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

const guideBaseSource = "--from debian:bookworm --include python3-pip,python3-numpy,libibverbs1"

// TestGuide runs every step of the English guide against a fresh emulator
// and checks each exit status, and each shown output against the real one.
func TestGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and runs Docker jobs: not in -short")
	}
	steps := parseGuide(t, "../docs/guide.en.md")
	RequireDocker(t)
	for _, f := range []string{"train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"} {
		_, err := os.Stat(filepath.Join("/usr/share/datasets/fashion-mnist", f))
		Require(t, err == nil, "the guide's data is missing (apt-get install dataset-fashion-mnist)")
	}
	rootfs := guideRootfs()
	if rootfs == "" {
		RequireTool(t, "mmdebstrap")
	}

	e := Start(t)
	e.CleanupJobs()
	work := t.TempDir()
	binDir := filepath.Dir(Binary(t))
	env := append(os.Environ(), "MALOCAL_DATA_DIR="+e.DataDir, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"DOCKER_CONFIG="+t.TempDir()) // the guide's `malocal registry login` leaves the user's docker config alone
	cleanupGuideDocker(t, e)

	for i, st := range steps {
		script := st.script
		if rootfs != "" {
			script = strings.ReplaceAll(script, guideBaseSource, "--from rootfs:"+rootfs)
		}
		torchBuild := strings.Contains(script, "samples install --engine pytorch")
		restored := torchBuild && restoreTorchImage(t, e)
		start := time.Now()
		timeout := 10 * time.Minute
		if torchBuild && !restored {
			timeout = 25 * time.Minute // dpkg installs about 300 packages
		}
		stdout, all, code := runStep(t, work, env, script, timeout)
		t.Logf("step %d (guide.en.md line %d): exit %d in %s", i+1, st.line, code, time.Since(start).Round(100*time.Millisecond))
		if code != st.exit {
			t.Fatalf("step %d (guide.en.md line %d) exited %d, want %d:\n%s\noutput:\n%s", i+1, st.line, code, st.exit, st.script, all)
		}
		if st.hasOut && masked(stdout) != masked(st.output) {
			t.Errorf("step %d (guide.en.md line %d) printed another output than the guide shows (masked):\n--- guide\n%s\n--- real\n%s\n--- real, as printed\n%s",
				i+1, st.line, masked(st.output), masked(stdout), stdout)
		}
		if torchBuild && !restored {
			e.CacheImage(t, e.TorchImageKey(t, guideBase), TorchImagePrefix, guideTorchImage)
		}
		if name, ok := ddpJobName(script); ok {
			checkRendezvous(t, e, name, st.line)
		}
	}
}

// The PyTorch image of section 15 and the base it is built on.
const (
	guideBase       = "eiwizard/custom-cpu-base:1.0"
	guideTorchImage = "demo/mnist-pytorch:1.0"
)

// restoreTorchImage pushes, before section 15's `malocal samples install
// --engine pytorch`, the PyTorch image that an earlier test built on this
// same base (the samples' tests, the PyTorch benchmark, or an earlier run
// of this one), so that the step's own up-to-date check skips minutes of
// dpkg: the step runs as written and says the image is up to date. It
// reports whether there was one.
func restoreTorchImage(t *testing.T, e *Emulator) bool {
	t.Helper()
	return e.RestoreImage(t, e.TorchImageKey(t, guideBase), guideTorchImage)
}

var ddpJobRE = regexp.MustCompile(`malocal job submit --name (\S+) --image demo/mnist-pytorch:`)

// ddpJobName is the name of the PyTorch job a step submits.
func ddpJobName(script string) (string, bool) {
	m := ddpJobRE.FindStringSubmatch(script)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// checkRendezvous checks the PyTorch job that the step at line submitted:
// it completed, and every rank's log says it met the others at task 0's
// address and joined the gloo group there.
func checkRendezvous(t *testing.T, e *Emulator, name string, line int) {
	t.Helper()
	ctx := context.Background()
	js, err := e.Client().Jobs(ctx, "", name)
	if err != nil || len(js) != 1 {
		t.Fatalf("the job %s of the step at guide.en.md line %d: %v (%d jobs)", name, line, err, len(js))
	}
	j, err := e.Client().Job(ctx, js[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != api.StatusCompleted || len(j.Tasks) != j.Spec.Nodes || j.Spec.Nodes < 2 {
		t.Fatalf("job %s (%s): %s (%s), %d tasks of %d nodes", j.ID, name, j.Status, j.Reason, len(j.Tasks), j.Spec.Nodes)
	}
	url := "tcp://" + j.Tasks[0].Host + ":"
	for rank := range j.Spec.Nodes {
		var b strings.Builder
		err := e.Client().JobLogs(ctx, j.ID, rank, false, func(l api.LogLine) error {
			b.WriteString(l.Text + "\n")
			return nil
		})
		if err != nil {
			t.Fatalf("the logs of task %d of %s: %v", rank, j.ID, err)
		}
		for _, want := range []string{
			fmt.Sprintf("rank %d of %d: gloo rendezvous at %s", rank, j.Spec.Nodes, url),
			fmt.Sprintf("rank %d of %d: joined the gloo group at %s", rank, j.Spec.Nodes, url),
			fmt.Sprintf("rank %d of %d: done", rank, j.Spec.Nodes),
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("task %d of %s lacks %q:\n%s", rank, j.ID, want, b.String())
			}
		}
	}
}

// runStep runs one step with bash in dir, killed after timeout: its
// stdout, its stdout and stderr together, and its exit status.
func runStep(t *testing.T, dir string, env []string, script string, timeout time.Duration) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c",
		"set -euo pipefail\neval \"$(malocal env)\"\n"+script)
	cmd.Dir, cmd.Env = dir, env
	var stdout bytes.Buffer
	all := &SyncBuffer{}
	cmd.Stdout = io.MultiWriter(&stdout, all) // only exec's stdout goroutine writes stdout
	cmd.Stderr = all
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("step timed out after %s:\n%s\noutput:\n%s", timeout, script, all.String())
	}
	return stdout.String(), all.String(), exitCode(err)
}

// cleanupGuideDocker removes, when the test ends, what the steps leave in
// the Docker engine: their named containers, the images of this emulator's
// registry (tagged by the steps, or pulled by digest for the jobs), and the
// base's local tag if the test made it.
func cleanupGuideDocker(t *testing.T, e *Emulator) {
	t.Helper()
	localBase := "eiwizard/custom-cpu-base:1.0"
	hadBase := exec.Command("docker", "image", "inspect", localBase).Run() == nil
	_, port, _ := strings.Cut(e.Registry, ":")
	prefixes := []string{"localhost:" + port + "/", "127.0.0.1:" + port + "/"}
	rm := func() {
		for _, c := range []string{"mnist-build", "mnist-flat"} {
			exec.Command("docker", "rm", "-f", c).Run()
		}
	}
	rm() // a run that died half-way may have left them
	t.Cleanup(func() {
		rm()
		out, _ := exec.Command("docker", "images", "--format", "{{.Repository}} {{.ID}}").Output()
		var refs []string
		seen := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			repo, id, ok := strings.Cut(l, " ")
			if ok && !seen[id] && (strings.HasPrefix(repo, prefixes[0]) || strings.HasPrefix(repo, prefixes[1])) {
				seen[id] = true
				refs = append(refs, id)
			}
		}
		if !hadBase {
			refs = append(refs, localBase)
		}
		if len(refs) > 0 {
			if out, err := exec.Command("docker", append([]string{"rmi", "-f"}, refs...)...).CombinedOutput(); err != nil {
				t.Logf("docker rmi: %v: %s", err, out)
			}
		}
	})
}
