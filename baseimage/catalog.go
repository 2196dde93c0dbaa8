package baseimage

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/malocal/malocal/audit/lineage"
	"github.com/malocal/malocal/internal/durable"
)

// CatalogFile is the name of the catalog in the data dir.
const CatalogFile = "bases.json"

// Record is one build of an official base, as the auditor needs it.
type Record struct {
	Name   string `json:"name"`   // repository, e.g. eiwizard/custom-cpu-base
	Tag    string `json:"tag"`    // e.g. 1.0
	Digest string `json:"digest"` // manifest digest, sha256:…
	// DiffIDs is the base's rootfs.diff_ids: an image built on this base
	// has them as an exact prefix of its own.
	DiffIDs      []string  `json:"diff_ids"`
	GPU          bool      `json:"gpu"`
	Superseded   bool      `json:"superseded"`
	SupersededBy string    `json:"superseded_by,omitempty"` // name:tag@digest of the build that replaced it
	Source       string    `json:"source,omitempty"`        // the --from it was built from, or "registry" for base add
	Created      time.Time `json:"created"`
}

// Ref is name:tag.
func (r Record) Ref() string { return r.Name + ":" + r.Tag }

// catalogDoc is the file's layout.
type catalogDoc struct {
	Version int      `json:"version"`
	Bases   []Record `json:"bases"`
}

// Catalog is the list of official base builds, kept in one JSON file that
// is replaced atomically (temp file, fsync, rename, fsync of the dir) on
// every change. A Catalog is safe for concurrent use in one process; other
// processes see either the old file or the new one, and an Add takes a file
// lock (bases.json.lock) for its read-modify-write, so that two processes
// adding bases at once lose neither.
type Catalog struct {
	path string
	mu   sync.Mutex
	now  func() time.Time
}

// OpenCatalog returns the catalog kept in dataDir/bases.json. The file is
// created on the first Add.
func OpenCatalog(dataDir string) *Catalog {
	return &Catalog{path: filepath.Join(dataDir, CatalogFile), now: time.Now}
}

// Path is the catalog file's path.
func (c *Catalog) Path() string { return c.path }

func (c *Catalog) load() (catalogDoc, error) {
	var doc catalogDoc
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return catalogDoc{Version: 1}, nil
	}
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("base catalog %s: %w", c.path, err)
	}
	return doc, nil
}

func (c *Catalog) save(doc catalogDoc) error {
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.path, append(data, '\n'), 0o644)
}

// Add records a build. Earlier current builds of the same name:tag, and
// the current builds of each name:tag in supersedes, become superseded by
// it. Adding a build that is already current under its name:tag changes
// nothing. The record as stored is returned.
func (c *Catalog) Add(r Record, supersedes ...string) (Record, error) {
	if r.Name == "" || r.Tag == "" || !strings.HasPrefix(r.Digest, "sha256:") {
		return Record{}, fmt.Errorf("base record needs a name, a tag and a sha256 digest (got %q:%q@%q)", r.Name, r.Tag, r.Digest)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := durable.Lock(c.path + ".lock")
	if err != nil {
		return Record{}, fmt.Errorf("base catalog: %w", err)
	}
	defer unlock()
	doc, err := c.load()
	if err != nil {
		return Record{}, err
	}
	for _, old := range doc.Bases {
		if !old.Superseded && old.Ref() == r.Ref() && old.Digest == r.Digest {
			return old, nil
		}
	}
	if r.Created.IsZero() {
		r.Created = c.now().UTC()
	}
	r.Superseded, r.SupersededBy = false, ""
	replaced := map[string]bool{r.Ref(): true}
	for _, s := range supersedes {
		replaced[s] = true
	}
	for i := range doc.Bases {
		if old := &doc.Bases[i]; !old.Superseded && replaced[old.Ref()] {
			old.Superseded = true
			old.SupersededBy = r.Ref() + "@" + r.Digest
		}
	}
	doc.Version = 1
	doc.Bases = append(doc.Bases, r)
	if err := c.save(doc); err != nil {
		return Record{}, err
	}
	return r, nil
}

// List returns every recorded build, oldest first.
func (c *Catalog) List() ([]Record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	doc, err := c.load()
	return doc.Bases, err
}

// Current returns the builds that are not superseded, sorted by name:tag.
func (c *Catalog) Current() ([]Record, error) {
	all, err := c.List()
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, r := range all {
		if !r.Superseded {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out, nil
}

// Lookup returns the record of a manifest digest; a current one is
// preferred over a superseded one.
func (c *Catalog) Lookup(digest string) (Record, bool, error) {
	all, err := c.List()
	if err != nil {
		return Record{}, false, err
	}
	var found *Record
	for i := range all {
		if all[i].Digest == digest && (found == nil || found.Superseded) {
			found = &all[i]
		}
	}
	if found == nil {
		return Record{}, false, nil
	}
	return *found, true, nil
}

// IsSuperseded says whether digest is a recorded base that has no current
// record left. Unknown digests are not superseded (known is false).
func (c *Catalog) IsSuperseded(digest string) (superseded, known bool, err error) {
	r, ok, err := c.Lookup(digest)
	if err != nil || !ok {
		return false, false, err
	}
	return r.Superseded, true, nil
}

// Match returns the base an image was built on, by lineage.Match: the
// record whose diff_ids are the longest exact prefix of diffIDs (current
// records win ties), as the auditor and the console decide it.
func (c *Catalog) Match(diffIDs []string) (Record, bool, error) {
	all, err := c.List()
	if err != nil {
		return Record{}, false, err
	}
	cands := make([]lineage.Candidate, len(all))
	for i, r := range all {
		cands[i] = lineage.Candidate{DiffIDs: r.DiffIDs, Superseded: r.Superseded}
	}
	i := lineage.Match(cands, diffIDs)
	if i < 0 {
		return Record{}, false, nil
	}
	return all[i], true, nil
}

// writeFileAtomic writes data to path durably (durable.WriteFile).
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return durable.WriteFile(path, data, perm)
}
