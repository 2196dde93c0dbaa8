package fakeobs

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/johannesboyne/gofakes3"
)

// The handlers here answer, in place of gofakes3, the requests where S3's
// behaviour differs from what gofakes3 does.

const (
	s3Xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"

	// maxDeleteKeys is S3's limit on keys in one DeleteObjects request.
	maxDeleteKeys = 1000
	// maxCompleteBody bounds a CompleteMultipartUpload body: 10,000 parts,
	// each with its checksums, fit well within it.
	maxCompleteBody = 10 << 20
	// maxDeleteBody bounds a DeleteObjects body (1,000 keys of 1,024 bytes).
	maxDeleteBody = 2 << 20
)

// passedHeaderPrefix carries the object headers S3 stores but gofakes3
// drops (it keeps only X-Amz-*, Content-Type, -Disposition and -Encoding)
// past gofakes3 to the backend.
const passedHeaderPrefix = "X-Amz-Malocal-Pass-"

var passedHeaders = map[string]bool{"Cache-Control": true, "Expires": true, "Content-Language": true}

// passHeaders renames, on object writes, the headers gofakes3 would drop;
// storedMeta maps them back. A client cannot smuggle its own: any header of
// that prefix it sends is removed first.
func passHeaders(r *http.Request, key string) {
	for k := range r.Header {
		if strings.HasPrefix(k, passedHeaderPrefix) {
			r.Header.Del(k)
		}
	}
	if key == "" || (r.Method != http.MethodPut && r.Method != http.MethodPost) {
		return
	}
	for h := range passedHeaders {
		if v := r.Header.Get(h); v != "" {
			r.Header.Set(passedHeaderPrefix+h, v)
		}
	}
}

type owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName"`
}

var storeOwner = owner{ID: "malocal", DisplayName: "malocal"}

type bucketEntry struct {
	Name         string               `xml:"Name"`
	CreationDate gofakes3.ContentTime `xml:"CreationDate"`
}

type listBucketsResult struct {
	XMLName           xml.Name      `xml:"ListAllMyBucketsResult"`
	Xmlns             string        `xml:"xmlns,attr"`
	Owner             owner         `xml:"Owner"`
	Buckets           []bucketEntry `xml:"Buckets>Bucket"`
	ContinuationToken string        `xml:"ContinuationToken,omitempty"`
	Prefix            string        `xml:"Prefix,omitempty"`
}

// listBuckets is ListBuckets with max-buckets, continuation-token and prefix.
func (s *Service) listBuckets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max := 10000
	if v := q.Get("max-buckets"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, r, s.opts.log, apiError(http.StatusBadRequest, "InvalidArgument", "max-buckets must be an integer from 1 to 10000"))
			return
		}
		max = n
	}
	after := ""
	if tok := q.Get("continuation-token"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			writeError(w, r, s.opts.log, apiError(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect"))
			return
		}
		after = string(raw)
	}
	all, err := s.b.ListBuckets()
	if err != nil {
		writeError(w, r, s.opts.log, err)
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	res := listBucketsResult{Xmlns: s3Xmlns, Owner: storeOwner, Prefix: q.Get("prefix"), Buckets: []bucketEntry{}}
	for _, b := range all {
		if b.Name <= after || !strings.HasPrefix(b.Name, res.Prefix) {
			continue
		}
		if len(res.Buckets) == max {
			res.ContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(res.Buckets[max-1].Name))
			break
		}
		res.Buckets = append(res.Buckets, bucketEntry{Name: b.Name, CreationDate: b.CreationDate})
	}
	writeXML(w, res)
}

type locationResult struct {
	XMLName xml.Name `xml:"LocationConstraint"`
	Xmlns   string   `xml:"xmlns,attr"`
	Region  string   `xml:",chardata"`
}

// bucketLocation is GetBucketLocation: the store's region, empty for
// us-east-1 as S3 answers.
func (s *Service) bucketLocation(w http.ResponseWriter, r *http.Request, bucket string) {
	if err := s.b.requireBucket(bucket); err != nil {
		writeError(w, r, s.opts.log, err)
		return
	}
	region := s.opts.creds.Region
	if region == "us-east-1" {
		region = ""
	}
	writeXML(w, locationResult{Xmlns: s3Xmlns, Region: region})
}

// createBucket answers BucketAlreadyOwnedByYou (409, as OBS does) for a
// bucket that exists: this store has a single owner.
func (s *Service) createBucket(w http.ResponseWriter, r *http.Request, bucket string, next http.Handler) {
	ok, err := s.b.bucketExists(bucket)
	if err != nil {
		writeError(w, r, s.opts.log, err)
		return
	}
	if ok {
		writeError(w, r, s.opts.log, errBucketOwned)
		return
	}
	next.ServeHTTP(w, r)
}

var errBucketOwned = apiError(http.StatusConflict, "BucketAlreadyOwnedByYou",
	"Your previous request to create the named bucket succeeded and you already own it.")

// deleteMulti refuses a DeleteObjects request of more than 1,000 keys, as
// S3 does, and hands the others to gofakes3.
func (s *Service) deleteMulti(w http.ResponseWriter, r *http.Request, bucket string, next http.Handler) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDeleteBody+1))
	if err != nil {
		writeError(w, r, s.opts.log, bodyError(err))
		return
	}
	if len(body) > maxDeleteBody {
		writeError(w, r, s.opts.log, gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "the DeleteObjects body is larger than 2 MiB"))
		return
	}
	var in gofakes3.DeleteRequest
	if err := xml.Unmarshal(body, &in); err != nil {
		writeError(w, r, s.opts.log, gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, err.Error()))
		return
	}
	if len(in.Objects) > maxDeleteKeys {
		writeError(w, r, s.opts.log, gofakes3.ErrorMessage(gofakes3.ErrMalformedXML,
			"a DeleteObjects request names at most 1000 keys; this one names "+strconv.Itoa(len(in.Objects))))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	next.ServeHTTP(w, r)
}

// putUnsized is a PutObject sent with Transfer-Encoding: chunked and no
// Content-Length, which gofakes3 refuses: S3 takes the body as it comes.
func (s *Service) putUnsized(w http.ResponseWriter, r *http.Request, bucket, key string) {
	fail := func(err error) { writeError(w, r, s.opts.log, err) }
	if err := s.b.requireBucket(bucket); err != nil {
		fail(err)
		return
	}
	if err := checkKey(key); err != nil {
		fail(err)
		return
	}
	var want []byte
	if v := r.Header.Get("Content-MD5"); v != "" {
		d, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(d) != 16 {
			fail(gofakes3.ErrInvalidDigest)
			return
		}
		want = d
	}
	t, sum, err := s.b.spool(r.Body, -1)
	if err != nil {
		fail(err)
		return
	}
	defer t.discard()
	if want != nil && !bytes.Equal(want, sum) {
		fail(gofakes3.ErrBadDigest)
		return
	}
	if f := bodyFailure(w); f != nil {
		fail(f)
		return
	}
	etag := hex.EncodeToString(sum)
	if err := s.b.commit(bucket, key, t, etag, storedMeta(requestMeta(r)), nil, nil); err != nil {
		fail(err)
		return
	}
	w.Header().Set("ETag", `"`+etag+`"`)
	w.WriteHeader(http.StatusOK)
}

// bodyFailure is the authentication failure found while reading the body,
// if any (the guardWriter would answer it anyway; checking first keeps the
// object from being committed).
func bodyFailure(w http.ResponseWriter) error {
	if g, ok := w.(*guardWriter); ok {
		if f := g.st.failure(); f != nil {
			return f
		}
	}
	return nil
}

type completeResult struct {
	XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
	Xmlns    string   `xml:"xmlns,attr"`
	Location string   `xml:"Location"`
	Bucket   string   `xml:"Bucket"`
	Key      string   `xml:"Key"`
	ETag     string   `xml:"ETag"`
}

// completeMultipart is CompleteMultipartUpload with a bounded body; a
// repeated request for an upload that already completed answers as the
// first did, so that clients' retries succeed.
func (s *Service) completeMultipart(w http.ResponseWriter, r *http.Request, bucket, key string) {
	fail := func(err error) { writeError(w, r, s.opts.log, err) }
	body, err := io.ReadAll(io.LimitReader(r.Body, maxCompleteBody+1))
	if err != nil {
		fail(bodyError(err))
		return
	}
	if len(body) > maxCompleteBody {
		fail(gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "the CompleteMultipartUpload body is larger than 10 MiB"))
		return
	}
	if f := bodyFailure(w); f != nil {
		fail(f)
		return
	}
	var in gofakes3.CompleteMultipartUploadRequest
	if err := xml.Unmarshal(body, &in); err != nil {
		fail(gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, err.Error()))
		return
	}
	if len(in.Parts) > gofakes3.MaxUploadPartNumber {
		fail(gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "an upload has at most 10000 parts"))
		return
	}
	_, etag, err := s.b.CompleteMultipartUpload(bucket, key, gofakes3.UploadID(r.URL.Query().Get("uploadId")), &in)
	if err != nil {
		fail(err)
		return
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	loc := (&url.URL{Scheme: scheme, Host: r.Host, Path: "/" + bucket + "/" + key}).String()
	writeXML(w, completeResult{Xmlns: s3Xmlns, Location: loc, Bucket: bucket, Key: key, ETag: etag})
}

// ---- ListObjects and ListObjectsV2 ----

type listEntry struct {
	Key          string               `xml:"Key"`
	LastModified gofakes3.ContentTime `xml:"LastModified"`
	ETag         string               `xml:"ETag"`
	Size         int64                `xml:"Size"`
	Owner        *owner               `xml:"Owner,omitempty"`
	StorageClass string               `xml:"StorageClass"`
}

type listPrefix struct {
	Prefix string `xml:"Prefix"`
}

type listObjectsResult struct {
	XMLName               xml.Name     `xml:"ListBucketResult"`
	Xmlns                 string       `xml:"xmlns,attr"`
	Name                  string       `xml:"Name"`
	Prefix                string       `xml:"Prefix"`
	Marker                *string      `xml:"Marker"`
	NextMarker            string       `xml:"NextMarker,omitempty"`
	ContinuationToken     *string      `xml:"ContinuationToken"`
	NextContinuationToken string       `xml:"NextContinuationToken,omitempty"`
	StartAfter            *string      `xml:"StartAfter"`
	KeyCount              *int         `xml:"KeyCount"`
	MaxKeys               int64        `xml:"MaxKeys"`
	Delimiter             string       `xml:"Delimiter,omitempty"`
	EncodingType          string       `xml:"EncodingType,omitempty"`
	IsTruncated           bool         `xml:"IsTruncated"`
	Contents              []listEntry  `xml:"Contents"`
	CommonPrefixes        []listPrefix `xml:"CommonPrefixes"`
}

// s3URLEncode is S3's EncodingType=url: form encoding (a space is '+',
// '+' is %2B), with '/' kept.
func s3URLEncode(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "%2F", "/")
}

// listObjects is ListObjects (V1) and, with list-type=2, ListObjectsV2,
// including EncodingType=url and the echo of every paging parameter sent.
func (s *Service) listObjects(w http.ResponseWriter, r *http.Request, bucket string) {
	fail := func(err error) { writeError(w, r, s.opts.log, err) }
	q := r.URL.Query()
	v2 := q.Get("list-type") == "2"
	if lt := q.Get("list-type"); lt != "" && lt != "2" {
		fail(apiError(http.StatusBadRequest, "InvalidArgument", "list-type must be 2 (ListObjectsV2) or absent"))
		return
	}
	enc := q.Get("encoding-type")
	if enc != "" && enc != "url" {
		fail(apiError(http.StatusBadRequest, "InvalidArgument", "Invalid Encoding Method specified in Request: encoding-type must be url"))
		return
	}
	maxKeys := int64(gofakes3.DefaultMaxBucketKeys)
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fail(apiError(http.StatusBadRequest, "InvalidArgument", "max-keys must be a non-negative integer"))
			return
		}
		maxKeys = min(n, gofakes3.DefaultMaxBucketKeys)
	}
	e := func(v string) string {
		if enc == "url" {
			return s3URLEncode(v)
		}
		return v
	}
	lq := listQuery{prefix: q.Get("prefix"), delim: q.Get("delimiter"), max: maxKeys}
	res := listObjectsResult{Xmlns: s3Xmlns, Name: bucket, Prefix: e(lq.prefix), Delimiter: e(lq.delim), MaxKeys: maxKeys, EncodingType: enc}
	fetchOwner := !v2
	if v2 {
		fetchOwner = q.Get("fetch-owner") == "true"
		if q.Has("start-after") {
			sa := q.Get("start-after")
			lq.marker = sa
			res.StartAfter = ptr(e(sa))
		}
		if q.Has("continuation-token") {
			tok := q.Get("continuation-token")
			res.ContinuationToken = ptr(tok)
			if tok != "" {
				raw, err := base64.URLEncoding.DecodeString(tok)
				if err != nil {
					fail(apiError(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect"))
					return
				}
				lq.marker = string(raw)
			}
		}
	} else {
		lq.marker = q.Get("marker")
		res.Marker = ptr(e(lq.marker))
	}
	out, err := s.b.list(bucket, lq)
	if err != nil {
		fail(err)
		return
	}
	for _, it := range out.items {
		if it.prefix {
			res.CommonPrefixes = append(res.CommonPrefixes, listPrefix{e(it.key)})
			continue
		}
		c := listEntry{Key: e(it.key), LastModified: gofakes3.NewContentTime(it.info.mod), ETag: `"` + it.info.etag + `"`,
			Size: it.info.size, StorageClass: "STANDARD"}
		if fetchOwner {
			c.Owner = &storeOwner
		}
		res.Contents = append(res.Contents, c)
	}
	res.IsTruncated = out.truncated
	if v2 {
		res.KeyCount = ptr(len(out.items))
		if out.truncated {
			res.NextContinuationToken = base64.URLEncoding.EncodeToString([]byte(out.next))
		}
	} else if out.truncated {
		res.NextMarker = e(out.next)
	}
	writeXML(w, res)
}

func ptr[T any](v T) *T { return &v }
