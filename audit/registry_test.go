package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

type mapSource map[string]v1.Image

func (m mapSource) Image(_ context.Context, repo, ref string) (v1.Image, error) {
	if img, ok := m[repo+"@"+ref]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("%s@%s: not found", repo, ref)
}

func TestRegistryAuditor(t *testing.T) {
	f := newFixture(t)
	good := f.custom(t, []tf{file("opt/app", "ok", 0o644)})
	bad := f.custom(t, []tf{whiteout("bin/.wh.ls")})
	gd, _ := good.Digest()
	bd, _ := bad.Digest()
	src := mapSource{"u/app@" + gd.String(): good, "u/app@" + bd.String(): bad}
	logs := t.TempDir()
	ra := &RegistryAuditor{Source: src, Auditor: NewAuditor(f.catalog, nil), LogDir: logs}
	ok, reasons, err := ra.Audit(context.Background(), "u/app", gd.String())
	if err != nil || !ok || len(reasons) != 0 {
		t.Fatalf("good: %v %v %v", ok, reasons, err)
	}
	ok, reasons, err = ra.Audit(context.Background(), "u/app", bd.String())
	if err != nil || ok || len(reasons) != 1 || !strings.HasPrefix(reasons[0], RuleProtDeleted+" layer 2 (sha256:") || !strings.HasSuffix(reasons[0], "(/bin/ls)") {
		t.Fatalf("bad: %v %q %v", ok, reasons, err)
	}
	log, err := os.ReadFile(filepath.Join(logs, bd.Hex+".log"))
	if err != nil || !strings.Contains(string(log), "/bin/ls") || !strings.Contains(string(log), "verdict fail") {
		t.Fatalf("log: %s %v", log, err)
	}
	if _, _, err := ra.Audit(context.Background(), "u/app", "sha256:nope"); err == nil {
		t.Fatal("missing image: want an error")
	}
}
