package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// ciSkipped are the steps of the README's CI recipes that cannot run here,
// and why. A step that is neither here nor a shell command fails the test,
// so a new step in a recipe is either run or skipped for a reason.
var ciSkipped = map[string]string{
	"actions/checkout@v4": "the test's temp dir, with the user's Dockerfile, src/ and data/, is the checkout",
	"actions/setup-go@v5": "Go is here: it built the binary under test",
	"go install github.com/malocal/malocal@latest": "it needs the network and would install the published malocal: " +
		"the binary under test is first on PATH as malocal instead",
	"sudo apt-get install -y mmdebstrap": "it installs a package: the test requires mmdebstrap, " +
		"or uses the root filesystem that mmdebstrap made with the same packages (see TestGuide)",
	"actions/upload-artifact@v4": "it uploads to GitHub: the test checks that the paths it names are there",
}

// ciRepo is what the recipes expect in the user's repository: a
// Dockerfile on the official base, the training script in src/ (which
// writes its result to the job's output dir, as the recipes collect out/)
// and a data dir.
var ciRepo = map[string]string{
	"Dockerfile":       "FROM eiwizard/custom-cpu-base:1.0\nCOPY requirements.txt /home/work/requirements.txt\n",
	"requirements.txt": "numpy\n",
	"src/train.py": `import os
import moxing as mox
i, n = os.environ["DLS_TASK_INDEX"], os.environ["DLS_TASK_NUMBER"]
os.makedirs("/cache/out", exist_ok=True)
with open("/cache/out/task-%s.txt" % i, "w") as f:
    f.write("task %s of %s\n" % (i, n))
mox.file.copy_parallel("/cache/out", os.environ["DLS_TRAIN_URL"])
print("task", i, "of", n, "trained")
`,
	"data/numbers.txt": "1 2 3\n",
}

// ciRun is one recipe to run: its shell scripts in order (each run as the
// CI service runs it) and the files it then collects.
type ciRun struct {
	scripts   []string
	shell     []string // the shell and its flags; the script is the last argument
	artifacts []string // paths that must exist afterwards
	junit     string   // the JUnit report the CI service reads
}

// TestReadmeCIRecipes runs the README's GitHub Actions and GitLab CI
// recipes (section "CI: `malocal run`") as written: each shell step with
// bash in a temp dir laid out as the user's repository, against the binary
// under test and the local Docker engine, skipping only the steps of
// ciSkipped. The recipe must end with exit 0, the artifacts it collects,
// a JUnit report of 2 passed tasks, and each task's output in out/.
func TestReadmeCIRecipes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a base and runs a 2-node job per recipe: not in -short")
	}
	RequireTool(t, "bash")
	blocks := readmeBlocks(t, "## CI: `malocal run`", "yaml")
	if len(blocks) != 2 {
		t.Fatalf("the README's CI section has %d yaml blocks, want 2 (GitHub Actions, GitLab CI)", len(blocks))
	}
	recipes := map[string]ciRun{"GitHub Actions": githubRecipe(t, blocks[0]), "GitLab CI": gitlabRecipe(t, blocks[1])}
	RequireDocker(t)
	rootfs := guideRootfs()
	if rootfs == "" {
		RequireTool(t, "mmdebstrap")
	}
	cleanupCIDocker(t)
	for _, name := range []string{"GitHub Actions", "GitLab CI"} {
		t.Run(strings.ReplaceAll(name, " ", ""), func(t *testing.T) {
			rec := recipes[name]
			r := newRunEnv(t, ciRepo)
			repo := filepath.Dir(r.code)
			bin := filepath.Dir(Binary(t))
			env := append(os.Environ(), r.env()...)
			env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			for i, script := range rec.scripts {
				if rootfs != "" {
					// mmdebstrap's output, minutes sooner (as in TestGuide).
					script = strings.ReplaceAll(script, guideBaseSource, "--from rootfs:"+rootfs)
				}
				start := time.Now()
				out, err := runCIScript(repo, env, rec.shell, script)
				t.Logf("%s step %d: %v in %s:\n%s", name, i+1, err, time.Since(start).Round(100*time.Millisecond), script)
				if err != nil {
					t.Fatalf("%s: the step failed (%v):\n%s\noutput:\n%s", name, err, script, out)
				}
			}
			for _, p := range rec.artifacts {
				if _, err := os.Stat(filepath.Join(repo, p)); err != nil {
					t.Errorf("%s: the artifact %s is missing: %v", name, p, err)
				}
			}
			for i := range 2 {
				p := filepath.Join(repo, "out", fmt.Sprintf("task-%d.txt", i))
				if b, err := os.ReadFile(p); err != nil || string(b) != fmt.Sprintf("task %d of 2\n", i) {
					t.Errorf("%s: %s: %q, %v", name, p, b, err)
				}
			}
			checkJUnit(t, filepath.Join(repo, rec.junit), 2)
			r.assertClean()
		})
	}
}

// githubRecipe reads the GitHub Actions workflow: its job's `run:` steps
// run in order with GitHub's bash (`bash -e {0}` when no shell is named).
func githubRecipe(t *testing.T, block string) ciRun {
	t.Helper()
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(block), &wf); err != nil {
		t.Fatalf("the README's GitHub Actions recipe: %v\n%s", err, block)
	}
	job, ok := wf.Jobs["train"]
	if !ok || len(wf.Jobs) != 1 {
		t.Fatalf("the README's GitHub Actions recipe has jobs %v, want one named train", wf.Jobs)
	}
	rec := ciRun{shell: []string{"bash", "-e", "-c"}, junit: "report.xml"}
	for _, st := range job.Steps {
		what := st.Uses
		if what == "" {
			what = strings.TrimSpace(st.Run)
		}
		if why, ok := ciSkipped[what]; ok {
			t.Logf("GitHub Actions: skipped %q: %s", what, why)
			if st.Uses == "actions/upload-artifact@v4" {
				rec.artifacts = append(rec.artifacts, strings.Fields(st.With["path"])...)
			}
			continue
		}
		if st.Uses != "" || st.Run == "" {
			t.Fatalf("GitHub Actions: the step %q is neither a shell step nor in ciSkipped", what)
		}
		rec.scripts = append(rec.scripts, st.Run)
	}
	if len(rec.artifacts) == 0 {
		t.Fatal("GitHub Actions: the recipe uploads no artifact")
	}
	return rec
}

// gitlabRecipe reads the GitLab CI job: before_script and script run as
// one script, as the shell executor runs them (bash, `set -eo pipefail`).
func gitlabRecipe(t *testing.T, block string) ciRun {
	t.Helper()
	var ci map[string]struct {
		BeforeScript []string `yaml:"before_script"`
		Script       []string `yaml:"script"`
		Artifacts    struct {
			Paths   []string `yaml:"paths"`
			Reports struct {
				JUnit string `yaml:"junit"`
			} `yaml:"reports"`
		} `yaml:"artifacts"`
	}
	if err := yaml.Unmarshal([]byte(block), &ci); err != nil {
		t.Fatalf("the README's GitLab CI recipe: %v\n%s", err, block)
	}
	job, ok := ci["train"]
	if !ok || len(ci) != 1 {
		t.Fatalf("the README's GitLab CI recipe has jobs %v, want one named train", ci)
	}
	var lines []string
	for _, l := range append(job.BeforeScript, job.Script...) {
		if why, ok := ciSkipped[strings.TrimSpace(l)]; ok {
			t.Logf("GitLab CI: skipped %q: %s", l, why)
			continue
		}
		lines = append(lines, l)
	}
	return ciRun{scripts: []string{"set -eo pipefail\n" + strings.Join(lines, "\n")}, shell: []string{"bash", "-c"},
		artifacts: append(job.Artifacts.Paths, job.Artifacts.Reports.JUnit), junit: job.Artifacts.Reports.JUnit}
}

// runCIScript runs script in dir with the recipe's shell, in a process
// group of its own that is killed after 10 minutes or when it returns.
func runCIScript(dir string, env, shell []string, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell[0], append(shell[1:], script)...)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = time.Minute // malocal run tears down on an interrupt
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// checkJUnit checks that the JUnit report at path has one suite of tasks
// tests, none failed.
func checkJUnit(t *testing.T, path string, tasks int) {
	t.Helper()
	var rep struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &rep); err != nil || len(rep.Suites) != 1 || rep.Suites[0].Tests != tasks || rep.Suites[0].Failures != 0 {
		t.Errorf("junit report %s (%v):\n%s", path, err, b)
	}
}

// cleanupCIDocker removes, when the test ends, the images the recipes tag
// in the Docker engine: the user's image, and the base unless it was
// there before.
func cleanupCIDocker(t *testing.T) {
	t.Helper()
	refs := []string{"my-train:ci"}
	if exec.Command("docker", "image", "inspect", "eiwizard/custom-cpu-base:1.0").Run() != nil {
		refs = append(refs, "eiwizard/custom-cpu-base:1.0")
	}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", append([]string{"rmi"}, refs...)...).CombinedOutput(); err != nil {
			t.Logf("docker rmi %v: %v: %s", refs, err, out)
		}
	})
}
