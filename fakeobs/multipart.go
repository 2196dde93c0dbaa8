package fakeobs

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// A multipart upload lives in .uploads/<id>/: upload.json names its bucket,
// key and metadata. A part is either its own file "p<number>-<md5hex>",
// renamed into place only when whole, or, in the common case of parts of
// one fixed size, written straight into the file "data" at its final offset
// and recorded in the part log (partlog.go) after the bytes are fsynced.
// Then completing the upload is a rename, not a second full write of the
// object. Either way parts survive a restart and a part's ETag never
// disagrees with its bytes: a region of "data" is only ever written by the
// one part that reserved it. Uploads begun by earlier versions recorded
// parts in place as empty marker files "i<number>-<md5hex>-<offset>-<size>";
// those are still read.

type uploadFile struct {
	Bucket    string            `json:"bucket"`
	Key       string            `json:"key"`
	Meta      map[string]string `json:"meta,omitempty"`
	Initiated time.Time         `json:"initiated"`
}

type partFile struct {
	number  int
	etag    string
	size    int64
	mod     time.Time
	name    string // the part's file or marker; "" for a part in the log
	inPlace bool   // bytes are in "data" at off
	off     int64  // when inPlace
}

const uploadData = "data"

func uploadPath(id gofakes3.UploadID) string { return path.Join(uploadsDir, string(id)) }

func validUploadID(id gofakes3.UploadID) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(string(id))
	return err == nil
}

func (b *backend) CreateMultipartUpload(bucket, key string, meta map[string]string) (gofakes3.UploadID, error) {
	if err := b.requireBucket(bucket); err != nil {
		return "", err
	}
	if err := checkKey(key); err != nil {
		return "", err
	}
	id := gofakes3.UploadID(randomName())
	if err := b.root.Mkdir(uploadPath(id), 0o700); err != nil {
		return "", diskError("create upload dir", err)
	}
	raw, _ := json.Marshal(uploadFile{Bucket: bucket, Key: key, Meta: storedMeta(meta), Initiated: b.now().UTC()})
	if err := b.writeFileAtomic(path.Join(uploadPath(id), "upload.json"), raw); err != nil {
		b.root.RemoveAll(uploadPath(id))
		return "", diskError("write upload", err)
	}
	return id, nil
}

func (b *backend) loadUpload(bucket, key string, id gofakes3.UploadID) (*uploadFile, error) {
	if !validUploadID(id) {
		return nil, gofakes3.ErrNoSuchUpload
	}
	raw, err := b.root.ReadFile(path.Join(uploadPath(id), "upload.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, gofakes3.ErrNoSuchUpload
	}
	if err != nil {
		return nil, fmt.Errorf("fakeobs: read upload %s: %w", id, err)
	}
	var u uploadFile
	if err := json.Unmarshal(raw, &u); err != nil {
		return nil, fmt.Errorf("fakeobs: parse upload %s: %w", id, err)
	}
	if u.Bucket != bucket || u.Key != key {
		return nil, gofakes3.ErrNoSuchUpload
	}
	return &u, nil
}

// parts lists the upload's parts by number; if a crash left two files for
// one number, the newer wins.
func (b *backend) parts(id gofakes3.UploadID) (map[int]partFile, error) {
	des, err := fs.ReadDir(b.root.FS(), uploadPath(id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, gofakes3.ErrNoSuchUpload
		}
		return nil, fmt.Errorf("fakeobs: list parts of %s: %w", id, err)
	}
	out, err := b.readPartLog(id)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = map[int]partFile{}
	}
	for _, d := range des {
		fi, err := d.Info()
		if err != nil {
			continue
		}
		var p partFile
		if num, etag, off, size, ok := parseMarkerName(d.Name()); ok {
			p = partFile{number: num, etag: etag, size: size, mod: fi.ModTime(), name: d.Name(), inPlace: true, off: off}
		} else if num, etag, ok := parsePartName(d.Name()); ok {
			p = partFile{number: num, etag: etag, size: fi.Size(), mod: fi.ModTime(), name: d.Name()}
		} else {
			continue
		}
		if old, ok := out[p.number]; !ok || p.mod.After(old.mod) {
			out[p.number] = p
		}
	}
	return out, nil
}

func partName(num int, etag string) string { return fmt.Sprintf("p%05d-%s", num, etag) }

func parsePartName(name string) (int, string, bool) {
	if !strings.HasPrefix(name, "p") {
		return 0, "", false
	}
	num, etag, ok := strings.Cut(name[1:], "-")
	if !ok || len(etag) != 32 {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > gofakes3.MaxUploadPartNumber {
		return 0, "", false
	}
	return n, etag, true
}

func parseMarkerName(name string) (num int, etag string, off, size int64, ok bool) {
	if !strings.HasPrefix(name, "i") {
		return 0, "", 0, 0, false
	}
	f := strings.Split(name[1:], "-")
	if len(f) != 4 || len(f[1]) != 32 {
		return 0, "", 0, 0, false
	}
	n, err1 := strconv.Atoi(f[0])
	o, err2 := strconv.ParseInt(f[2], 10, 64)
	sz, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || n < 1 || n > gofakes3.MaxUploadPartNumber || o < 0 || sz <= 0 {
		return 0, "", 0, 0, false
	}
	return n, f[1], o, sz, true
}

type region struct{ off, size int64 }

func (r region) overlaps(o region) bool { return r.off < o.off+o.size && o.off < r.off+r.size }

// reserveInPlace decides whether part num of size bytes can go straight
// into "data" at (num-1)×S, S being the upload's part size: read back from
// the parts already in place, or else taken from the first part to arrive
// (clients upload all parts but the last at one size, many at once). The
// part must be no larger than S, not uploaded before, and its region free.
// The reservation holds until release is called.
func (b *backend) reserveInPlace(id gofakes3.UploadID, num int, size int64) (int64, func(), bool) {
	if size <= 0 {
		return 0, nil, false
	}
	unlock := b.keys.lock("upload/" + string(id))
	defer unlock()
	ps, err := b.partIndex(id)
	if err != nil {
		return 0, nil, false
	}
	if _, ok := ps[num]; ok {
		return 0, nil, false // a re-upload goes to a file of its own
	}
	b.resMu.Lock()
	defer b.resMu.Unlock()
	partSize := b.layout[id]
	if partSize == 0 {
		// Read back from the parts in place (after a restart), else taken
		// from this first part.
		for _, p := range ps {
			switch {
			case !p.inPlace:
			case p.number > 1:
				partSize = p.off / int64(p.number-1)
			case partSize == 0:
				partSize = p.size
			}
		}
		if partSize == 0 {
			partSize = size
		}
		b.layout[id] = partSize
	}
	if size > partSize {
		return 0, nil, false
	}
	// Parts in place lie at (number-1)×S and are at most S long, so only a
	// part of the same number could overlap, and there is none; what is
	// left to check is the parts being written now.
	want := region{int64(num-1) * partSize, size}
	for _, r := range b.reserved[id] {
		if want.overlaps(r) {
			return 0, nil, false
		}
	}
	b.reserved[id] = append(b.reserved[id], want)
	release := func() {
		b.resMu.Lock()
		defer b.resMu.Unlock()
		rs := b.reserved[id]
		for i, r := range rs {
			if r == want {
				rs = append(rs[:i], rs[i+1:]...)
				break
			}
		}
		if len(rs) == 0 {
			delete(b.reserved, id)
		} else {
			b.reserved[id] = rs
		}
	}
	return want.off, release, true
}

// partIndex is the upload's parts by number, read from its directory once
// and then kept up to date in memory, so that a part costs no directory
// listing. The caller holds the upload's lock.
func (b *backend) partIndex(id gofakes3.UploadID) (map[int]partFile, error) {
	b.resMu.Lock()
	ps, ok := b.index[id]
	b.resMu.Unlock()
	if ok {
		return ps, nil
	}
	ps, err := b.parts(id)
	if err != nil {
		return nil, err
	}
	b.resMu.Lock()
	b.index[id] = ps
	b.resMu.Unlock()
	return ps, nil
}

// forgetLayout drops the in-memory part size of a finished upload.
func (b *backend) forgetLayout(id gofakes3.UploadID) {
	b.resMu.Lock()
	delete(b.layout, id)
	delete(b.index, id)
	b.resMu.Unlock()
}

// Bounds of what allocateAhead allocates past the part that asks: at
// least allocAheadParts parts of the upload's size and allocAheadMin, at
// most allocAheadMax (freed when the upload completes or is aborted).
const (
	allocAheadParts = 16
	allocAheadMin   = 128 << 20
	allocAheadMax   = 1 << 30
)

// allocateAhead makes sure the upload's data file is allocated up to end,
// allocating well past it when it is not. fallocate takes the file's inode
// lock exclusively and waits for every direct write under way, and the
// writes that arrive meanwhile queue behind it: with one fallocate per
// part, ten parts written at once kept stalling one another (traced under
// a mixed load: 4-6 s of a 12 s upload's thread time waited there). Now
// one part in allocAheadParts or more allocates, the others find the space
// there.
func (b *backend) allocateAhead(id gofakes3.UploadID, f *os.File, end int64) {
	// The file's size is what is allocated: preallocate grows it, and
	// parts are written only inside it.
	size := func() (int64, error) {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	if have, err := size(); err != nil || have >= end {
		return
	}
	b.allocMu.Lock()
	defer b.allocMu.Unlock()
	have, err := size()
	if err != nil || have >= end { // allocated by another part meanwhile
		return
	}
	b.resMu.Lock()
	partSize := b.layout[id]
	b.resMu.Unlock()
	upTo := end + min(max(allocAheadParts*partSize, allocAheadMin), allocAheadMax)
	preallocate(f, have, upTo-have)
}

// regionWriter writes sequentially into f from off.
type regionWriter struct {
	b                   *backend
	f                   *os.File
	start, off, flushed int64
}

func (w *regionWriter) Write(p []byte) (int, error) {
	if w.b.failWrite != nil {
		if err := w.b.failWrite(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	if w.off-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, w.off-w.flushed)
		w.flushed = w.off
	}
	return n, err
}

func (b *backend) uploadPartInPlace(id gofakes3.UploadID, num int, off, size int64, input io.Reader) (string, error) {
	name := path.Join(uploadPath(id), uploadData)
	f, err := b.root.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", gofakes3.ErrNoSuchUpload
		}
		return "", diskError("open upload data", err)
	}
	defer f.Close()
	b.allocateAhead(id, f, off+size)
	var w io.Writer = &regionWriter{b: b, f: f, start: off, off: off, flushed: off}
	var dw *directWriter
	if size >= directMinSize {
		dw = b.newDirectWriter(name, f, off)
	}
	if dw != nil {
		defer dw.close()
		w = dw
	}
	sum, err := copyBody(w, input, size)
	if err != nil {
		return "", err
	}
	if dw != nil {
		if err := dw.flush(); err != nil {
			return "", diskError("write upload data", err)
		}
	}
	if err := syncData(f); err != nil {
		return "", diskError("sync upload data", err)
	}
	etag := hex.EncodeToString(sum)
	unlock := b.keys.lock("upload/" + string(id))
	defer unlock()
	ps, err := b.partIndex(id)
	if err != nil {
		return "", err // aborted meanwhile
	}
	p := partFile{number: num, etag: etag, size: size, mod: b.now(), inPlace: true, off: off}
	if err := b.writePartSlot(id, num, encodePartSlot(p)); err != nil {
		return "", err
	}
	b.replacePart(id, ps, p)
	return `"` + etag + `"`, nil
}

func (b *backend) UploadPart(bucket, key string, id gofakes3.UploadID, partNumber int, contentLength int64, input io.Reader) (string, error) {
	if _, err := b.loadUpload(bucket, key, id); err != nil {
		return "", err
	}
	if partNumber < 1 || partNumber > gofakes3.MaxUploadPartNumber {
		return "", gofakes3.ErrInvalidPart
	}
	if off, release, ok := b.reserveInPlace(id, partNumber, contentLength); ok {
		defer release()
		return b.uploadPartInPlace(id, partNumber, off, contentLength, input)
	}
	t, sum, err := b.spool(input, contentLength)
	if err != nil {
		return "", err
	}
	defer t.discard()
	return b.putPart(id, partNumber, t, hex.EncodeToString(sum))
}

func (b *backend) putPart(id gofakes3.UploadID, partNumber int, t *tempFile, etag string) (string, error) {
	if _, _, err := t.finish(); err != nil {
		return "", diskError("finish part", err)
	}
	unlock := b.keys.lock("upload/" + string(id))
	defer unlock()
	ps, err := b.partIndex(id)
	if err != nil {
		return "", err // aborted meanwhile
	}
	name := partName(partNumber, etag)
	if err := b.root.Rename(t.name, path.Join(uploadPath(id), name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", gofakes3.ErrNoSuchUpload
		}
		return "", diskError("rename part into place", err)
	}
	t.done = true
	if err := b.syncDir(uploadPath(id)); err != nil {
		return "", err
	}
	fi, err := b.root.Stat(path.Join(uploadPath(id), name))
	if err != nil {
		return "", fmt.Errorf("fakeobs: stat part: %w", err)
	}
	b.replacePart(id, ps, partFile{number: partNumber, etag: etag, size: fi.Size(), mod: fi.ModTime(), name: name})
	return `"` + etag + `"`, nil
}

// replacePart records p as the upload's part p.number, the one sent last,
// and removes the file or clears the log slot of the part it replaces. The
// caller holds the upload's lock.
func (b *backend) replacePart(id gofakes3.UploadID, ps map[int]partFile, p partFile) {
	if old, ok := ps[p.number]; ok {
		switch {
		case old.inPlace && old.name == "":
			if err := b.writePartSlot(id, old.number, make([]byte, partSlotSize)); err != nil {
				b.log.Warn("fakeobs: clear replaced part", "upload", id, "part", old.number, "err", err)
			}
		case old.name != p.name:
			if err := b.root.Remove(path.Join(uploadPath(id), old.name)); err != nil {
				b.log.Warn("fakeobs: remove replaced part", "upload", id, "part", old.name, "err", err)
			}
		}
	}
	ps[p.number] = p
}

func (b *backend) ListParts(bucket, key string, id gofakes3.UploadID, marker int, limit int64) (*gofakes3.ListMultipartUploadPartsResult, error) {
	if _, err := b.loadUpload(bucket, key, id); err != nil {
		return nil, err
	}
	unlock := b.keys.lock("upload/" + string(id))
	ps, err := b.partIndex(id)
	if err != nil {
		unlock()
		return nil, err
	}
	ps = maps.Clone(ps)
	unlock()
	nums := make([]int, 0, len(ps))
	for n := range ps {
		if n > marker {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	if limit <= 0 {
		limit = gofakes3.DefaultMaxUploadParts
	}
	res := &gofakes3.ListMultipartUploadPartsResult{
		Bucket: bucket, Key: key, UploadID: id, StorageClass: "STANDARD",
		PartNumberMarker: marker, MaxParts: limit,
	}
	for i, n := range nums {
		if int64(i) == limit {
			res.IsTruncated = true
			break
		}
		p := ps[n]
		res.Parts = append(res.Parts, gofakes3.ListMultipartUploadPartItem{
			PartNumber: n, ETag: `"` + p.etag + `"`, Size: p.size, LastModified: gofakes3.NewContentTime(p.mod),
		})
		res.NextPartNumberMarker = n
	}
	return res, nil
}

type uploadEntry struct {
	id gofakes3.UploadID
	u  uploadFile
}

func (b *backend) allUploads() ([]uploadEntry, error) {
	des, err := fs.ReadDir(b.root.FS(), uploadsDir)
	if err != nil {
		return nil, fmt.Errorf("fakeobs: list uploads: %w", err)
	}
	var out []uploadEntry
	for _, d := range des {
		id := gofakes3.UploadID(d.Name())
		if !d.IsDir() || !validUploadID(id) {
			continue
		}
		raw, err := b.root.ReadFile(path.Join(uploadPath(id), "upload.json"))
		if err != nil {
			continue // being created or aborted
		}
		var u uploadFile
		if json.Unmarshal(raw, &u) != nil {
			continue
		}
		out = append(out, uploadEntry{id, u})
	}
	return out, nil
}

func (b *backend) ListMultipartUploads(bucket string, marker *gofakes3.UploadListMarker, prefix gofakes3.Prefix, limit int64) (*gofakes3.ListMultipartUploadsResult, error) {
	if err := b.requireBucket(bucket); err != nil {
		return nil, err
	}
	all, err := b.allUploads()
	if err != nil {
		return nil, err
	}
	var ups []uploadEntry
	for _, e := range all {
		if e.u.Bucket == bucket && strings.HasPrefix(e.u.Key, prefix.Prefix) {
			ups = append(ups, e)
		}
	}
	sort.Slice(ups, func(i, j int) bool {
		a, c := ups[i], ups[j]
		if a.u.Key != c.u.Key {
			return a.u.Key < c.u.Key
		}
		if !a.u.Initiated.Equal(c.u.Initiated) {
			return a.u.Initiated.Before(c.u.Initiated)
		}
		return a.id < c.id
	})
	res := &gofakes3.ListMultipartUploadsResult{Bucket: bucket, MaxUploads: limit, Prefix: prefix.Prefix, Delimiter: prefix.Delimiter}
	if marker != nil {
		res.KeyMarker, res.UploadIDMarker = marker.Object, marker.UploadID
	}
	seenCP := map[string]bool{}
	var n int64
	for _, e := range ups {
		if marker != nil && marker.Object != "" {
			if e.u.Key < marker.Object {
				continue
			}
			if e.u.Key == marker.Object && (marker.UploadID == "" || e.id <= marker.UploadID) {
				continue
			}
		}
		if n == limit {
			res.IsTruncated = true
			break
		}
		if prefix.HasDelimiter && prefix.Delimiter != "" {
			rest := e.u.Key[len(prefix.Prefix):]
			if i := strings.Index(rest, prefix.Delimiter); i >= 0 {
				cp := prefix.Prefix + rest[:i+len(prefix.Delimiter)]
				if !seenCP[cp] {
					seenCP[cp] = true
					res.CommonPrefixes = append(res.CommonPrefixes, gofakes3.CommonPrefix{Prefix: cp})
					n++
				}
				continue
			}
		}
		res.Uploads = append(res.Uploads, gofakes3.ListMultipartUploadItem{
			Key: e.u.Key, UploadID: e.id, StorageClass: "STANDARD", Initiated: gofakes3.NewContentTime(e.u.Initiated),
		})
		res.NextKeyMarker, res.NextUploadIDMarker = e.u.Key, e.id
		n++
	}
	return res, nil
}

func (b *backend) AbortMultipartUpload(bucket, key string, id gofakes3.UploadID) error {
	if _, err := b.loadUpload(bucket, key, id); err != nil {
		return err
	}
	unlock := b.keys.lock("upload/" + string(id))
	defer unlock()
	b.forgetLayout(id)
	if err := b.root.RemoveAll(uploadPath(id)); err != nil {
		return fmt.Errorf("fakeobs: abort upload %s: %w", id, err)
	}
	return b.syncDir(uploadsDir)
}

// minPartSize is the smallest size of a part that is not the last: OBS's
// 100 KB (S3's is 5 MiB).
const minPartSize = 100 << 10

// doneFile is what a completed upload leaves behind, so that a repeated
// CompleteMultipartUpload (a client's retry) answers as the first did.
type doneFile struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	ETag   string `json:"etag"`
}

func donePath(id gofakes3.UploadID) string { return uploadPath(id) + ".done" }

func (b *backend) CompleteMultipartUpload(bucket, key string, id gofakes3.UploadID, in *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	if !validUploadID(id) {
		return "", "", gofakes3.ErrNoSuchUpload
	}
	unlock := b.keys.lock("upload/" + string(id))
	defer unlock()
	u, err := b.loadUpload(bucket, key, id)
	if gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchUpload) {
		var d doneFile
		if raw, rerr := b.root.ReadFile(donePath(id)); rerr == nil && json.Unmarshal(raw, &d) == nil && d.Bucket == bucket && d.Key == key {
			return "", `"` + d.ETag + `"`, nil
		}
	}
	if err != nil {
		return "", "", err
	}
	ps, err := b.partIndex(id)
	if err != nil {
		return "", "", err
	}
	if len(in.Parts) == 0 {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "no parts given")
	}
	var chosen []partFile
	var sizes []int64
	etags := md5.New()
	last := 0
	for i, cp := range in.Parts {
		if cp.PartNumber <= last {
			return "", "", gofakes3.ErrInvalidPartOrder
		}
		last = cp.PartNumber
		p, ok := ps[cp.PartNumber]
		if !ok || strings.Trim(cp.ETag, `"`) != p.etag {
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d is missing or its ETag does not match", cp.PartNumber)
		}
		if i < len(in.Parts)-1 && p.size < minPartSize {
			return "", "", apiError(http.StatusBadRequest, "EntityTooSmall",
				fmt.Sprintf("Your proposed upload is smaller than the minimum allowed object size: part %d is %d bytes; every part but the last must be at least 100 KB (102400 bytes)", cp.PartNumber, p.size))
		}
		raw, _ := hex.DecodeString(p.etag)
		etags.Write(raw)
		chosen = append(chosen, p)
		sizes = append(sizes, p.size)
	}
	t, err := b.assemble(id, chosen)
	if err != nil {
		return "", "", err
	}
	defer t.discard()
	etag := fmt.Sprintf("%s-%d", hex.EncodeToString(etags.Sum(nil)), len(chosen))
	if err := b.commit(bucket, key, t, etag, u.Meta, nil, sizes); err != nil {
		return "", "", err
	}
	b.forgetLayout(id)
	raw, _ := json.Marshal(doneFile{Bucket: bucket, Key: key, ETag: etag})
	if err := b.writeFile(donePath(id), raw, false); err != nil {
		b.log.Warn("fakeobs: record completed upload", "upload", id, "err", err)
	}
	if err := b.root.RemoveAll(uploadPath(id)); err != nil {
		b.log.Warn("fakeobs: remove completed upload", "upload", id, "err", err)
	}
	return "", `"` + etag + `"`, nil
}

// assemble returns a file holding the chosen parts in order: "data" itself
// when they already lie there back to back, else a new temp file they are
// copied into (file to file: nothing is held in memory).
func (b *backend) assemble(id gofakes3.UploadID, chosen []partFile) (*tempFile, error) {
	var total int64
	contiguous := true
	for _, p := range chosen {
		contiguous = contiguous && p.inPlace && p.off == total
		total += p.size
	}
	// A part still being written in place (one the client left out, or a
	// retry) holds an open handle on "data": renaming "data" into the bucket
	// would let it write into the finished object. Copy instead.
	b.resMu.Lock()
	inFlight := len(b.reserved[id]) > 0
	b.resMu.Unlock()
	dataName := path.Join(uploadPath(id), uploadData)
	if contiguous && !inFlight {
		f, err := b.root.OpenFile(dataName, os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("fakeobs: open upload data: %w", err)
		}
		// Parts not chosen, or a re-uploaded larger last part, may lie beyond.
		if err := f.Truncate(total); err != nil {
			f.Close()
			return nil, diskError("truncate upload data", err)
		}
		// If the commit fails, the parts must stay for another try.
		return &tempFile{b: b, f: f, name: dataName, keep: true}, nil
	}
	t, err := b.createTemp()
	if err != nil {
		return nil, err
	}
	for _, p := range chosen {
		if p.inPlace {
			err = b.appendRange(t, dataName, p.off, p.size)
		} else {
			err = b.appendRange(t, path.Join(uploadPath(id), p.name), 0, p.size)
		}
		if err != nil {
			t.discard()
			return nil, err
		}
	}
	return t, nil
}

func (b *backend) appendRange(t *tempFile, name string, off, size int64) error {
	f, err := b.root.Open(name)
	if err != nil {
		return fmt.Errorf("fakeobs: open part %s: %w", name, err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("fakeobs: seek part %s: %w", name, err)
	}
	var n int64
	// A LimitedReader over the file lets the kernel copy (copy_file_range).
	if b.failWrite != nil {
		n, err = io.Copy(t, io.LimitReader(f, size))
	} else {
		n, err = io.Copy(t.f, io.LimitReader(f, size))
	}
	if err != nil {
		return diskError("concatenate parts", err)
	}
	if n != size {
		return fmt.Errorf("fakeobs: part %s holds %d bytes at %d, want %d", name, n, off, size)
	}
	return nil
}

// expireUploads removes uploads initiated more than uploadTTL ago, as S3's
// lifecycle rule AbortIncompleteMultipartUpload would.
func (b *backend) expireUploads() {
	all, err := b.allUploads()
	if err != nil {
		b.log.Warn("fakeobs: expire uploads", "err", err)
		return
	}
	cutoff := b.now().Add(-b.uploadTTL)
	if des, err := fs.ReadDir(b.root.FS(), uploadsDir); err == nil {
		for _, d := range des {
			if fi, err := d.Info(); err == nil && strings.HasSuffix(d.Name(), ".done") && fi.ModTime().Before(cutoff) {
				_ = b.root.Remove(path.Join(uploadsDir, d.Name()))
			}
		}
	}
	for _, e := range all {
		if e.u.Initiated.Before(cutoff) {
			unlock := b.keys.lock("upload/" + string(e.id))
			b.forgetLayout(e.id)
			if err := b.root.RemoveAll(uploadPath(e.id)); err != nil {
				b.log.Warn("fakeobs: expire upload", "upload", e.id, "err", err)
			} else {
				b.log.Info("fakeobs: expired stale multipart upload", "upload", e.id, "bucket", e.u.Bucket, "key", e.u.Key)
			}
			unlock()
		}
	}
}
