package audit

import (
	"archive/tar"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestCachedVerdictAndLines checks the verdict a job's submit reads by
// manifest digest alone, the log lines a job starts with, and that an
// image approved before its base was superseded stays approved and says so.
func TestCachedVerdictAndLines(t *testing.T) {
	f := newFixture(t)
	cache, err := OpenBoltCache(filepath.Join(t.TempDir(), "verdicts.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	a := NewAuditor(f.catalog, cache)
	good := f.custom(t, []tf{file("opt/app", "app", 0o644)})
	bad := f.custom(t, []tf{device("opt/mem", tar.TypeChar, 1, 1, 0o666)})
	gd, bd := mustDigest(t, good).String(), mustDigest(t, bad).String()

	if _, ok, err := a.Cached(t.Context(), gd, Options{}); ok || err != nil {
		t.Fatalf("cached before any audit: %v %v", ok, err)
	}
	mustAudit(t, a, good, Options{})
	rep := mustAudit(t, a, bad, Options{})
	lines := Lines("team/bad@"+bd, rep, "")
	want := []string{"audit: image team/bad@" + bd, "audit: base eiwizard/custom-cpu-base:1.0@", "MA-DEV-001 layer 2 (sha256:", "/opt/mem: new char device 1:1", "audit: verdict FAIL (1 violations)"}
	for _, w := range want {
		if !strings.Contains(strings.Join(lines, "\n"), w) {
			t.Errorf("lines lack %q:\n%s", w, strings.Join(lines, "\n"))
		}
	}
	c, ok, err := a.Cached(t.Context(), bd, Options{})
	if err != nil || !ok || c.Verdict != Fail || !c.Cached {
		t.Fatalf("cached fail: %+v %v %v", c, ok, err)
	}
	// Another policy has no verdict yet.
	if _, ok, _ := a.Cached(t.Context(), bd, Options{MaxSize: 1 << 20}); ok {
		t.Fatal("a verdict of another policy served")
	}

	// Supersede the base: the approved image stays approved, and says so.
	f.catalog.bases[0].Superseded = true
	c, ok, err = a.Cached(t.Context(), gd, Options{})
	if err != nil || !ok || c.Verdict != Pass {
		t.Fatalf("cached pass after the supersede: %+v %v %v", c, ok, err)
	}
	note := SupersededNote(c, f.catalog.bases)
	if !strings.HasPrefix(note, "approved ") || !strings.HasSuffix(note, "; its base has since been superseded") {
		t.Fatalf("note %q", note)
	}
	if rep := mustAudit(t, a, good, Options{}); rep.Verdict != Pass || !rep.Cached {
		t.Fatalf("approved image audited again after the supersede: %s", dump(rep))
	}
	// Never audited, on the superseded base: MA-BASE-003.
	fresh := f.custom(t, []tf{file("opt/new", "new", 0o644)})
	if rep := mustAudit(t, a, fresh, Options{}); rep.Verdict != Fail || !strings.Contains(strings.Join(rulesOf(rep), " "), RuleBaseOutdated) {
		t.Fatalf("fresh image on the superseded base: %s", dump(rep))
	}
}

func mustDigest(t testing.TB, img interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
