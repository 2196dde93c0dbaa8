package main

import (
	"os/exec"
	"strings"
	"testing"
)

// Package boundaries: the API package (and so its client) imports no other
// malocal package; the job core imports no API type, no engine and no
// backend (backends import it); and nothing but main imports the CLI.
func TestPackageBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/malocal/malocal"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		for _, imp := range imports {
			if pkg == mod+"/api" && strings.HasPrefix(imp, mod+"/") {
				t.Errorf("api imports %s: the API client must not depend on server-side packages", imp)
			}
			if pkg == mod+"/jobs" && (strings.HasPrefix(imp, mod+"/") || strings.HasPrefix(imp, "k8s.io/") ||
				strings.HasPrefix(imp, "github.com/moby/") || strings.HasPrefix(imp, "github.com/docker/")) {
				t.Errorf("jobs imports %s: the job core knows no API type, engine or backend", imp)
			}
			if imp == mod+"/cli" && pkg != mod {
				t.Errorf("%s imports cli: only main may", pkg)
			}
		}
	}
}
