package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxManifestSize is what we accept in one manifest PUT; the spec asks
// registries to take at least 4 MiB.
const maxManifestSize = 4 << 20

// store is the on-disk layout under root:
//
//	blobs/<alg>/<hex[:2]>/<hex>        content of every blob and manifest
//	repos/<name>/_blobs/<alg>/<hex>    empty: the blob is part of <name>
//	repos/<name>/_manifests/<alg>/<hex> the manifest's media type
//	repos/<name>/_tags/<tag>           the digest the tag points at
//	uploads/<id>/{repo,data}           an upload session in progress
//
// Content lives once; repositories hold links, as in the distribution
// registry, so a delete in one repository does not affect another and a
// cross-repository mount is one small file.
type store struct {
	root  string
	quota int64
	grace time.Duration
	log   *slog.Logger

	usedMu sync.Mutex
	used   int64 // bytes in blobs and upload data, for the quota

	// gcMu is held shared by everything that makes a blob reachable
	// (commit, mount, manifest put) and exclusively by GC, so GC never
	// deletes a blob between its existence check and its new reference.
	gcMu sync.RWMutex

	upMu    sync.Mutex
	uploads map[string]*upload

	metaMu sync.Mutex
	meta   map[string]*manifestMeta // by digest; manifests are immutable
}

// Descriptor describes one piece of stored content, as in the OCI image spec.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *v1.Platform      `json:"platform,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
}

// manifestMeta is the part of an image manifest or index we look at.
type manifestMeta struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Config       *Descriptor       `json:"config"`
	Layers       []Descriptor      `json:"layers"`
	Manifests    []Descriptor      `json:"manifests"`
	Subject      *Descriptor       `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

func openStore(root string, quota int64, grace time.Duration, log *slog.Logger) (*store, error) {
	s := &store{root: root, quota: quota, grace: grace, log: log,
		uploads: map[string]*upload{}, meta: map[string]*manifestMeta{}}
	for _, d := range []string{root, s.path("blobs"), s.path("repos"), s.path("uploads")} {
		if err := mkdirAll(d); err != nil {
			return nil, fmt.Errorf("registry: create %s: %w", d, err)
		}
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	// Count what is on disk for the quota; drop temp files a crash left.
	err := filepath.WalkDir(s.path("blobs"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			return os.Remove(p)
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		s.used += fi.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: scan blobs: %w", err)
	}
	ids, err := readDirNames(s.path("uploads"))
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	for _, id := range ids {
		if fi, err := os.Stat(s.path("uploads", id, "data")); err == nil {
			s.used += fi.Size()
		}
	}
	return s, nil
}

func (s *store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

func (s *store) blobPath(d digest) string { return s.path("blobs", d.alg, d.hex[:2], d.hex) }

func (s *store) repoPath(name string, elem ...string) string {
	return s.path(append([]string{"repos", filepath.FromSlash(name)}, elem...)...)
}

func (s *store) blobLink(name string, d digest) string {
	return s.repoPath(name, "_blobs", d.alg, d.hex)
}

func (s *store) manifestLink(name string, d digest) string {
	return s.repoPath(name, "_manifests", d.alg, d.hex)
}

func (s *store) tagPath(name, tag string) string { return s.repoPath(name, "_tags", tag) }

// reserve accounts n more bytes, failing with ErrQuota past the quota.
func (s *store) reserve(n int64) error {
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	if s.quota > 0 && s.used+n > s.quota {
		return ErrQuota
	}
	s.used += n
	return nil
}

func (s *store) release(n int64) {
	s.usedMu.Lock()
	s.used -= n
	s.usedMu.Unlock()
}

// Used reports the bytes held in blobs and unfinished uploads.
func (s *store) Used() int64 {
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	return s.used
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// touch marks a blob as freshly referenced so that GC's grace period
// protects it until the manifest that uses it arrives.
func touch(p string) error {
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		return fmt.Errorf("touch blob: %w", err)
	}
	return nil
}

// statBlob returns the size of blob d if repository name holds it.
func (s *store) statBlob(name string, d digest) (int64, error) {
	if !exists(s.blobLink(name, d)) {
		return 0, errBlobUnknown
	}
	fi, err := os.Stat(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errBlobUnknown
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob: %w", err)
	}
	return fi.Size(), nil
}

// openBlob opens blob d of repository name for reading.
func (s *store) openBlob(name string, d digest) (*os.File, error) {
	if !exists(s.blobLink(name, d)) {
		return nil, errBlobUnknown
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errBlobUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return f, nil
}

// link makes blob d part of repository name; the caller holds gcMu shared.
func (s *store) link(name string, d digest) error {
	p := s.blobLink(name, d)
	if exists(p) {
		return nil
	}
	return writeFileAtomic(p, nil)
}

// mount links blob d into name when it is in repository from, or anywhere
// when from is empty (the spec's anonymous mount); false if it is not there.
func (s *store) mount(name, from string, d digest) (bool, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if from != "" && (!validName(from) || !exists(s.blobLink(from, d))) {
		return false, nil
	}
	if !exists(s.blobPath(d)) {
		return false, nil
	}
	if err := touch(s.blobPath(d)); err != nil {
		return false, err
	}
	return true, s.link(name, d)
}

// deleteBlob removes blob d from repository name; the content itself goes
// at the next GC if nothing else uses it.
func (s *store) deleteBlob(name string, d digest) error {
	err := os.Remove(s.blobLink(name, d))
	if errors.Is(err, fs.ErrNotExist) {
		return errBlobUnknown
	}
	if err != nil {
		return fmt.Errorf("delete blob link: %w", err)
	}
	return nil
}

// putContent stores small content (a manifest) by digest; caller holds gcMu.
func (s *store) putContent(d digest, data []byte) error {
	p := s.blobPath(d)
	if exists(p) {
		return touch(p)
	}
	if err := s.reserve(int64(len(data))); err != nil {
		return err
	}
	if err := writeFileAtomic(p, data); err != nil {
		s.release(int64(len(data)))
		return err
	}
	return nil
}

// resolve turns a tag or digest into the digest and media type of a
// manifest in repository name.
func (s *store) resolve(name, ref string) (digest, string, error) {
	if !validName(name) {
		return digest{}, "", errNameInvalid
	}
	var d digest
	if strings.Contains(ref, ":") {
		var err error
		if d, err = parseDigest(ref); err != nil {
			return digest{}, "", err
		}
	} else {
		if !tagRe.MatchString(ref) {
			return digest{}, "", errTagInvalid
		}
		b, err := os.ReadFile(s.tagPath(name, ref))
		if errors.Is(err, fs.ErrNotExist) {
			return digest{}, "", errManifestUnknown
		}
		if err != nil {
			return digest{}, "", fmt.Errorf("read tag: %w", err)
		}
		if d, err = parseDigest(string(b)); err != nil {
			return digest{}, "", fmt.Errorf("corrupt tag %s:%s: %w", name, ref, err)
		}
	}
	mt, err := os.ReadFile(s.manifestLink(name, d))
	if errors.Is(err, fs.ErrNotExist) {
		return digest{}, "", errManifestUnknown
	}
	if err != nil {
		return digest{}, "", fmt.Errorf("read manifest link: %w", err)
	}
	return d, string(mt), nil
}

// getManifest returns the manifest ref of repository name.
func (s *store) getManifest(name, ref string) (digest, string, []byte, error) {
	d, mt, err := s.resolve(name, ref)
	if err != nil {
		return digest{}, "", nil, err
	}
	b, err := os.ReadFile(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return digest{}, "", nil, errManifestUnknown
	}
	if err != nil {
		return digest{}, "", nil, fmt.Errorf("read manifest: %w", err)
	}
	return d, mt, b, nil
}

// manifest parses (once) the stored manifest d.
func (s *store) manifest(d digest) (*manifestMeta, error) {
	s.metaMu.Lock()
	m, ok := s.meta[d.String()]
	s.metaMu.Unlock()
	if ok {
		return m, nil
	}
	b, err := os.ReadFile(s.blobPath(d))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", d, err)
	}
	m = &manifestMeta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", d, err)
	}
	s.metaMu.Lock()
	s.meta[d.String()] = m
	s.metaMu.Unlock()
	return m, nil
}

// putManifest stores a manifest under ref (a digest it must match, or a tag)
// plus any extra tags, after checking that everything it references is in
// the repository. It returns the manifest's digest and parsed form.
func (s *store) putManifest(name, ref, contentType string, body []byte, extraTags []string) (digest, *manifestMeta, error) {
	if !validName(name) {
		return digest{}, nil, errNameInvalid
	}
	tags := extraTags
	var d digest
	if strings.Contains(ref, ":") {
		want, err := parseDigest(ref)
		if err != nil {
			return digest{}, nil, err
		}
		if d = digestOf(want.alg, body); d != want {
			return digest{}, nil, withMessage(errDigestInvalid, "manifest digest does not match its content")
		}
	} else {
		d = digestOf("sha256", body)
		tags = append([]string{ref}, tags...)
	}
	for _, t := range tags {
		if !tagRe.MatchString(t) {
			return digest{}, nil, errTagInvalid
		}
	}
	m := &manifestMeta{}
	if err := json.Unmarshal(body, m); err != nil {
		return digest{}, nil, withMessage(errManifestInvalid, "manifest is not valid JSON")
	}
	if contentType == "" {
		contentType = m.MediaType
	}
	if m.MediaType != "" && contentType != m.MediaType {
		return digest{}, nil, withMessage(errManifestInvalid, "Content-Type does not match the manifest's mediaType")
	}
	if contentType == "" {
		return digest{}, nil, withMessage(errManifestInvalid, "manifest media type unknown")
	}

	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if err := s.checkRefs(name, m); err != nil {
		return digest{}, nil, err
	}
	if err := s.putContent(d, body); err != nil {
		return digest{}, nil, err
	}
	if err := writeFileAtomic(s.manifestLink(name, d), []byte(contentType)); err != nil {
		return digest{}, nil, err
	}
	for _, t := range tags {
		if err := writeFileAtomic(s.tagPath(name, t), []byte(d.String())); err != nil {
			return digest{}, nil, err
		}
	}
	s.metaMu.Lock()
	s.meta[d.String()] = m
	s.metaMu.Unlock()
	return d, m, nil
}

// checkRefs makes sure the blobs and child manifests m names are in name.
// Descriptors with URLs point outside the registry (foreign layers).
func (s *store) checkRefs(name string, m *manifestMeta) error {
	var blobs []Descriptor
	if m.Config != nil {
		blobs = append(blobs, *m.Config)
	}
	blobs = append(blobs, m.Layers...)
	for _, b := range blobs {
		if len(b.URLs) > 0 {
			continue
		}
		d, err := parseDigest(b.Digest)
		if err != nil {
			return withMessage(errManifestInvalid, fmt.Sprintf("bad descriptor digest %q", b.Digest))
		}
		size, err := s.statBlob(name, d)
		if err != nil {
			return withMessage(errManifestBlobUnknown, "blob unknown: "+b.Digest)
		}
		if b.Size != size {
			// As distribution does: a descriptor that lies about its
			// blob's size makes the manifest invalid.
			return withMessage(errManifestInvalid, fmt.Sprintf("descriptor of %s says size %d, the blob has %d bytes", b.Digest, b.Size, size))
		}
	}
	for _, c := range m.Manifests {
		d, err := parseDigest(c.Digest)
		if err != nil {
			return withMessage(errManifestInvalid, fmt.Sprintf("bad descriptor digest %q", c.Digest))
		}
		if !exists(s.manifestLink(name, d)) {
			return withMessage(errManifestBlobUnknown, "manifest unknown: "+c.Digest)
		}
		if fi, err := os.Stat(s.blobPath(d)); err == nil && fi.Size() != c.Size {
			return withMessage(errManifestInvalid, fmt.Sprintf("descriptor of %s says size %d, the manifest has %d bytes", c.Digest, c.Size, fi.Size()))
		}
	}
	return nil
}

// deleteManifest removes a tag (ref is a tag) or a manifest and every tag
// pointing at it (ref is a digest).
func (s *store) deleteManifest(name, ref string) error {
	if !validName(name) {
		return errNameInvalid
	}
	if !strings.Contains(ref, ":") {
		if !tagRe.MatchString(ref) {
			return errTagInvalid
		}
		err := os.Remove(s.tagPath(name, ref))
		if errors.Is(err, fs.ErrNotExist) {
			return errManifestUnknown
		}
		if err != nil {
			return fmt.Errorf("delete tag: %w", err)
		}
		return syncDir(filepath.Dir(s.tagPath(name, ref)))
	}
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	if !exists(s.manifestLink(name, d)) {
		return errManifestUnknown
	}
	// Tags first: a crash in between leaves an untagged manifest, never a
	// tag pointing at nothing.
	tags, err := s.listTags(name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		b, err := os.ReadFile(s.tagPath(name, t))
		if err == nil && string(b) == d.String() {
			if err := os.Remove(s.tagPath(name, t)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("delete tag: %w", err)
			}
		}
	}
	if err := os.Remove(s.manifestLink(name, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete manifest: %w", err)
	}
	return syncDir(filepath.Dir(s.manifestLink(name, d)))
}

func (s *store) listTags(name string) ([]string, error) {
	return readDirNames(s.repoPath(name, "_tags"))
}

// listManifests returns the digests of the manifests in repository name.
func (s *store) listManifests(name string) ([]digest, error) {
	var out []digest
	for _, alg := range []string{"sha256", "sha512"} {
		hexes, err := readDirNames(s.repoPath(name, "_manifests", alg))
		if err != nil {
			return nil, err
		}
		for _, h := range hexes {
			out = append(out, digest{alg, h})
		}
	}
	return out, nil
}

// repoExists reports whether anything was ever pushed to name.
func (s *store) repoExists(name string) bool {
	return validName(name) && (exists(s.repoPath(name, "_manifests")) || exists(s.repoPath(name, "_blobs")))
}

// listRepos returns every repository name, sorted.
func (s *store) listRepos(ctx context.Context) ([]string, error) {
	base := s.path("repos")
	var out []string
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.IsDir() || p == base {
			return nil
		}
		if strings.HasPrefix(e.Name(), "_") {
			rel, err := filepath.Rel(base, filepath.Dir(p))
			if err != nil {
				return err
			}
			if n := filepath.ToSlash(rel); len(out) == 0 || out[len(out)-1] != n {
				out = append(out, n)
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// referrers lists the manifests in name whose subject is d, optionally only
// those of one artifact type.
func (s *store) referrers(name string, d digest, artifactType string) ([]Descriptor, error) {
	ds, err := s.listManifests(name)
	if err != nil {
		return nil, err
	}
	out := []Descriptor{}
	for _, md := range ds {
		m, err := s.manifest(md)
		if err != nil {
			// A manifest deleted while we list is not a referrer any more.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		if m.Subject == nil || m.Subject.Digest != d.String() {
			continue
		}
		at := m.ArtifactType
		if at == "" && m.Config != nil {
			at = m.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			continue
		}
		mt, err := os.ReadFile(s.manifestLink(name, md))
		if err != nil {
			continue
		}
		fi, err := os.Stat(s.blobPath(md))
		if err != nil {
			continue
		}
		out = append(out, Descriptor{MediaType: string(mt), Digest: md.String(), Size: fi.Size(),
			ArtifactType: at, Annotations: m.Annotations})
	}
	return out, nil
}
