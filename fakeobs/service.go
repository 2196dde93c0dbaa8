package fakeobs

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
)

// Credentials are the one key pair the S3 API accepts.
type Credentials struct{ AccessKey, SecretKey, Region string }

// Option configures a Service.
type Option func(*options)

type options struct {
	creds Credentials
	keys  *KeyStore
	log   *slog.Logger
	now   func() time.Time
}

// WithCredentials sets the key pair requests must be signed with. Required.
func WithCredentials(c Credentials) Option { return func(o *options) { o.creds = c } }

// WithKeyStore adds the per-job keys of ks: requests signed with one are
// checked against its grants after their signature.
func WithKeyStore(ks *KeyStore) Option { return func(o *options) { o.keys = ks } }

// WithLogger sets where the service logs; by default it logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// withClock replaces the clock used for signature expiry (tests only).
func withClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Service is the S3 API over a directory.
type Service struct {
	opts    options
	b       *backend
	handler http.Handler

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New opens (creating it 0700 if missing) the object store at root.
func New(root string, opts ...Option) (*Service, error) {
	o := options{log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.creds.AccessKey == "" || o.creds.SecretKey == "" {
		return nil, errors.New("fakeobs: credentials are required (WithCredentials)")
	}
	if o.creds.Region == "" {
		o.creds.Region = "us-east-1"
	}
	if o.log == nil {
		return nil, errors.New("fakeobs: nil logger")
	}
	b, err := openBackend(root, o.log)
	if err != nil {
		return nil, err
	}
	s := &Service{opts: o, b: b, stop: make(chan struct{})}
	fake := gofakes3.New(b,
		gofakes3.WithLogger(slogAdapter{o.log}),
		gofakes3.WithTimeSkewLimit(0), // checked with the signature instead
		gofakes3.WithIntegrityCheck(true),
		gofakes3.WithoutVersioning(),
	)
	s.handler = s.authenticate(s.route(noCORS(fake.Server())))
	b.expireUploads()
	s.wg.Add(1)
	go s.expireLoop()
	return s, nil
}

// Handler serves the S3 API (path-style addressing).
func (s *Service) Handler() http.Handler { return s.handler }

// Close stops background work and releases the root directory.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		err = s.b.close()
	})
	return err
}

func (s *Service) expireLoop() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.b.expireUploads()
		}
	}
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Print(level gofakes3.LogLevel, v ...interface{}) {
	msg := "gofakes3: " + strings.TrimSpace(fmt.Sprintln(v...))
	switch level {
	case gofakes3.LogErr:
		a.l.Error(msg)
	case gofakes3.LogWarn:
		a.l.Warn(msg)
	default:
		a.l.Debug(msg)
	}
}

// ---- errors ----

type errorBody struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	Region    string   `xml:"Region,omitempty"`
	RequestID string   `xml:"RequestId,omitempty"`
}

// writeError is where every error this package answers itself (not via
// gofakes3) becomes S3's XML.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	body := errorBody{Resource: r.URL.Path}
	status := http.StatusInternalServerError
	var af *authFailure
	var ge gofakes3.Error
	var wr *wrongRegion
	switch {
	case errors.As(err, &wr):
		status, body.Code, body.Message, body.Region = http.StatusBadRequest, "AuthorizationHeaderMalformed",
			"The authorization header is malformed; the region '"+wr.got+"' is wrong; expecting '"+wr.want+"'", wr.want
	case errors.As(err, &af):
		status, body.Code, body.Message = af.status, af.code, af.message
	case errors.As(err, &ge):
		code := ge.ErrorCode()
		status, body.Code, body.Message = code.Status(), string(code), code.Message()
		var er *gofakes3.ErrorResponse
		if errors.As(err, &er) && er.Message != "" {
			body.Message = er.Message
		}
	default:
		log.Error("fakeobs: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		body.Code, body.Message = string(gofakes3.ErrInternal), "We encountered an internal error. Please try again."
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, xml.Header)
		_ = xml.NewEncoder(w).Encode(body)
	}
}

func writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/xml")
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
}

// ---- authentication ----

// bodyState records an authentication failure found while the body is read
// (a bad chunk signature, a payload hash mismatch). gofakes3 sees only a
// plain digest error; guardWriter then answers with the real one.
type bodyState struct {
	mu  sync.Mutex
	err *authFailure
}

func (b *bodyState) fail(f *authFailure) error {
	b.mu.Lock()
	if b.err == nil {
		b.err = f
	}
	b.mu.Unlock()
	return gofakes3.ErrBadDigest
}

func (b *bodyState) failure() *authFailure {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

type guardWriter struct {
	http.ResponseWriter
	r        *http.Request
	log      *slog.Logger
	st       *bodyState
	replaced bool
	wrote    bool
}

func (g *guardWriter) WriteHeader(code int) {
	if g.wrote {
		return
	}
	g.wrote = true
	if f := g.st.failure(); f != nil {
		g.replaced = true
		g.ResponseWriter.Header().Del("ETag")
		writeError(g.ResponseWriter, g.r, g.log, f)
		return
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *guardWriter) Write(p []byte) (int, error) {
	if !g.wrote {
		g.WriteHeader(http.StatusOK)
	}
	if g.replaced {
		return len(p), nil
	}
	return g.ResponseWriter.Write(p)
}

func (g *guardWriter) ReadFrom(src io.Reader) (int64, error) {
	if !g.wrote {
		g.WriteHeader(http.StatusOK)
	}
	if g.replaced {
		return io.Copy(io.Discard, src)
	}
	return readFrom(g.ResponseWriter, src)
}

func (g *guardWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// readFrom passes src down to the ResponseWriter's ReadFrom (sendfile for a
// file body), or copies.
func readFrom(w http.ResponseWriter, src io.Reader) (int64, error) {
	src = unwrapBody(src)
	if rf, ok := w.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(w, src)
}

type readCloser struct {
	io.Reader
	io.Closer
}

func (s *Service) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(err error) { writeError(w, r, s.opts.log, err) }
		if v2, ok := parseSigV2(r); ok {
			if af := s.checkV2(r, v2); af != nil {
				fail(af)
				return
			}
			if af := s.opts.keys.lookup(v2.accessKey).allowed(r); af != nil {
				fail(af)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		sr, signed, af := parseSignature(r)
		if af != nil {
			fail(af)
			return
		}
		if !signed {
			fail(accessDenied("Access Denied: sign requests with the emulator's credentials (see `malocal env`)"))
			return
		}
		secret, jk, af := s.secretOf(sr.accessKey)
		if af != nil {
			fail(af)
			return
		}
		if sr.region != s.opts.creds.Region {
			fail(&wrongRegion{sr.region, s.opts.creds.Region})
			return
		}
		now := s.opts.now()
		if sr.presigned {
			if now.Before(sr.amzDate.Add(-maxClockSkew)) {
				fail(accessDenied("Request is not valid yet"))
				return
			}
			if now.After(sr.amzDate.Add(sr.expires)) {
				fail(accessDenied("Request has expired"))
				return
			}
		} else if d := now.Sub(sr.amzDate); d > maxClockSkew || d < -maxClockSkew {
			fail(&authFailure{http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."})
			return
		}
		key, ok := sr.verify(r, secret)
		if !ok {
			fail(signatureMismatch())
			return
		}
		if af := jk.allowed(r); af != nil {
			fail(af)
			return
		}
		st := &bodyState{}
		switch p := sr.payloadHash; p {
		case unsignedPayload:
		case streamingSigned, streamingSignedTr, streamingUnsignTr:
			n, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
			if err != nil || n < 0 {
				fail(gofakes3.ErrMissingContentLength)
				return
			}
			r.Body = readCloser{newChunkedReader(r.Body, p != streamingUnsignTr, key, sr, st), r.Body}
			// From here on the request looks like a plain PUT to gofakes3.
			r.ContentLength = n
			r.Header.Set("Content-Length", strconv.FormatInt(n, 10))
			r.Header.Del("X-Amz-Decoded-Content-Length")
			r.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
			if ce := stripAWSChunked(r.Header.Get("Content-Encoding")); ce != "" {
				r.Header.Set("Content-Encoding", ce)
			} else {
				r.Header.Del("Content-Encoding")
			}
		default:
			if _, err := hex.DecodeString(p); err != nil || len(p) != 64 {
				fail(&authFailure{http.StatusBadRequest, "InvalidArgument", "unsupported x-amz-content-sha256: " + p})
				return
			}
			r.Body = readCloser{&sha256Reader{r: r.Body, h: sha256.New(), want: strings.ToLower(p), st: st}, r.Body}
		}
		next.ServeHTTP(&guardWriter{ResponseWriter: w, r: r, log: s.opts.log, st: st}, r)
	})
}

// secretOf returns the secret of an access key: the emulator's own, or a
// job's (with its key, whose grants the request must then pass).
func (s *Service) secretOf(accessKey string) (string, *jobKey, *authFailure) {
	if constEq(accessKey, s.opts.creds.AccessKey) {
		return s.opts.creds.SecretKey, nil, nil
	}
	if jk := s.opts.keys.lookup(accessKey); jk != nil {
		return jk.SecretKey, jk, nil
	}
	return "", nil, &authFailure{http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."}
}

// wrongRegion is a signature scoped to another region than the store's;
// S3 names the right one so that clients can retry there.
type wrongRegion struct{ got, want string }

func (e *wrongRegion) Error() string { return "signed for region " + e.got + ", not " + e.want }

func constEq(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// ---- routing around gofakes3's gaps ----

// Subresources we do not implement: S3 answers NotImplemented and nothing
// changes (gofakes3 would treat some as a plain object PUT and replace it).
var unimplemented = []string{
	"acl", "tagging", "policy", "policyStatus", "cors", "lifecycle", "website",
	"logging", "notification", "replication", "encryption", "ownershipControls",
	"publicAccessBlock", "object-lock", "legal-hold", "retention", "accelerate",
	"requestPayment", "analytics", "inventory", "metrics", "intelligent-tiering",
	"restore", "select", "torrent", "attributes",
}

func splitPath(p string) (bucket, key string) {
	p = strings.TrimPrefix(p, "/")
	bucket, key, _ = strings.Cut(p, "/")
	return bucket, key
}

func (s *Service) route(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucket, key := splitPath(r.URL.Path)
		q := r.URL.Query()
		fail := func(err error) { writeError(w, r, s.opts.log, err) }
		for _, sub := range unimplemented {
			if q.Has(sub) {
				fail(gofakes3.ErrorMessage(gofakes3.ErrNotImplemented, "?"+sub+" is not implemented by malocal's object store"))
				return
			}
		}
		passHeaders(r, key)
		switch {
		case q.Has("versioning") && r.Method != http.MethodGet:
			fail(gofakes3.ErrorMessage(gofakes3.ErrNotImplemented, "bucket versioning is not implemented by malocal's object store"))
		case r.Method == http.MethodPost && bucket != "" && key == "" && !q.Has("delete"):
			fail(gofakes3.ErrorMessage(gofakes3.ErrNotImplemented, "browser-form POST uploads are not implemented"))
		case r.Method == http.MethodPut && key != "" && r.Header.Get("X-Amz-Copy-Source") != "":
			if q.Get("uploadId") != "" {
				s.uploadPartCopy(w, r, bucket, key)
			} else {
				s.copyObject(w, r, bucket, key)
			}
		case r.Method == http.MethodGet && bucket != "" && key == "" && q.Has("versions"):
			s.listVersions(w, r, bucket)
		case r.Method == http.MethodGet && bucket == "":
			s.listBuckets(w, r)
		case r.Method == http.MethodGet && key == "" && q.Has("location"):
			s.bucketLocation(w, r, bucket)
		case r.Method == http.MethodGet && key == "" && !q.Has("uploads") && !q.Has("versioning"):
			s.listObjects(w, r, bucket)
		case r.Method == http.MethodPut && key == "" && len(q) == 0:
			s.createBucket(w, r, bucket, next)
		case r.Method == http.MethodPost && key == "" && q.Has("delete"):
			s.deleteMulti(w, r, bucket, next)
		case r.Method == http.MethodPost && key != "" && q.Get("uploadId") != "":
			s.completeMultipart(w, r, bucket, key)
		case r.Method == http.MethodPut && key != "" && r.ContentLength < 0 && len(q) == 0:
			s.putUnsized(w, r, bucket, key)
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && key != "" &&
			!q.Has("uploadId") && (q.Get("versionId") == "" || q.Get("versionId") == "null"):
			s.serveObject(w, r, bucket, key)
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && key != "":
			ew := &etagWriter{ResponseWriter: w}
			next.ServeHTTP(ew, r)
			ew.fix() // a HEAD may end without writing anything
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// etagWriter fixes object response headers gofakes3 gets wrong: a multipart
// ETag, which it cannot print, and the case of metadata names.
type etagWriter struct {
	http.ResponseWriter
	done bool
}

func (e *etagWriter) fix() {
	if e.done {
		return
	}
	e.done = true
	h := e.Header()
	if v := h.Get(etagHeader); v != "" {
		h.Set("ETag", v)
		h.Del(etagHeader)
	}
	// S3 sends user metadata names in lower case and clients (boto3) keep
	// the case they see; Go would send X-Amz-Meta-Name.
	for k, v := range h {
		if strings.HasPrefix(k, "X-Amz-Meta-") {
			delete(h, k)
			h[strings.ToLower(k)] = v
		}
	}
}

func (e *etagWriter) WriteHeader(code int) { e.fix(); e.ResponseWriter.WriteHeader(code) }

func (e *etagWriter) Write(p []byte) (int, error) { e.fix(); return e.ResponseWriter.Write(p) }

func (e *etagWriter) ReadFrom(src io.Reader) (int64, error) {
	e.fix()
	return readFrom(e.ResponseWriter, src)
}

func (e *etagWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

func parseCopySource(src string) (bucket, key string, err error) {
	src, _, _ = strings.Cut(src, "?") // versionId: only the current version exists
	dec, err := url.PathUnescape(src)
	if err != nil {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "x-amz-copy-source is not URL-encoded correctly")
	}
	bucket, key = splitPath(dec)
	if bucket == "" || key == "" {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "x-amz-copy-source must name bucket/key")
	}
	return bucket, key, nil
}

func requestMeta(r *http.Request) map[string]string {
	m := map[string]string{}
	for k, v := range r.Header {
		if len(v) > 0 {
			m[k] = v[0]
		}
	}
	return m
}

// checkCopyConditions applies x-amz-copy-source-if-(none-)match.
func checkCopyConditions(r *http.Request, etag string) error {
	if v := r.Header.Get("X-Amz-Copy-Source-If-Match"); v != "" && strings.Trim(v, `"`) != etag {
		return gofakes3.ErrPreconditionFailed
	}
	if v := r.Header.Get("X-Amz-Copy-Source-If-None-Match"); v != "" && strings.Trim(v, `"`) == etag {
		return gofakes3.ErrPreconditionFailed
	}
	return nil
}

func (s *Service) copyObject(w http.ResponseWriter, r *http.Request, bucket, key string) {
	fail := func(err error) { writeError(w, r, s.opts.log, err) }
	srcBucket, srcKey, err := parseCopySource(r.Header.Get("X-Amz-Copy-Source"))
	if err != nil {
		fail(err)
		return
	}
	directive := strings.ToUpper(r.Header.Get("X-Amz-Metadata-Directive"))
	if directive == "" {
		directive = "COPY"
	}
	if directive != "COPY" && directive != "REPLACE" {
		fail(gofakes3.ErrorMessage(gofakes3.ErrInvalidArgument, "x-amz-metadata-directive must be COPY or REPLACE"))
		return
	}
	if err := s.b.requireBucket(bucket); err != nil {
		fail(err)
		return
	}
	f, info, err := s.b.openObject(srcBucket, srcKey)
	if err != nil {
		fail(err)
		return
	}
	f.Close()
	if err := checkCopyConditions(r, info.etag); err != nil {
		fail(err)
		return
	}
	if srcBucket == bucket && srcKey == key && directive == "COPY" {
		fail(&authFailure{http.StatusBadRequest, "InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."})
		return
	}
	meta := info.meta
	if directive == "REPLACE" {
		meta = requestMeta(r)
	}
	res, err := s.b.CopyObject(srcBucket, srcKey, bucket, key, meta)
	if err != nil {
		fail(err)
		return
	}
	writeXML(w, res)
}

type copyPartResult struct {
	XMLName      xml.Name             `xml:"CopyPartResult"`
	ETag         string               `xml:"ETag"`
	LastModified gofakes3.ContentTime `xml:"LastModified"`
}

// uploadPartCopy is UploadPartCopy, which gofakes3 lacks: a part taken from
// (a byte range of) an existing object.
func (s *Service) uploadPartCopy(w http.ResponseWriter, r *http.Request, bucket, key string) {
	fail := func(err error) { writeError(w, r, s.opts.log, err) }
	q := r.URL.Query()
	id := gofakes3.UploadID(q.Get("uploadId"))
	num, err := strconv.Atoi(q.Get("partNumber"))
	if err != nil || num < 1 || num > gofakes3.MaxUploadPartNumber {
		fail(gofakes3.ErrInvalidPart)
		return
	}
	srcBucket, srcKey, err := parseCopySource(r.Header.Get("X-Amz-Copy-Source"))
	if err != nil {
		fail(err)
		return
	}
	if err := s.b.requireBucket(bucket); err != nil {
		fail(err)
		return
	}
	if _, err := s.b.loadUpload(bucket, key, id); err != nil {
		fail(err)
		return
	}
	f, info, err := s.b.openObject(srcBucket, srcKey)
	if err != nil {
		fail(err)
		return
	}
	defer f.Close()
	if err := checkCopyConditions(r, info.etag); err != nil {
		fail(err)
		return
	}
	start, length := int64(0), info.size
	if rs := r.Header.Get("X-Amz-Copy-Source-Range"); rs != "" {
		a, b, ok := strings.Cut(strings.TrimPrefix(rs, "bytes="), "-")
		first, err1 := strconv.ParseInt(a, 10, 64)
		last, err2 := strconv.ParseInt(b, 10, 64)
		if !strings.HasPrefix(rs, "bytes=") || !ok || err1 != nil || err2 != nil || first < 0 || last < first || last >= info.size {
			// S3 answers 400 here, not the 416 of a GET.
			fail(apiError(http.StatusBadRequest, "InvalidArgument", fmt.Sprintf(
				"The x-amz-copy-source-range value %q must be bytes=first-last within the source object of size %d", rs, info.size)))
			return
		}
		start, length = first, last-first+1
	}
	t, sum, err := s.b.spool(io.NewSectionReader(f, start, length), length)
	if err != nil {
		fail(err)
		return
	}
	defer t.discard()
	etag, err := s.b.putPart(id, num, t, hex.EncodeToString(sum))
	if err != nil {
		fail(err)
		return
	}
	writeXML(w, copyPartResult{ETag: etag, LastModified: gofakes3.NewContentTime(s.opts.now())})
}

// listVersions answers ListObjectVersions for our unversioned buckets: the
// current objects, each with VersionId "null", as S3 does; tools that empty
// buckets rely on it.
func (s *Service) listVersions(w http.ResponseWriter, r *http.Request, bucket string) {
	q := r.URL.Query()
	maxKeys := int64(gofakes3.DefaultMaxBucketVersionKeys)
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, r, s.opts.log, gofakes3.ErrorInvalidArgument("max-keys", v, "max-keys must be a non-negative integer"))
			return
		}
		maxKeys = min(n, gofakes3.MaxBucketVersionKeys)
	}
	lq := listQuery{prefix: q.Get("prefix"), delim: q.Get("delimiter"), marker: q.Get("key-marker"), max: maxKeys}
	res, err := s.b.list(bucket, lq)
	if err != nil {
		writeError(w, r, s.opts.log, err)
		return
	}
	out := &gofakes3.ListBucketVersionsResult{
		Xmlns: "http://s3.amazonaws.com/doc/2006-03-01/", Name: bucket,
		Prefix: lq.prefix, Delimiter: lq.delim, MaxKeys: maxKeys, KeyMarker: lq.marker,
		IsTruncated: res.truncated,
	}
	if res.truncated {
		out.NextKeyMarker, out.NextVersionIDMarker = res.next, "null"
	}
	for _, it := range res.items {
		if it.prefix {
			out.CommonPrefixes = append(out.CommonPrefixes, gofakes3.CommonPrefix{Prefix: it.key})
			continue
		}
		out.Versions = append(out.Versions, &gofakes3.Version{
			Key: it.key, VersionID: "null", IsLatest: true, LastModified: gofakes3.NewContentTime(it.info.mod),
			Size: it.info.size, StorageClass: "STANDARD", ETag: `"` + it.info.etag + `"`,
		})
	}
	writeXML(w, out)
}
