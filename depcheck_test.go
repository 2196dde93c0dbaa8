package main

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/malocal/malocal"

// jobPackages are the packages that run jobs: the job core and its backends.
// Storage packages must not import them.
var jobPackages = []string{mod + "/jobs", mod + "/kube", mod + "/dockerbackend", mod + "/runner", mod + "/samples", mod + "/emulator", mod + "/cli"}

// storagePackages keep objects, images and audits; each stands on its own
// under the job core.
var storagePackages = []string{mod + "/fakeobs", mod + "/registry", mod + "/audit"}

// depRule is one package boundary: check returns what is wrong with pkg
// importing imp (one of malocal's packages), or "".
type depRule struct {
	name  string
	check func(pkg, imp string) string
}

var depRules = []depRule{
	{"api imports nothing of ours", func(pkg, imp string) string {
		if pkg == mod+"/api" || strings.HasPrefix(pkg, mod+"/api/") {
			return "the API types and client must not depend on other malocal packages"
		}
		return ""
	}},
	{"only main imports cli", func(pkg, imp string) string {
		if imp == mod+"/cli" && pkg != mod {
			return "only main may import the CLI"
		}
		return ""
	}},
	{"storage imports no job package", func(pkg, imp string) string {
		if under(pkg, storagePackages...) && under(imp, jobPackages...) {
			return "the object store, registry and audit must not depend on the job core or what runs jobs"
		}
		return ""
	}},
	{"the job core knows no engine, backend or API type", func(pkg, imp string) string {
		if pkg != mod+"/jobs" {
			return ""
		}
		if strings.HasPrefix(imp, mod+"/") && !strings.HasPrefix(imp, mod+"/internal/") {
			return "the job core may use only the shared internal helpers of ours"
		}
		if strings.HasPrefix(imp, "k8s.io/") || strings.HasPrefix(imp, "github.com/moby/") || strings.HasPrefix(imp, "github.com/docker/") {
			return "the job core must not depend on an engine's client"
		}
		return ""
	}},
}

// under reports whether pkg is one of roots or inside one of them.
func under(pkg string, roots ...string) bool {
	for _, r := range roots {
		if pkg == r || strings.HasPrefix(pkg, r+"/") {
			return true
		}
	}
	return false
}

// TestPackageBoundaries checks depRules against the imports of every
// package of the module (tests' imports included).
func TestPackageBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		for _, imp := range imports {
			if !strings.HasPrefix(imp, mod+"/") && pkg != mod+"/jobs" {
				continue
			}
			for _, r := range depRules {
				if why := r.check(pkg, imp); why != "" {
					t.Errorf("%s imports %s: %s (rule: %s)", pkg, imp, why, r.name)
				}
			}
		}
	}
}

// TestDepRules checks that each rule catches what it is there for.
func TestDepRules(t *testing.T) {
	for _, c := range []struct {
		pkg, imp, rule string
	}{
		{mod + "/api", mod + "/internal/objurl", "api imports nothing of ours"},
		{mod + "/jobs", mod + "/cli", "only main imports cli"},
		{mod + "/fakeobs/obsclient", mod + "/jobs", "storage imports no job package"},
		{mod + "/registry", mod + "/kube", "storage imports no job package"},
		{mod + "/audit", mod + "/emulator", "storage imports no job package"},
		{mod + "/jobs", mod + "/api", "the job core knows no engine, backend or API type"},
		{mod + "/jobs", mod + "/dockerbackend", "the job core knows no engine, backend or API type"},
		{mod + "/jobs", "github.com/moby/moby/client", "the job core knows no engine, backend or API type"},
		{mod + "/jobs", "k8s.io/client-go/kubernetes", "the job core knows no engine, backend or API type"},
	} {
		caught := false
		for _, r := range depRules {
			if r.check(c.pkg, c.imp) != "" {
				caught = caught || r.name == c.rule
			}
		}
		if !caught {
			t.Errorf("%s importing %s is not caught by %q", c.pkg, c.imp, c.rule)
		}
	}
	for _, ok := range [][2]string{
		{mod, mod + "/cli"},
		{mod + "/fakeobs/obsclient", mod + "/internal/objurl"},
		{mod + "/jobs", mod + "/internal/objurl"},
		{mod + "/registry", mod + "/internal/durable"},
	} {
		for _, r := range depRules {
			if why := r.check(ok[0], ok[1]); why != "" {
				t.Errorf("%s importing %s is refused by %q: %s", ok[0], ok[1], r.name, why)
			}
		}
	}
}
