package registry

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The storage suite: each test opens a store on its own t.TempDir().

func openTestStore(t *testing.T, root string, quota int64) *store {
	t.Helper()
	s, err := openStore(root, quota, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// pushBlob uploads b to repo in chunks of chunk bytes and commits it.
func pushBlob(t *testing.T, s *store, repo string, b []byte, chunk int, alg string) digest {
	t.Helper()
	u, err := s.newUpload(repo)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		if err := s.appendData(u, bytes.NewReader(b[off:end]), int64(off), int64(end-off)); err != nil {
			t.Fatal(err)
		}
	}
	d := digestOf(alg, b)
	if err := s.commit(u, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func readBlob(t *testing.T, s *store, repo string, d digest) []byte {
	t.Helper()
	f, err := s.openBlob(repo, d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && e.Name() != "repo" {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func TestStoreBlobRoundTrip(t *testing.T) {
	for _, alg := range []string{"sha256", "sha512"} {
		t.Run(alg, func(t *testing.T) {
			root := t.TempDir()
			s := openTestStore(t, root, 0)
			b := randBytes(t, 100_000)
			d := pushBlob(t, s, "a/b", b, 30_000, alg)
			if got := readBlob(t, s, "a/b", d); !bytes.Equal(got, b) {
				t.Fatal("content differs")
			}
			if n, err := s.statBlob("a/b", d); err != nil || n != int64(len(b)) {
				t.Fatalf("stat = %d, %v", n, err)
			}
			if _, err := s.statBlob("other", d); !errors.Is(err, errBlobUnknown) {
				t.Fatalf("blob visible in another repository: %v", err)
			}
			if n := countFiles(t, filepath.Join(root, "uploads")); n != 0 {
				t.Fatalf("%d files left in uploads", n)
			}
			if s.Used() != int64(len(b)) {
				t.Fatalf("used = %d, want %d", s.Used(), len(b))
			}
			// The same content again is stored once.
			pushBlob(t, s, "c", b, len(b), alg)
			if s.Used() != int64(len(b)) {
				t.Fatalf("used after dedupe = %d", s.Used())
			}
			fi, err := os.Stat(root)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("root mode %v, %v", fi.Mode(), err)
			}
		})
	}
}

func TestStoreDigestMismatchLeavesNothing(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root, 0)
	u, err := s.newUpload("r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.appendData(u, bytes.NewReader(randBytes(t, 5000)), 0, 5000); err != nil {
		t.Fatal(err)
	}
	if err := s.commit(u, digestOf("sha256", []byte("other"))); !errors.Is(err, errDigestInvalid) {
		t.Fatalf("commit = %v, want digest invalid", err)
	}
	if n := countFiles(t, root); n != 0 {
		t.Fatalf("%d files left", n)
	}
	if s.Used() != 0 {
		t.Fatalf("used = %d", s.Used())
	}
}

func TestStoreUploadSurvivesRestart(t *testing.T) {
	root := t.TempDir()
	b := randBytes(t, 70_000)
	s := openTestStore(t, root, 0)
	u, err := s.newUpload("r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.appendData(u, bytes.NewReader(b[:40_000]), 0, 40_000); err != nil {
		t.Fatal(err)
	}
	// A new store on the same root: the session is found on disk.
	s2 := openTestStore(t, root, 0)
	if s2.Used() != 40_000 {
		t.Fatalf("used after restart = %d", s2.Used())
	}
	u2, err := s2.getUpload("r", u.id)
	if err != nil {
		t.Fatal(err)
	}
	if u2.size != 40_000 {
		t.Fatalf("size after restart = %d", u2.size)
	}
	if _, err := s2.getUpload("other", u.id); !errors.Is(err, errBlobUploadUnknown) {
		t.Fatalf("session visible from another repository: %v", err)
	}
	if err := s2.appendData(u2, bytes.NewReader(b[40_000:]), 1, -1); !errors.Is(err, errRangeInvalid) {
		t.Fatalf("bad range = %v", err)
	}
	if err := s2.appendData(u2, bytes.NewReader(b[40_000:]), 40_000, -1); err != nil {
		t.Fatal(err)
	}
	d := digestOf("sha256", b)
	if err := s2.commit(u2, d); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, s2, "r", d), b) {
		t.Fatal("content differs")
	}
}

func TestStoreQuota(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root, 100_000)
	d := pushBlob(t, s, "r", randBytes(t, 60_000), 60_000, "sha256")
	// Unknown length (docker's chunked PATCH): fails mid-stream.
	u, err := s.newUpload("r")
	if err != nil {
		t.Fatal(err)
	}
	err = s.appendData(u, bytes.NewReader(randBytes(t, 50_000)), -1, -1)
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("append over quota = %v", err)
	}
	// Known length: refused before reading.
	u, err = s.newUpload("r")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.appendData(u, bytes.NewReader(nil), -1, 50_000); !errors.Is(err, ErrQuota) {
		t.Fatalf("append over quota = %v", err)
	}
	if n := countFiles(t, filepath.Join(root, "uploads")); n != 0 {
		t.Fatalf("%d files left in uploads", n)
	}
	if n := countFiles(t, filepath.Join(root, "blobs")); n != 1 {
		t.Fatalf("%d blobs, want 1", n)
	}
	if s.Used() != 60_000 {
		t.Fatalf("used = %d", s.Used())
	}
	if _, err := s.statBlob("r", d); err != nil {
		t.Fatal(err)
	}
	// Within the quota still works.
	pushBlob(t, s, "r", randBytes(t, 40_000), 10_000, "sha256")
}

// testImage pushes a config and two layers to repo and returns an OCI
// image manifest over them.
func testImage(t *testing.T, s *store, repo string) (manifest []byte, blobs []digest) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	l1, l2 := randBytes(t, 3000), randBytes(t, 4000)
	dc := pushBlob(t, s, repo, cfg, 1000, "sha256")
	d1 := pushBlob(t, s, repo, l1, 1000, "sha256")
	d2 := pushBlob(t, s, repo, l2, 1000, "sha256")
	m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + dc.String() + `","size":` + strconv.Itoa(len(cfg)) + `},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + d1.String() + `","size":3000},` +
		`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + d2.String() + `","size":4000}]}`
	return []byte(m), []digest{dc, d1, d2}
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

func TestStoreManifests(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root, 0)
	m, _ := testImage(t, s, "team/app")

	if _, _, err := s.putManifest("other", "v1", ociManifest, m, nil); !errors.Is(err, errManifestBlobUnknown) {
		t.Fatalf("manifest with blobs of another repository = %v", err)
	}
	if _, _, err := s.putManifest("team/app", digestOf("sha256", []byte("x")).String(), ociManifest, m, nil); !errors.Is(err, errDigestInvalid) {
		t.Fatalf("manifest with wrong digest = %v", err)
	}
	if _, _, err := s.putManifest("team/app", "v1", "application/vnd.oci.image.index.v1+json", m, nil); !errors.Is(err, errManifestInvalid) {
		t.Fatalf("content type mismatch = %v", err)
	}
	d, _, err := s.putManifest("team/app", "v1", ociManifest, m, []string{"latest"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"v1", "latest", d.String()} {
		got, mt, body, err := s.getManifest("team/app", ref)
		if err != nil || got != d || mt != ociManifest || !bytes.Equal(body, m) {
			t.Fatalf("get %s = %v %s %v", ref, got, mt, err)
		}
	}
	// sha512 by digest.
	d512 := digestOf("sha512", m)
	if _, _, err := s.putManifest("team/app", d512.String(), ociManifest, m, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.resolve("team/app", d512.String()); err != nil {
		t.Fatal(err)
	}
	tags, err := s.listTags("team/app")
	if err != nil || !slices.Equal(tags, []string{"latest", "v1"}) {
		t.Fatalf("tags = %v, %v", tags, err)
	}
	// Deleting a tag leaves the manifest; deleting the manifest drops its tags.
	if err := s.deleteManifest("team/app", "latest"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.resolve("team/app", d.String()); err != nil {
		t.Fatal(err)
	}
	if err := s.deleteManifest("team/app", d.String()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.resolve("team/app", "v1"); !errors.Is(err, errManifestUnknown) {
		t.Fatalf("tag of deleted manifest = %v", err)
	}
	if tags, _ := s.listTags("team/app"); len(tags) != 0 {
		t.Fatalf("tags left: %v", tags)
	}
	if err := s.deleteManifest("team/app", d.String()); !errors.Is(err, errManifestUnknown) {
		t.Fatalf("second delete = %v", err)
	}
	repos, err := s.listRepos(t.Context())
	if err != nil || !slices.Equal(repos, []string{"other", "team/app"}) && !slices.Equal(repos, []string{"team/app"}) {
		t.Fatalf("repos = %v, %v", repos, err)
	}
}

func TestStoreReferrers(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 0)
	m, _ := testImage(t, s, "r")
	d, _, err := s.putManifest("r", "v1", ociManifest, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	empty := pushBlob(t, s, "r", []byte("{}"), 2, "sha256")
	art := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.sbom",` +
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + empty.String() + `","size":2},"layers":[],` +
		`"subject":{"mediaType":"` + ociManifest + `","digest":"` + d.String() + `","size":` + strconv.Itoa(len(m)) + `},"annotations":{"k":"v"}}`
	ad, meta, err := s.putManifest("r", digestOf("sha256", []byte(art)).String(), ociManifest, []byte(art), nil)
	if err != nil || meta.Subject == nil {
		t.Fatal(err)
	}
	refs, err := s.referrers("r", d, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != ad.String() || refs[0].ArtifactType != "application/x.sbom" || refs[0].Annotations["k"] != "v" {
		t.Fatalf("referrers = %+v, %v", refs, err)
	}
	if refs, _ := s.referrers("r", d, "application/other"); len(refs) != 0 {
		t.Fatalf("filtered referrers = %+v", refs)
	}
}

func TestStoreGC(t *testing.T) {
	root := t.TempDir()
	s := openTestStore(t, root, 0)
	keep, keepBlobs := testImage(t, s, "keep")
	if _, _, err := s.putManifest("keep", "v1", ociManifest, keep, nil); err != nil {
		t.Fatal(err)
	}
	drop, dropBlobs := testImage(t, s, "drop")
	dd, _, err := s.putManifest("drop", "v1", ociManifest, drop, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An unfinished upload.
	u, err := s.newUpload("drop")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.appendData(u, bytes.NewReader(randBytes(t, 1000)), 0, 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.deleteManifest("drop", dd.String()); err != nil {
		t.Fatal(err)
	}
	// Inside the grace period nothing goes.
	st, err := s.gc(t.Context(), time.Now().Add(-time.Hour))
	if err != nil || st.BlobsDeleted != 0 || st.UploadsDeleted != 0 {
		t.Fatalf("gc in grace = %+v, %v", st, err)
	}
	before := s.Used()
	st, err = s.gc(t.Context(), time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// The dropped image's config (same bytes as keep's) stays; its two
	// layers and its manifest go, and so does the upload.
	if st.BlobsDeleted != 3 || st.UploadsDeleted != 1 {
		t.Fatalf("gc = %+v", st)
	}
	if s.Used() != before-st.BytesFreed-1000 {
		t.Fatalf("used = %d, before %d, freed %d", s.Used(), before, st.BytesFreed)
	}
	for _, d := range keepBlobs {
		if _, err := s.statBlob("keep", d); err != nil {
			t.Fatalf("kept blob %s: %v", d, err)
		}
	}
	for _, d := range dropBlobs[1:] {
		if _, err := s.statBlob("drop", d); !errors.Is(err, errBlobUnknown) {
			t.Fatalf("dropped blob %s: %v", d, err)
		}
	}
	if _, _, _, err := s.getManifest("keep", "v1"); err != nil {
		t.Fatal(err)
	}
}
