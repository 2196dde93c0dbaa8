package fakeobs

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/johannesboyne/gofakes3"

	"github.com/malocal/malocal/internal/durable"
)

// On-disk layout under the root (bucket names cannot start with '.', so the
// dot-directories never collide with a bucket):
//
//	<bucket>/<key>                  object data, a plain file users can read
//	<bucket>/…/%long-<sha256>       a key segment over 255 bytes (or one that
//	                                begins "%long-"), by the hash of the segment
//	.meta/<bucket>/bucket.json      bucket creation time
//	.meta/<bucket>/long/<hh>/<sha256>  the segment behind an alias, by the hash
//	                                of the alias's path (see longseg.go)
//	.meta/<bucket>/<hh>/<sha256>    sidecar of a key (metadata, ETag), by hash
//	                                so that sidecars never collide with key paths
//	.meta/<bucket>/<hh>/<sha256>.data  data of a "folder/" key (a directory
//	                                cannot hold bytes)
//	.tmp/                           temp files of writes in flight; emptied at start
//	.uploads/<id>/                  multipart uploads: upload.json and part files
const (
	metaDir    = ".meta"
	tmpDir     = ".tmp"
	uploadsDir = ".uploads"

	maxKeyLen = gofakes3.KeySizeLimit
	// maxSegmentLen is NAME_MAX of common file systems: longer key segments
	// are stored under an alias (longseg.go).
	maxSegmentLen = 255
)

var (
	_ gofakes3.Backend          = (*backend)(nil)
	_ gofakes3.MultipartBackend = (*backend)(nil)
)

// backend is a gofakes3 Backend and MultipartBackend on a local directory.
// Every write goes temp file → fsync → rename → fsync dir, so a crash or a
// failed request leaves the previous object whole.
type backend struct {
	root *os.Root
	log  *slog.Logger
	now  func() time.Time

	keys keyLocks
	// tree is held shared by writes that create directories and exclusively
	// by deletes that prune empty ones, so a prune never removes a directory
	// a concurrent write is about to rename into.
	tree sync.RWMutex

	uploadTTL time.Duration

	segs segCache // segments behind long-segment aliases (longseg.go)

	// reserved are regions of uploads' "data" files being written in place.
	resMu    sync.Mutex
	reserved map[gofakes3.UploadID][]region
	layout   map[gofakes3.UploadID]int64 // part size of uploads writing parts in place
	index    map[gofakes3.UploadID]map[int]partFile

	// allocMu is held across allocateAhead's fallocate, so that one part
	// allocates for the others.
	allocMu sync.Mutex

	// failWrite, when set (tests only), is called before each write to a
	// temp file; a non-nil result fails that write as a disk error would.
	failWrite func() error
}

// sidecar is the metadata kept beside an object. Size and ModNano identify
// the data file it describes: a file changed behind our back (or a crash
// between the data and the sidecar rename) is detected and re-hashed.
type sidecar struct {
	Key     string            `json:"key"`
	ETag    string            `json:"etag"` // hex MD5, or "hex-N" for multipart
	Size    int64             `json:"size"`
	ModNano int64             `json:"mod_nano"`
	Meta    map[string]string `json:"meta,omitempty"`
	Parts   []int64           `json:"parts,omitempty"` // sizes of a multipart object's parts
}

type objInfo struct {
	etag  string
	size  int64
	mod   time.Time
	meta  map[string]string
	parts []int64
}

func openBackend(dir string, log *slog.Logger) (*backend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fakeobs: create root: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fakeobs: open root: %w", err)
	}
	b := &backend{root: root, log: log, now: time.Now, uploadTTL: 7 * 24 * time.Hour,
		reserved: map[gofakes3.UploadID][]region{}, layout: map[gofakes3.UploadID]int64{},
		index: map[gofakes3.UploadID]map[int]partFile{}}
	// Temp files left by a crash belong to writes that were never
	// acknowledged: drop them.
	if err := root.RemoveAll(tmpDir); err != nil {
		root.Close()
		return nil, fmt.Errorf("fakeobs: clean temp dir: %w", err)
	}
	for _, d := range []string{metaDir, tmpDir, uploadsDir} {
		if err := root.MkdirAll(d, 0o700); err != nil {
			root.Close()
			return nil, fmt.Errorf("fakeobs: create %s: %w", d, err)
		}
	}
	return b, nil
}

func (b *backend) close() error { return b.root.Close() }

// keyLocks is a set of mutexes by name, created on demand and dropped when
// unused, so locking is per key rather than global.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyLocks) lock(name string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[name]
	if l == nil {
		l = &keyLock{}
		k.m[name] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, name)
		}
		k.mu.Unlock()
	}
}

// errKeyUnsupported is returned for keys that cannot be stored as a path
// inside the bucket (empty or dot segments) or that clash with another key
// on a file system ("a" and "a/b" cannot both exist).
func errKeyUnsupported(key, why string) error {
	return gofakes3.ErrorMessagef(gofakes3.ErrInvalidArgument, "key %q is not supported by this store: %s", key, why)
}

// checkKey rejects every key whose path could leave the bucket directory or
// that the file system cannot hold.
func checkKey(key string) error {
	if key == "" {
		return gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "empty key")
	}
	if len(key) > maxKeyLen {
		return gofakes3.ResourceError(gofakes3.ErrKeyTooLong, key)
	}
	if !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
		return errKeyUnsupported(key, "not valid UTF-8 or contains NUL")
	}
	segs := strings.Split(key, "/")
	for i, s := range segs {
		switch {
		case s == "" && i == len(segs)-1 && i > 0:
			// "folder/" keys are allowed: stored as a directory marker.
		case s == "":
			return errKeyUnsupported(key, "empty path segment")
		case s == "." || s == "..":
			return errKeyUnsupported(key, "'.' or '..' path segment")
		}
	}
	return nil
}

// errNoSuchKey is S3's NoSuchKey with its message (gofakes3's has none).
func errNoSuchKey() error {
	return gofakes3.ErrorMessage(gofakes3.ErrNoSuchKey, "The specified key does not exist.")
}

func checkBucketName(name string) error {
	if gofakes3.ValidateBucketName(name) != nil {
		return gofakes3.BucketNotFound(name)
	}
	return nil
}

func isDirKey(key string) bool { return strings.HasSuffix(key, "/") }

func sidecarPath(bucket, key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return path.Join(metaDir, bucket, h[:2], h)
}

// dataPath is where the bytes of key live.
func dataPath(bucket, key string) string {
	if isDirKey(key) {
		return sidecarPath(bucket, key) + ".data"
	}
	return bucket + "/" + diskKey(key)
}

func (b *backend) bucketExists(name string) (bool, error) {
	if checkBucketName(name) != nil {
		return false, nil
	}
	fi, err := b.root.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fakeobs: stat bucket %s: %w", name, err)
	}
	return fi.IsDir(), nil
}

func (b *backend) requireBucket(name string) error {
	ok, err := b.bucketExists(name)
	if err != nil {
		return err
	}
	if !ok {
		return gofakes3.BucketNotFound(name)
	}
	return nil
}

// ---- buckets ----

type bucketFile struct {
	Created time.Time `json:"created"`
}

func (b *backend) ListBuckets() ([]gofakes3.BucketInfo, error) {
	ents, err := fs.ReadDir(b.root.FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("fakeobs: list buckets: %w", err)
	}
	var out []gofakes3.BucketInfo
	for _, e := range ents {
		if !e.IsDir() || checkBucketName(e.Name()) != nil {
			continue
		}
		created := time.Time{}
		var bf bucketFile
		if raw, err := b.root.ReadFile(path.Join(metaDir, e.Name(), "bucket.json")); err == nil && json.Unmarshal(raw, &bf) == nil {
			created = bf.Created
		} else if fi, err := e.Info(); err == nil {
			created = fi.ModTime()
		}
		out = append(out, gofakes3.BucketInfo{Name: e.Name(), CreationDate: gofakes3.NewContentTime(created)})
	}
	return out, nil
}

func (b *backend) BucketExists(name string) (bool, error) { return b.bucketExists(name) }

func (b *backend) CreateBucket(name string) error {
	if err := gofakes3.ValidateBucketName(name); err != nil {
		return err
	}
	b.tree.Lock()
	defer b.tree.Unlock()
	if err := b.root.Mkdir(name, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return gofakes3.ErrorMessage(gofakes3.ErrBucketAlreadyExists, "The requested bucket name is not available")
		}
		return fmt.Errorf("fakeobs: create bucket %s: %w", name, err)
	}
	if err := b.mkdirAll(path.Join(metaDir, name)); err != nil {
		return fmt.Errorf("fakeobs: create bucket %s meta: %w", name, err)
	}
	raw, _ := json.Marshal(bucketFile{Created: b.now().UTC()})
	if err := b.writeFileAtomic(path.Join(metaDir, name, "bucket.json"), raw); err != nil {
		return err
	}
	return b.syncDir(".")
}

func (b *backend) DeleteBucket(name string) error {
	if err := b.requireBucket(name); err != nil {
		return err
	}
	b.tree.Lock()
	defer b.tree.Unlock()
	empty, err := b.bucketEmpty(name)
	if err != nil {
		return err
	}
	if !empty {
		return gofakes3.ErrorMessage(gofakes3.ErrBucketNotEmpty, "The bucket you tried to delete is not empty")
	}
	return b.removeBucket(name)
}

func (b *backend) ForceDeleteBucket(name string) error {
	if err := b.requireBucket(name); err != nil {
		return err
	}
	b.tree.Lock()
	defer b.tree.Unlock()
	return b.removeBucket(name)
}

func (b *backend) removeBucket(name string) error {
	// Its multipart uploads go with it.
	ups, err := b.allUploads()
	if err != nil {
		return err
	}
	for _, u := range ups {
		if u.u.Bucket == name {
			b.forgetLayout(u.id)
			if err := b.root.RemoveAll(uploadPath(u.id)); err != nil {
				return fmt.Errorf("fakeobs: remove upload %s of bucket %s: %w", u.id, name, err)
			}
		}
	}
	if err := b.root.RemoveAll(name); err != nil {
		return fmt.Errorf("fakeobs: remove bucket %s: %w", name, err)
	}
	if err := b.root.RemoveAll(path.Join(metaDir, name)); err != nil {
		return fmt.Errorf("fakeobs: remove bucket %s meta: %w", name, err)
	}
	return b.syncDir(".")
}

// bucketEmpty reports whether the bucket holds no object: no regular file in
// its tree and no "folder/" marker.
func (b *backend) bucketEmpty(name string) (bool, error) {
	empty := true
	err := fs.WalkDir(b.root.FS(), name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			empty = false
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("fakeobs: scan bucket %s: %w", name, err)
	}
	if !empty {
		return false, nil
	}
	// Only directories: any "folder/" marker among the sidecars?
	found := false
	err = fs.WalkDir(b.root.FS(), path.Join(metaDir, name), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".data") {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("fakeobs: scan bucket %s meta: %w", name, err)
	}
	return !found, nil
}

// ---- durable file helpers ----

// syncDir makes a rename or create inside dir durable.
func (b *backend) syncDir(dir string) error {
	if err := durable.SyncDirIn(b.root, dir); err != nil {
		return fmt.Errorf("fakeobs: %w", err)
	}
	return nil
}

// mkdirAll creates dir and its missing parents durably, so that an object
// renamed into a new folder survives a crash with the folder.
func (b *backend) mkdirAll(dir string) error { return durable.MkdirAllIn(b.root, dir, 0o700) }

func randomName() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}

// tempFile is a file being written under .tmp; remove it unless renamed.
type tempFile struct {
	b    *backend
	f    *os.File
	name string
	done bool

	written, flushed int64 // bytes written, and handed to writeback

	keep bool // not ours to remove on failure (an upload's data file)

	dw *directWriter // set when the data goes past the page cache
}

// writebackChunk is how much a temp file accumulates before its writeback
// is started.
const writebackChunk = 8 << 20

func (b *backend) createTemp() (*tempFile, error) {
	name := path.Join(tmpDir, randomName())
	f, err := b.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fakeobs: create temp file: %w", err)
	}
	return &tempFile{b: b, f: f, name: name}, nil
}

func (t *tempFile) Write(p []byte) (int, error) {
	if t.b.failWrite != nil {
		if err := t.b.failWrite(); err != nil {
			return 0, err
		}
	}
	if t.dw != nil {
		return t.dw.Write(p)
	}
	n, err := t.f.Write(p)
	t.written += int64(n)
	if t.written-t.flushed >= writebackChunk {
		startWriteback(t.f, t.flushed, t.written-t.flushed)
		t.flushed = t.written
	}
	return n, err
}

// finish fsyncs and closes the file and returns its size and mtime.
func (t *tempFile) finish() (int64, time.Time, error) {
	if t.dw != nil {
		err := t.dw.flush()
		t.dw.close()
		t.dw = nil
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("fakeobs: write temp file: %w", err)
		}
	}
	if err := t.f.Sync(); err != nil {
		return 0, time.Time{}, fmt.Errorf("fakeobs: sync temp file: %w", err)
	}
	fi, err := t.f.Stat()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("fakeobs: stat temp file: %w", err)
	}
	if err := t.f.Close(); err != nil {
		return 0, time.Time{}, fmt.Errorf("fakeobs: close temp file: %w", err)
	}
	return fi.Size(), fi.ModTime(), nil
}

// discard removes the temp file unless it was renamed into place.
func (t *tempFile) discard() {
	if t.dw != nil {
		t.dw.close()
		t.dw = nil
	}
	if t.done {
		return
	}
	t.f.Close()
	if t.keep {
		return
	}
	if err := t.b.root.Remove(t.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.b.log.Warn("fakeobs: remove temp file", "file", t.name, "err", err)
	}
}

func (b *backend) writeFileAtomic(name string, data []byte) error {
	return b.writeFile(name, data, true)
}

// writeFile replaces name atomically; durable adds the fsyncs that make the
// new content survive a crash. Without them a crash may leave the old file,
// none, or an unreadable one: fine for caches that are checked on read.
func (b *backend) writeFile(name string, data []byte, durable bool) error {
	t, err := b.createTemp()
	if err != nil {
		return err
	}
	defer t.discard()
	if _, err := t.Write(data); err != nil {
		return fmt.Errorf("fakeobs: write %s: %w", name, err)
	}
	if durable {
		if _, _, err := t.finish(); err != nil {
			return err
		}
	} else if err := t.f.Close(); err != nil {
		return fmt.Errorf("fakeobs: close %s: %w", name, err)
	}
	if err := b.mkdirAll(path.Dir(name)); err != nil {
		return fmt.Errorf("fakeobs: create dir for %s: %w", name, err)
	}
	if err := b.root.Rename(t.name, name); err != nil {
		return fmt.Errorf("fakeobs: rename %s: %w", name, err)
	}
	t.done = true
	if !durable {
		return nil
	}
	return b.syncDir(path.Dir(name))
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// bodyError keeps the error values of gofakes3 (bad digest, signature
// failures recorded by the auth layer) as they are: gofakes3 does not unwrap,
// and would turn a wrapped one into a 500.
func bodyError(err error) error {
	var ge gofakes3.Error
	if errors.As(err, &ge) {
		return ge
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return gofakes3.ErrIncompleteBody
	}
	return fmt.Errorf("fakeobs: read request body: %w", err)
}

// spool streams r into a new temp file, checking that it holds exactly size
// bytes (size < 0: any), and returns the file (not yet renamed) and its MD5.
func (b *backend) spool(r io.Reader, size int64) (*tempFile, []byte, error) {
	t, err := b.createTemp()
	if err != nil {
		return nil, nil, err
	}
	if size < 0 || size >= directMinSize {
		t.dw = b.newDirectWriter(t.name, t.f, 0)
	}
	sum, err := copyBody(t, r, size)
	if err != nil {
		t.discard()
		return nil, nil, err
	}
	return t, sum, nil
}

// copyBody copies a request body of exactly size bytes (size < 0: any) to
// w and returns its MD5.
func copyBody(w io.Writer, r io.Reader, size int64) ([]byte, error) {
	// gofakes3 already hashes a PUT body with MD5 (for Content-MD5 and the
	// ETag) and exposes the sum once the body has hit EOF: reuse it rather
	// than hash every byte twice.
	summer, preHashed := r.(interface{ Sum([]byte) []byte })
	if !preHashed && (size < 0 || size >= pipeMinSize) {
		return copyHashing(w, r, size)
	}
	var h hash.Hash = md5.New()
	if preHashed {
		h = nopHash{}
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size+1)
	}
	var n int64
	buf := *bufp
	for {
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				// Read the rest of the body so that the client, still
				// sending, gets the error response rather than a reset.
				_, _ = io.Copy(io.Discard, src)
				return nil, diskError("write object data", werr)
			}
			h.Write(buf[:m])
			n += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, bodyError(rerr)
		}
	}
	if size >= 0 && n != size {
		if n < size {
			return nil, gofakes3.ErrIncompleteBody
		}
		return nil, gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "request body longer than Content-Length")
	}
	if preHashed {
		return summer.Sum(nil), nil
	}
	return h.Sum(nil), nil
}

// nopHash stands in when the reader hashes for us.
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return md5.Size }
func (nopHash) BlockSize() int              { return md5.BlockSize }

// errStorageFull is S3's answer when the disk is full: gofakes3 knows no such
// code, so it renders as InternalError with this message (a 500, which S3
// clients retry).
var errStorageFull = gofakes3.ErrorMessage(gofakes3.ErrInternal, "the emulator's disk is full")

// diskError logs-friendly wraps a write failure; a full disk gets a clean
// message of its own.
func diskError(op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return errStorageFull
	}
	return fmt.Errorf("fakeobs: %s: %w", op, err)
}

// ---- objects ----

// storedMeta keeps the headers S3 returns with an object and drops those that
// describe only the request (auth, checksums, chunking).
func storedMeta(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		ck := http.CanonicalHeaderKey(k)
		switch {
		case strings.HasPrefix(ck, "X-Amz-Meta-"):
			out[ck] = storedValue(v)
		case strings.HasPrefix(ck, passedHeaderPrefix):
			// Headers gofakes3 drops, carried past it by route.
			if h := strings.TrimPrefix(ck, passedHeaderPrefix); passedHeaders[h] {
				out[h] = storedValue(v)
			}
		case ck == "Content-Type", ck == "Content-Disposition", ck == "Content-Language",
			ck == "Cache-Control", ck == "Expires", ck == "X-Amz-Website-Redirect-Location":
			out[ck] = v
		case ck == "Content-Encoding":
			if v = stripAWSChunked(v); v != "" {
				out[ck] = v
			}
		}
	}
	return out
}

func stripAWSChunked(v string) string {
	var keep []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" && p != "aws-chunked" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, ",")
}

func (b *backend) readSidecar(bucket, key string) (*sidecar, error) {
	raw, err := b.root.ReadFile(sidecarPath(bucket, key))
	if err != nil {
		return nil, err
	}
	var sc sidecar
	if err := json.Unmarshal(raw, &sc); err != nil {
		return nil, fmt.Errorf("fakeobs: parse sidecar of %s/%s: %w", bucket, key, err)
	}
	if sc.Key != key {
		return nil, fmt.Errorf("fakeobs: sidecar of %s/%s names %q", bucket, key, sc.Key)
	}
	return &sc, nil
}

// openObject opens the object's data and describes it. The file stays
// readable even if a later PUT renames over it. The caller closes it.
func (b *backend) openObject(bucket, key string) (*os.File, objInfo, error) {
	if err := b.requireBucket(bucket); err != nil {
		return nil, objInfo{}, err
	}
	if checkKey(key) != nil {
		return nil, objInfo{}, errNoSuchKey()
	}
	unlock := b.keys.lock(bucket + "/" + key)
	defer unlock()
	f, err := b.root.Open(dataPath(bucket, key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, objInfo{}, errNoSuchKey()
		}
		return nil, objInfo{}, fmt.Errorf("fakeobs: open %s/%s: %w", bucket, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, objInfo{}, fmt.Errorf("fakeobs: stat %s/%s: %w", bucket, key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, objInfo{}, errNoSuchKey()
	}
	info := objInfo{size: fi.Size(), mod: fi.ModTime()}
	sc, err := b.readSidecar(bucket, key)
	if err == nil && sc.Size == fi.Size() && sc.ModNano == fi.ModTime().UnixNano() {
		info.etag, info.meta, info.parts = sc.ETag, sc.Meta, sc.Parts
		return f, info, nil
	}
	// No sidecar (a file placed by hand) or a stale one: hash the file and
	// remember the result; the metadata of a stale sidecar no longer applies.
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		f.Close()
		return nil, objInfo{}, fmt.Errorf("fakeobs: hash %s/%s: %w", bucket, key, err)
	}
	info.etag = hex.EncodeToString(h.Sum(nil))
	info.meta = map[string]string{}
	raw, _ := json.Marshal(sidecar{Key: key, ETag: info.etag, Size: info.size, ModNano: fi.ModTime().UnixNano()})
	if err := b.writeFile(sidecarPath(bucket, key), raw, false); err != nil {
		b.log.Warn("fakeobs: cache sidecar", "bucket", bucket, "key", key, "err", err)
	}
	return f, info, nil
}

// etagHeader is the private header that carries a multipart ETag past
// gofakes3, which can only print an ETag made of one hash.
const etagHeader = "X-Malocal-Etag"

func (info objInfo) object(key string) *gofakes3.Object {
	meta := map[string]string{}
	for k, v := range info.meta {
		meta[k] = v
	}
	if meta["Content-Type"] == "" {
		meta["Content-Type"] = "binary/octet-stream"
	}
	meta["Last-Modified"] = info.mod.UTC().Format(http.TimeFormat)
	hash, err := hex.DecodeString(info.etag)
	if err != nil {
		hash, _ = hex.DecodeString(strings.SplitN(info.etag, "-", 2)[0])
		meta[etagHeader] = `"` + info.etag + `"`
	}
	return &gofakes3.Object{Name: key, Metadata: meta, Size: info.size, Hash: hash}
}

func (b *backend) GetObject(bucket, key string, rr *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	f, info, err := b.openObject(bucket, key)
	if err != nil {
		return nil, err
	}
	rng, err := rr.Range(info.size)
	if err != nil {
		f.Close()
		return nil, err
	}
	obj := info.object(key)
	obj.Range = rng
	start, n := int64(0), info.size
	if rng != nil {
		start, n = rng.Start, rng.Length
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("fakeobs: seek %s/%s: %w", bucket, key, err)
		}
	}
	obj.Contents = fileBody{&io.LimitedReader{R: f, N: n}, f}
	return obj, nil
}

// fileBody is an object's bytes as a LimitedReader over the open file,
// which the response writers below hand to net/http so that the kernel
// sends the file (sendfile) instead of copying it through user space.
type fileBody struct {
	*io.LimitedReader
	f *os.File
}

func (b fileBody) Close() error { return b.f.Close() }

// unwrapBody returns what net/http can sendfile from.
func unwrapBody(src io.Reader) io.Reader {
	if fb, ok := src.(fileBody); ok {
		return fb.LimitedReader
	}
	return src
}

func (b *backend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	f, info, err := b.openObject(bucket, key)
	if err != nil {
		return nil, err
	}
	f.Close()
	obj := info.object(key)
	obj.Contents = io.NopCloser(strings.NewReader(""))
	return obj, nil
}

func (b *backend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	if err := b.requireBucket(bucket); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	if err := checkKey(key); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	t, sum, err := b.spool(input, size)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	defer t.discard()
	return gofakes3.PutObjectResult{}, b.commit(bucket, key, t, hex.EncodeToString(sum), storedMeta(meta), cond, nil)
}

// commit moves a finished temp file into place as key, then its sidecar;
// parts are the part sizes of a multipart object.
func (b *backend) commit(bucket, key string, t *tempFile, etag string, meta map[string]string, cond *gofakes3.PutConditions, parts []int64) error {
	size, mod, err := t.finish()
	if err != nil {
		return diskError("finish object data", err)
	}
	unlock := b.keys.lock(bucket + "/" + key)
	defer unlock()
	b.tree.RLock()
	defer b.tree.RUnlock()
	// The bucket may have gone while the body streamed in.
	if fi, err := b.root.Stat(bucket); err != nil || !fi.IsDir() {
		return gofakes3.BucketNotFound(bucket)
	}
	if cond != nil {
		ci := gofakes3.ConditionalObjectInfo{}
		if fi, err := b.root.Lstat(dataPath(bucket, key)); err == nil && fi.Mode().IsRegular() {
			ci.Exists = true
			if sc, err := b.readSidecar(bucket, key); err == nil {
				ci.Hash, _ = hex.DecodeString(strings.SplitN(sc.ETag, "-", 2)[0])
			}
		}
		if err := gofakes3.CheckPutConditions(cond, &ci); err != nil {
			return err
		}
	}
	if err := b.ensureAliases(bucket, strings.TrimSuffix(key, "/")); err != nil {
		return err
	}
	dst := dataPath(bucket, key)
	if isDirKey(key) {
		// The directory makes "folder/" show up in listings.
		if err := b.mkdirs(bucket, strings.TrimSuffix(key, "/")); err != nil {
			return err
		}
		if err := b.mkdirAll(path.Dir(dst)); err != nil {
			return diskError("create sidecar dir", err)
		}
	} else {
		if err := b.mkdirs(bucket, path.Dir(key)); err != nil {
			return err
		}
		if fi, err := b.root.Lstat(dst); err == nil && fi.IsDir() {
			return errKeyUnsupported(key, "objects exist under \""+key+"/\"")
		}
	}
	if err := b.root.Rename(t.name, dst); err != nil {
		return diskError("rename object into place", err)
	}
	t.done = true
	if err := b.syncDir(path.Dir(dst)); err != nil {
		return err
	}
	raw, _ := json.Marshal(sidecar{Key: key, ETag: etag, Size: size, ModNano: mod.UnixNano(), Meta: meta, Parts: parts})
	// A sidecar that holds only the data's MD5 is a cache openObject can
	// rebuild: it needs no fsyncs of its own, which halves the cost of
	// small PUTs. Metadata and multipart ETags cannot be rebuilt.
	durable := len(meta) > 0 || strings.Contains(etag, "-")
	if err := b.writeFile(sidecarPath(bucket, key), raw, durable); err != nil {
		return diskError("write sidecar", err)
	}
	return nil
}

// mkdirs creates bucket/dir, reporting a key clash when a parent is a file.
func (b *backend) mkdirs(bucket, dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	err := b.mkdirAll(bucket + "/" + diskKey(dir))
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
		return errKeyUnsupported(dir+"/", "an object named like a parent folder exists")
	}
	return diskError("create object dir", err)
}

func (b *backend) DeleteObject(bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	if err := b.requireBucket(bucket); err != nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	return gofakes3.ObjectDeleteResult{}, b.deleteObject(bucket, key)
}

func (b *backend) deleteObject(bucket, key string) error {
	if checkKey(key) != nil {
		return nil // such a key cannot exist here; S3 answers success
	}
	unlock := b.keys.lock(bucket + "/" + key)
	defer unlock()
	b.tree.Lock()
	defer b.tree.Unlock()
	dst := dataPath(bucket, key)
	if fi, err := b.root.Lstat(dst); err == nil && !fi.IsDir() {
		if err := b.root.Remove(dst); err != nil {
			return fmt.Errorf("fakeobs: delete %s/%s: %w", bucket, key, err)
		}
		if err := b.syncDir(path.Dir(dst)); err != nil {
			return err
		}
	}
	if !isDirKey(key) {
		if err := b.dropAlias(bucket, dst); err != nil {
			return err
		}
	}
	if err := b.root.Remove(sidecarPath(bucket, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fakeobs: delete sidecar of %s/%s: %w", bucket, key, err)
	}
	dir := path.Dir(key)
	if isDirKey(key) {
		dir = strings.TrimSuffix(key, "/")
	}
	b.pruneDirs(bucket, dir)
	return nil
}

// pruneDirs removes now-empty directories from dir up to the bucket, but
// keeps those that are "folder/" objects themselves.
func (b *backend) pruneDirs(bucket, dir string) {
	for dir != "." && dir != "" && dir != "/" {
		if _, err := b.root.Stat(dataPath(bucket, dir+"/")); err == nil {
			return
		}
		disk := bucket + "/" + diskKey(dir)
		if err := b.root.Remove(disk); err != nil {
			return // not empty (or gone): stop
		}
		if strings.HasPrefix(path.Base(disk), aliasPrefix) {
			// The alias must be gone for good before its record goes, or a
			// crash could bring back an alias nobody can name.
			if err := b.syncDir(path.Dir(disk)); err != nil {
				b.log.Warn("fakeobs: prune", "bucket", bucket, "dir", dir, "err", err)
				return
			}
			if err := b.dropAlias(bucket, disk); err != nil {
				b.log.Warn("fakeobs: prune", "bucket", bucket, "dir", dir, "err", err)
			}
		}
		dir = path.Dir(dir)
	}
}

func (b *backend) DeleteMulti(bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	if err := b.requireBucket(bucket); err != nil {
		return res, err
	}
	for _, k := range keys {
		if err := b.deleteObject(bucket, k); err != nil {
			b.log.Error("fakeobs: delete", "bucket", bucket, "key", k, "err", err)
			res.Error = append(res.Error, gofakes3.ErrorResult{Key: k, Code: gofakes3.ErrInternal, Message: "delete failed"})
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	return res, nil
}

// CopyObject copies with meta as the new object's metadata (the HTTP layer
// decides between COPY and REPLACE before calling). Copying onto itself is
// safe: the data goes through a temp file.
func (b *backend) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	if err := b.requireBucket(dstBucket); err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	if err := checkKey(dstKey); err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	f, info, err := b.openObject(srcBucket, srcKey)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	defer f.Close()
	t, err := b.createTemp()
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	defer t.discard()
	// Straight file-to-file copy lets the kernel use copy_file_range.
	if b.failWrite != nil {
		_, err = io.Copy(t, io.LimitReader(f, info.size))
	} else {
		_, err = io.Copy(t.f, io.LimitReader(f, info.size))
	}
	if err != nil {
		return gofakes3.CopyObjectResult{}, diskError("copy object data", err)
	}
	if err := b.commit(dstBucket, dstKey, t, info.etag, storedMeta(meta), nil, nil); err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	return gofakes3.CopyObjectResult{ETag: `"` + info.etag + `"`, LastModified: gofakes3.NewContentTime(b.now())}, nil
}
