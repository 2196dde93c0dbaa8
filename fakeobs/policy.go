package fakeobs

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// A job's key may read and list its grants' prefixes, ask for their
// buckets' location and existence, and write (put, multipart, copy into,
// delete) only under its write grants. Everything else is AccessDenied.

// covers reports whether g reaches key: an object under the prefix taken
// as a directory, or the prefix's own name (a HEAD of the dir itself).
func (g Grant) covers(bucket, key string) bool {
	if g.Bucket != bucket {
		return false
	}
	if g.Prefix == "" {
		return true
	}
	return strings.HasPrefix(key, dirPrefix(g.Prefix)) || key == strings.TrimSuffix(g.Prefix, "/")
}

// coversList reports whether listing prefix in bucket stays inside g.
func (g Grant) coversList(bucket, prefix string) bool {
	return g.Bucket == bucket && strings.HasPrefix(prefix, dirPrefix(g.Prefix))
}

func dirPrefix(p string) string {
	if p == "" || strings.HasSuffix(p, "/") {
		return p
	}
	return p + "/"
}

func (k *jobKey) can(bucket, key string, write bool) bool {
	for _, g := range k.Grants {
		if (g.Write || !write) && g.covers(bucket, key) {
			return true
		}
	}
	return false
}

func (k *jobKey) canList(bucket, prefix string, write bool) bool {
	for _, g := range k.Grants {
		if (g.Write || !write) && g.coversList(bucket, prefix) {
			return true
		}
	}
	return false
}

func (k *jobKey) hasBucket(bucket string) bool {
	for _, g := range k.Grants {
		if g.Bucket == bucket {
			return true
		}
	}
	return false
}

// listParams are the query parameters of bucket reads (listings,
// location); a request with any other is not one of them.
var listParams = map[string]bool{
	"list-type": true, "prefix": true, "delimiter": true, "marker": true, "max-keys": true,
	"continuation-token": true, "start-after": true, "encoding-type": true, "fetch-owner": true,
	"versions": true, "key-marker": true, "version-id-marker": true, "location": true,
	"uploads": true, "upload-id-marker": true, "max-uploads": true, "x-id": true,
	"optional-object-attributes": true,
}

func isSignatureParam(name string) bool {
	return strings.HasPrefix(strings.ToLower(name), "x-amz-") ||
		name == "AWSAccessKeyId" || name == "Signature" || name == "Expires"
}

// allowed is allow for a job's key; nil (the emulator's own key) allows all.
func (k *jobKey) allowed(r *http.Request) *authFailure {
	if k == nil {
		return nil
	}
	return k.allow(r)
}

// allow checks a request signed with a job's key against its grants. It
// reads (and puts back) the body of a DeleteObjects request to check
// every key named.
func (k *jobKey) allow(r *http.Request) *authFailure {
	bucket, key := splitPath(r.URL.Path)
	q := r.URL.Query()
	deny := func(what string) *authFailure {
		return accessDenied(fmt.Sprintf("Access Denied: the key of job %s may not %s", k.JobID, what))
	}
	if bucket == "" {
		return deny("list buckets")
	}
	if key == "" {
		for name := range q {
			if !listParams[name] && !isSignatureParam(name) && name != "delete" {
				return deny(fmt.Sprintf("use ?%s on bucket %s", name, bucket))
			}
		}
		switch {
		case r.Method == http.MethodHead || (r.Method == http.MethodGet && q.Has("location")):
			if k.hasBucket(bucket) {
				return nil
			}
			return deny("reach bucket " + bucket)
		case r.Method == http.MethodGet && q.Has("uploads"):
			if k.canList(bucket, q.Get("prefix"), true) {
				return nil
			}
		case r.Method == http.MethodGet:
			if k.canList(bucket, q.Get("prefix"), false) {
				return nil
			}
		case r.Method == http.MethodPost && q.Has("delete"):
			return k.allowDeletes(r, bucket, deny)
		default:
			return deny(fmt.Sprintf("%s bucket %s", r.Method, bucket))
		}
		return deny(fmt.Sprintf("list s3://%s/%s", bucket, q.Get("prefix")))
	}
	write := true
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		write = q.Has("uploadId") // ListParts belongs to the upload
	case http.MethodPut, http.MethodPost, http.MethodDelete:
	default:
		return deny(r.Method + " objects")
	}
	if !k.can(bucket, key, write) {
		verb := "read"
		if write {
			verb = "write"
		}
		return deny(fmt.Sprintf("%s s3://%s/%s", verb, bucket, key))
	}
	if src := r.Header.Get("X-Amz-Copy-Source"); src != "" && r.Method == http.MethodPut {
		sb, sk, err := parseCopySource(src)
		if err != nil {
			return deny("copy from " + src)
		}
		if !k.can(sb, sk, false) {
			return deny(fmt.Sprintf("read s3://%s/%s", sb, sk))
		}
	}
	return nil
}

type deleteRequest struct {
	Objects []struct {
		Key string `xml:"Key"`
	} `xml:"Object"`
}

func (k *jobKey) allowDeletes(r *http.Request, bucket string, deny func(string) *authFailure) *authFailure {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxDeleteBody+1))
	if err != nil || len(body) > maxDeleteBody {
		return deny("send this DeleteObjects request (unreadable or too large)")
	}
	r.Body = readCloser{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	var d deleteRequest
	if err := xml.Unmarshal(body, &d); err != nil {
		return deny("send a DeleteObjects body that is not XML")
	}
	for _, o := range d.Objects {
		if !k.can(bucket, o.Key, true) {
			return deny(fmt.Sprintf("delete s3://%s/%s", bucket, o.Key))
		}
	}
	return nil
}
