package audit

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSupersededBaseAndVerdictCache: an image approved while its base was
// current keeps running after the base is superseded (its verdict is
// cached); a new image on the old base fails, naming the base to rebuild
// on; --force audits the approved one again, and it fails too.
func TestSupersededBaseAndVerdictCache(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "verdicts.db")
	cache, err := OpenBoltCache(path)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuditor(f.catalog, cache)
	approved := f.custom(t, []tf{file("opt/app", "v1", 0o644)})
	rep := mustAudit(t, a, approved, Options{})
	if rep.Verdict != Pass || rep.Cached {
		t.Fatalf("first audit:\n%s", dump(rep))
	}

	// A new build of the base supersedes the old one.
	newBase := imageOf(t, baseFS(runTrainV1+"# v2\n"))
	rec2, err := BaseFromImage("eiwizard/custom-cpu-base", "1.0", newBase)
	if err != nil {
		t.Fatal(err)
	}
	f.catalog.bases[0].Superseded = true
	f.catalog.bases = append(f.catalog.bases, rec2)

	rep = mustAudit(t, a, approved, Options{})
	if rep.Verdict != Pass || !rep.Cached || !strings.Contains(rep.Log[len(rep.Log)-1], "served from the cache") {
		t.Fatalf("approved image after the base changed:\n%s", dump(rep))
	}

	late := f.custom(t, []tf{file("opt/app", "v2", 0o644)})
	rep = mustAudit(t, a, late, Options{})
	if got := rulesOf(rep); !slices.Equal(got, []string{RuleBaseOutdated}) || !strings.Contains(rep.Violations[0].Detail, rec2.Ref()) ||
		!strings.Contains(rep.Violations[0].Detail, "base image mismatch") {
		t.Fatalf("image on the superseded base: %v\n%s", got, dump(rep))
	}
	// Rejected: the next submission fails at once with the stored reasons.
	again := mustAudit(t, a, late, Options{})
	if !again.Cached || again.Verdict != Fail || !slices.Equal(again.Violations, rep.Violations) {
		t.Fatalf("rejected image again:\n%s", dump(again))
	}
	forced := mustAudit(t, a, approved, Options{Force: true})
	if forced.Cached || !slices.Equal(rulesOf(forced), []string{RuleBaseOutdated}) {
		t.Fatalf("forced audit:\n%s", dump(forced))
	}
	// The image rebuilt on the current base passes.
	rebuilt := appendLayers(t, newBase, layerOf(t, file("opt/app", "v2", 0o644)))
	if rep := mustAudit(t, a, rebuilt, Options{}); rep.Verdict != Pass || rep.Base.Digest != rec2.Digest {
		t.Fatalf("rebuilt:\n%s", dump(rep))
	}

	// Verdicts survive a restart; a different policy is not served a
	// verdict reached under another.
	if err := cache.Close(); err != nil {
		t.Fatal(err)
	}
	cache, err = OpenBoltCache(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	a = NewAuditor(f.catalog, cache)
	if rep := mustAudit(t, a, late, Options{}); !rep.Cached || rep.Verdict != Fail {
		t.Fatalf("after reopen:\n%s", dump(rep))
	}
	if rep := mustAudit(t, a, late, Options{Ignore: []string{RuleBaseOutdated}}); rep.Cached || rep.Verdict != Pass || len(rep.Ignored) != 1 {
		t.Fatalf("other policy:\n%s", dump(rep))
	}
}

func TestBoltCacheMisses(t *testing.T) {
	c, err := OpenBoltCache(filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, ok, err := c.Get(ctx, "sha256:a", "sha256:b"); ok || err != nil {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	if err := c.Put(ctx, &Report{Verdict: Pass, ManifestDigest: "sha256:a", ConfigDigest: "sha256:b"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.Get(ctx, "sha256:a", "sha256:c"); ok {
		t.Fatal("a verdict for another config was served")
	}
	if r, ok, err := c.Get(ctx, "sha256:a", "sha256:b"); !ok || err != nil || r.Verdict != Pass {
		t.Fatalf("get: %+v %v %v", r, ok, err)
	}
	if err := c.Put(ctx, &Report{}); err == nil {
		t.Fatal("put without digests: want an error")
	}
}
