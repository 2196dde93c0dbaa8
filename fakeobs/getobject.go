package fakeobs

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/johannesboyne/gofakes3"
)

// apiError is an S3 error answered with the given status and code, for the
// codes gofakes3 does not know (EntityTooSmall, BucketAlreadyOwnedByYou…).
func apiError(status int, code, msg string) *authFailure { return &authFailure{status, code, msg} }

// serveObject answers GetObject and HeadObject itself, as S3 does: the
// conditional headers of RFC 9110 §13.2.2, lenient byte ranges (a suffix
// longer than the object is the whole object; a Range that does not parse is
// ignored), partNumber with x-amz-mp-parts-count, the response-* overrides,
// and metadata names in lower case with non-ASCII values RFC 2047-encoded.
func (s *Service) serveObject(w http.ResponseWriter, r *http.Request, bucket, key string) {
	fail := func(err error) { writeError(w, r, s.opts.log, err) }
	f, info, err := s.b.openObject(bucket, key)
	if err != nil {
		fail(err)
		return
	}
	defer f.Close()
	h := w.Header()
	etag := `"` + info.etag + `"`
	lastMod := info.mod.UTC().Format(http.TimeFormat)

	switch conditionalStatus(r, info.etag, info.mod) {
	case http.StatusPreconditionFailed:
		fail(gofakes3.ErrPreconditionFailed)
		return
	case http.StatusNotModified:
		h.Set("ETag", etag)
		h.Set("Last-Modified", lastMod)
		w.WriteHeader(http.StatusNotModified)
		return
	}

	q := r.URL.Query()
	start, length, partial := int64(0), info.size, false
	if pn := q.Get("partNumber"); pn != "" {
		n, err := strconv.Atoi(pn)
		if err != nil || n < 1 || n > gofakes3.MaxUploadPartNumber {
			fail(apiError(http.StatusBadRequest, "InvalidArgument", "partNumber must be an integer from 1 to 10000"))
			return
		}
		if r.Header.Get("Range") != "" {
			fail(apiError(http.StatusBadRequest, "InvalidRequest", "Cannot specify both Range header and partNumber query parameter"))
			return
		}
		switch {
		case len(info.parts) > 0 && n <= len(info.parts):
			for _, sz := range info.parts[:n-1] {
				start += sz
			}
			length, partial = info.parts[n-1], true
			h.Set("X-Amz-Mp-Parts-Count", strconv.Itoa(len(info.parts)))
		case len(info.parts) == 0 && n == 1:
			// A single-part object is its own part 1.
		default:
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(info.size, 10))
			fail(apiError(http.StatusRequestedRangeNotSatisfiable, "InvalidPartNumber", "The requested partnumber is not satisfiable"))
			return
		}
	} else if rs := r.Header.Get("Range"); rs != "" {
		a, n, ok, satisfiable := parseByteRange(rs, info.size)
		switch {
		case !ok:
			// RFC 9110 §14.2: a Range that does not parse is ignored.
		case !satisfiable:
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(info.size, 10))
			fail(gofakes3.ErrInvalidRange)
			return
		default:
			start, length, partial = a, n, true
		}
	}

	for k, v := range info.meta {
		switch {
		case strings.HasPrefix(k, "X-Amz-Meta-"):
			h[strings.ToLower(k)] = []string{headerValue(v)}
		default:
			h.Set(k, headerValue(v))
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "binary/octet-stream")
	}
	for qk, hk := range map[string]string{
		"response-content-type": "Content-Type", "response-content-language": "Content-Language",
		"response-expires": "Expires", "response-cache-control": "Cache-Control",
		"response-content-disposition": "Content-Disposition", "response-content-encoding": "Content-Encoding",
	} {
		if v := q.Get(qk); v != "" {
			h.Set(hk, v)
		}
	}
	h.Set("ETag", etag)
	h.Set("Last-Modified", lastMod)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(start+length-1, 10)+"/"+strconv.FormatInt(info.size, 10))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || length == 0 {
		return
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		s.opts.log.Warn("fakeobs: seek object", "bucket", bucket, "key", key, "err", err)
		return
	}
	if err := sendRange(w, f, start, length); err != nil {
		s.opts.log.Debug("fakeobs: send object", "bucket", bucket, "key", key, "err", err)
	}
}

// Large objects are written past the page cache (direct.go), so a GET
// reads them from disk, and the kernel's own read-ahead (128 KiB by
// default) keeps a disk busy with small reads: a 5 GiB GET ran at half
// MinIO's rate, which reads in large blocks. sendRange keeps
// readAheadWindow of the object on its way into the page cache ahead of
// the bytes being sent, and still sends them with sendfile.
const (
	readAheadWindow = 32 << 20
	readAheadChunk  = 4 << 20
)

// sendRange sends length bytes of f from start (f's offset is start).
func sendRange(w http.ResponseWriter, f *os.File, start, length int64) error {
	if length < 2*readAheadChunk {
		_, err := readFrom(w, &io.LimitedReader{R: f, N: length})
		return err
	}
	end := start + length
	adviseWillNeed(f, start, min(readAheadWindow, length))
	for off := start; off < end; {
		n := min(readAheadChunk, end-off)
		if ahead := off + readAheadWindow; ahead < end {
			adviseWillNeed(f, ahead, min(readAheadChunk, end-ahead))
		}
		sent, err := readFrom(w, &io.LimitedReader{R: f, N: n})
		if err != nil {
			return err
		}
		if sent != n {
			return fmt.Errorf("fakeobs: sent %d bytes of %d at %d: %w", sent, n, off, io.ErrUnexpectedEOF)
		}
		off += n
	}
	return nil
}

// headerValue is how S3 returns a stored header value: as it is when it is
// US-ASCII, else RFC 2047-encoded (UTF-8, base64).
func headerValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return mime.BEncoding.Encode("UTF-8", v)
		}
	}
	return v
}

// storedValue is how S3 keeps a header value it is sent: RFC 2047 words are
// decoded; bytes that are not UTF-8 are read as ISO-8859-1, the charset of
// HTTP/1.1 header text (Python's http.client sends "é" as one byte).
func storedValue(v string) string {
	if strings.Contains(v, "=?") {
		if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
			v = d
		}
	}
	if utf8.ValidString(v) {
		return v
	}
	var sb strings.Builder
	for i := 0; i < len(v); i++ {
		sb.WriteRune(rune(v[i]))
	}
	return sb.String()
}

// conditionalStatus evaluates If-Match, If-Unmodified-Since, If-None-Match
// and If-Modified-Since in the order of RFC 9110 §13.2.2, which is also
// S3's: 0 means serve the object.
func conditionalStatus(r *http.Request, etag string, mod time.Time) int {
	mod = mod.Truncate(time.Second)
	if im := r.Header.Get("If-Match"); im != "" {
		if !etagListHas(im, etag) {
			return http.StatusPreconditionFailed
		}
	} else if t, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && mod.After(t) {
		return http.StatusPreconditionFailed
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagListHas(inm, etag) {
			return http.StatusNotModified
		}
	} else if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !mod.After(t) {
		return http.StatusNotModified
	}
	return 0
}

// etagListHas reports whether a comma-separated list of (weak or strong)
// entity tags, or "*", names etag.
func etagListHas(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || strings.Trim(t, `"`) == etag {
			return true
		}
	}
	return false
}

// parseByteRange reads a single "bytes=" range of RFC 9110 §14.1.2 for an
// object of size bytes. ok is false when the header does not parse (or asks
// for several ranges), in which case it is ignored; satisfiable is false
// when it parses but selects nothing (416).
func parseByteRange(v string, size int64) (start, length int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 || b == "" || b[0] == '+' {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		n = min(n, size)
		return size - n, n, true, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 || a[0] == '+' {
		return 0, 0, false, false
	}
	last := size - 1
	if b != "" {
		l, err := strconv.ParseInt(b, 10, 64)
		if err != nil || l < first || b[0] == '+' {
			return 0, 0, false, false
		}
		last = min(l, size-1)
	}
	if first >= size {
		return 0, 0, true, false
	}
	return first, last - first + 1, true, true
}
