package baseimage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

func digestOf(i int) string { return fmt.Sprintf("sha256:%064x", i) }

func TestCatalog(t *testing.T) {
	dir := t.TempDir()
	c := OpenCatalog(dir)
	if l, err := c.List(); err != nil || len(l) != 0 {
		t.Fatalf("empty catalog: %v %v", l, err)
	}
	cpu := Record{Name: "eiwizard/custom-cpu-base", Tag: "1.0", Digest: digestOf(1), DiffIDs: []string{"sha256:a", "sha256:b"}}
	if _, err := c.Add(cpu); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Add(cpu); err != nil || r.Digest != cpu.Digest {
		t.Fatalf("re-adding: %v %v", r, err)
	}
	if l, _ := c.List(); len(l) != 1 {
		t.Fatalf("re-adding the current build added a record: %v", l)
	}
	// Rebuilding the same name:tag supersedes the earlier build.
	cpu2 := cpu
	cpu2.Digest, cpu2.DiffIDs = digestOf(2), []string{"sha256:a", "sha256:c"}
	if _, err := c.Add(cpu2); err != nil {
		t.Fatal(err)
	}
	gpu := Record{Name: "eiwizard/custom-gpu-cuda-base", Tag: "1.0", Digest: digestOf(3), DiffIDs: []string{"sha256:g", "sha256:h"}, GPU: true}
	if _, err := c.Add(gpu); err != nil {
		t.Fatal(err)
	}
	// A newer tag superseding 1.0 explicitly.
	cpu11 := Record{Name: "eiwizard/custom-cpu-base", Tag: "1.1", Digest: digestOf(4), DiffIDs: []string{"sha256:a", "sha256:d"}}
	if _, err := c.Add(cpu11, "eiwizard/custom-cpu-base:1.0"); err != nil {
		t.Fatal(err)
	}

	cur, err := c.Current()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, r := range cur {
		refs = append(refs, r.Ref()+"@"+r.Digest[len(r.Digest)-1:])
	}
	if fmt.Sprint(refs) != "[eiwizard/custom-cpu-base:1.1@4 eiwizard/custom-gpu-cuda-base:1.0@3]" {
		t.Errorf("current: %v", refs)
	}
	for d, want := range map[int]bool{1: true, 2: true, 3: false, 4: false} {
		sup, known, err := c.IsSuperseded(digestOf(d))
		if err != nil || !known || sup != want {
			t.Errorf("IsSuperseded(%d) = %v %v %v, want %v", d, sup, known, err, want)
		}
	}
	if _, known, _ := c.IsSuperseded(digestOf(9)); known {
		t.Error("unknown digest is known")
	}
	r, _, _ := c.Lookup(digestOf(1))
	if r.SupersededBy != "eiwizard/custom-cpu-base:1.0@"+digestOf(2) {
		t.Errorf("superseded_by %q", r.SupersededBy)
	}
	r, _, _ = c.Lookup(digestOf(2))
	if r.SupersededBy != "eiwizard/custom-cpu-base:1.1@"+digestOf(4) {
		t.Errorf("superseded_by %q", r.SupersededBy)
	}

	// The auditor's question: which base is this image built on?
	for _, m := range []struct {
		ids  []string
		want string
	}{
		{[]string{"sha256:a", "sha256:b", "sha256:user"}, digestOf(1)},
		{[]string{"sha256:a", "sha256:d"}, digestOf(4)},
		{[]string{"sha256:g", "sha256:h", "sha256:x", "sha256:y"}, digestOf(3)},
	} {
		r, ok, err := c.Match(m.ids)
		if err != nil || !ok || r.Digest != m.want {
			t.Errorf("Match(%v) = %v %v %v, want %s", m.ids, r.Digest, ok, err, m.want)
		}
	}
	if _, ok, _ := c.Match([]string{"sha256:a"}); ok {
		t.Error("a shorter chain matched")
	}
	if _, ok, _ := c.Match([]string{"sha256:b", "sha256:a"}); ok {
		t.Error("a non-prefix matched")
	}

	// The file is JSON, replaced atomically, with no temp files left (the
	// lock file of Add stays).
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != CatalogFile || ents[1].Name() != CatalogFile+".lock" {
		t.Errorf("data dir holds %v", ents)
	}
	again := OpenCatalog(dir)
	if l, _ := again.List(); len(l) != 4 {
		t.Errorf("reopened: %d records", len(l))
	}
	if _, err := c.Add(Record{Name: "x"}); err == nil {
		t.Error("a record without tag and digest was added")
	}
	os.WriteFile(filepath.Join(dir, CatalogFile), []byte("{not json"), 0o644)
	if _, err := again.List(); err == nil {
		t.Error("a corrupt catalog read without error")
	}
}

func TestCatalogConcurrentAdds(t *testing.T) {
	c := OpenCatalog(t.TempDir())
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := c.Add(Record{Name: "n", Tag: fmt.Sprint(i % 4), Digest: digestOf(i)}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	all, _ := c.List()
	cur, _ := c.Current()
	if len(all) != 16 || len(cur) != 4 {
		t.Errorf("%d records, %d current; want 16 and 4", len(all), len(cur))
	}
}

// Processes that add bases to one data dir at the same time (base build,
// base add, the emulator) lose none of them: Add holds a file lock across
// its read-modify-write. Each child process and each goroutine here has a
// Catalog of its own, as separate processes would.
func TestCatalogAddsAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, perProc = 3, 8
	var wg sync.WaitGroup
	for p := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCatalogAddHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CATALOG_HELPER_DIR="+dir, "CATALOG_HELPER_FIRST="+strconv.Itoa(1000*(p+1)), "CATALOG_HELPER_N="+strconv.Itoa(perProc))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("child %d: %v\n%s", p, err, out)
			}
		})
	}
	for g := range perProc {
		wg.Go(func() {
			if _, err := OpenCatalog(dir).Add(Record{Name: "in-process", Tag: strconv.Itoa(g), Digest: digestOf(g)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	all, err := OpenCatalog(dir).List()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range all {
		seen[r.Digest] = true
	}
	if want := (procs + 1) * perProc; len(all) != want || len(seen) != want {
		t.Errorf("%d records (%d distinct) after %d concurrent adds", len(all), len(seen), want)
	}
}

// TestCatalogAddHelperProcess is the child of TestCatalogAddsAcrossProcesses.
func TestCatalogAddHelperProcess(t *testing.T) {
	dir := os.Getenv("CATALOG_HELPER_DIR")
	if dir == "" {
		return
	}
	first, _ := strconv.Atoi(os.Getenv("CATALOG_HELPER_FIRST"))
	n, _ := strconv.Atoi(os.Getenv("CATALOG_HELPER_N"))
	for i := first; i < first+n; i++ {
		if _, err := OpenCatalog(dir).Add(Record{Name: "child", Tag: strconv.Itoa(i), Digest: digestOf(i)}); err != nil {
			t.Fatal(err)
		}
	}
}
