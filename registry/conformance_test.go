package registry

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestConformance runs the OCI distribution-spec conformance suite (the
// binary named by OCI_CONFORMANCE_BIN, see .ci/conformance-install.sh)
// against the registry on a loopback port, with every API group and data
// type on that our registry claims, including referrers and sha512, with
// authentication on: the suite logs in through the token endpoint.
func TestConformance(t *testing.T) {
	bin := os.Getenv("OCI_CONFORMANCE_BIN")
	if bin == "" {
		missingTool(t, "OCI_CONFORMANCE_BIN is not set (.ci/conformance-install.sh installs the suite)")
	}
	bin = needTool(t, "conformance suite", bin)
	reg := newTestRegistry(t, filepath.Join(t.TempDir(), "registry"), WithCredentials(testCreds))
	addr := serveTCP(t, reg.Handler())
	results := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+addr,
		"OCI_TLS=disabled",
		"OCI_USERNAME="+testCreds.Username,
		"OCI_PASSWORD="+testCreds.Password,
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results,
		// "dev" turns on the optional groups: upload cancel, digest
		// headers and the tag query parameter.
		"OCI_VERSION=dev",
		"OCI_API_REFERRER=true",
		"OCI_DATA_SHA512=true",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	m := regexp.MustCompile(`(?m)^OCI Conformance Result: (\S+)`).FindSubmatch(out.Bytes())
	counts := regexp.MustCompile(`(?m)^  (Pass|FAIL|Skip|Error|Disabled)[.]*:\s+(\d+)`).FindAllSubmatch(out.Bytes(), -1)
	for _, c := range counts {
		t.Logf("%s: %s", c[1], c[2])
	}
	if err != nil || m == nil || string(m[1]) != "Pass" {
		t.Fatalf("conformance failed (%v); results in %s:\n%s", err, results, out.String())
	}
}
