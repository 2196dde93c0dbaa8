package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// route is one parsed /v2/ request path.
type route struct {
	kind string // "ping", "catalog", "tags", "manifest", "referrers", "blob", "uploads", "upload"
	name string // repository
	ref  string // tag, digest or upload id
}

// parseRoute reads the endpoint from the end of the path, since
// repository names contain slashes.
func parseRoute(p string) (route, bool) {
	if p == "/v2" || p == "/v2/" {
		return route{kind: "ping"}, true
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}, false
	}
	if rest == "_catalog" {
		return route{kind: "catalog"}, true
	}
	e := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	n := len(e)
	join := func(k int) string { return strings.Join(e[:n-k], "/") }
	switch {
	case n >= 3 && e[n-2] == "tags" && e[n-1] == "list":
		return route{"tags", join(2), ""}, true
	case n >= 3 && e[n-2] == "manifests":
		return route{"manifest", join(2), e[n-1]}, true
	case n >= 3 && e[n-2] == "referrers":
		return route{"referrers", join(2), e[n-1]}, true
	case n >= 4 && e[n-3] == "blobs" && e[n-2] == "uploads":
		return route{"upload", join(3), e[n-1]}, true
	case n >= 3 && e[n-2] == "blobs" && e[n-1] == "uploads":
		return route{"uploads", join(2), ""}, true
	case n >= 3 && e[n-2] == "blobs":
		return route{"blob", join(2), e[n-1]}, true
	}
	return route{}, false
}

func (r *Registry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	start := time.Now()
	err := r.serve(w, req)
	if err != nil {
		writeError(w, req, r.log, err)
	}
	r.log.Debug("registry: request", "method", req.Method, "path", req.URL.Path, "err", err, "dur", time.Since(start))
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) error {
	rt, ok := parseRoute(req.URL.Path)
	if !ok {
		return errNotFound
	}
	if rt.kind != "ping" && rt.kind != "catalog" && !validName(rt.name) {
		return errNameInvalid
	}
	if r.auth != nil && !anonymousOK(rt, req.Method) && !r.auth.authenticated(req) {
		return r.auth.challenge(w, req, rt)
	}
	m := req.Method
	switch {
	case rt.kind == "ping" && (m == http.MethodGet || m == http.MethodHead):
		w.WriteHeader(http.StatusOK)
		return nil
	case rt.kind == "catalog" && m == http.MethodGet:
		return r.catalog(w, req)
	case rt.kind == "tags" && m == http.MethodGet:
		return r.tagList(w, req, rt.name)
	case rt.kind == "manifest" && (m == http.MethodGet || m == http.MethodHead):
		return r.getManifest(w, req, rt)
	case rt.kind == "manifest" && m == http.MethodPut:
		return r.putManifest(w, req, rt)
	case rt.kind == "manifest" && m == http.MethodDelete:
		if err := r.s.deleteManifest(rt.name, rt.ref); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	case rt.kind == "referrers" && m == http.MethodGet:
		return r.referrers(w, req, rt)
	case rt.kind == "blob" && (m == http.MethodGet || m == http.MethodHead):
		return r.getBlob(w, req, rt)
	case rt.kind == "blob" && m == http.MethodDelete:
		d, err := parseDigest(rt.ref)
		if err != nil {
			return err
		}
		if err := r.s.deleteBlob(rt.name, d); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	case rt.kind == "uploads" && m == http.MethodPost:
		return r.startUpload(w, req, rt.name)
	case rt.kind == "upload":
		return r.upload(w, req, rt)
	}
	return errUnsupported
}

func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, rt route) error {
	d, err := parseDigest(rt.ref)
	if err != nil {
		return err
	}
	f, err := r.s.openBlob(rt.name, d)
	if err != nil {
		return err
	}
	defer f.Close()
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	// ServeContent handles HEAD, Range and conditional requests from the
	// file itself, without reading what it does not send.
	http.ServeContent(w, req, "", time.Time{}, f)
	return nil
}

func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, rt route) error {
	d, mt, body, err := r.s.getManifest(rt.name, rt.ref)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, rt route) error {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifestSize+1))
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	if len(body) > maxManifestSize {
		return errTooLarge
	}
	tags := req.URL.Query()["tag"]
	d, m, err := r.s.putManifest(rt.name, rt.ref, req.Header.Get("Content-Type"), body, tags)
	if err != nil {
		return err
	}
	h := w.Header()
	for _, t := range tags {
		h.Add("OCI-Tag", t) // tells the client the ?tag= parameters were applied
	}
	h.Set("Location", "/v2/"+rt.name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	if m.Subject != nil {
		h.Set("OCI-Subject", m.Subject.Digest)
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (r *Registry) referrers(w http.ResponseWriter, req *http.Request, rt route) error {
	d, err := parseDigest(rt.ref)
	if err != nil {
		return err
	}
	at := req.URL.Query().Get("artifactType")
	descs, err := r.s.referrers(rt.name, d, at)
	if err != nil {
		return err
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	const indexType = "application/vnd.oci.image.index.v1+json"
	w.Header().Set("Content-Type", indexType)
	return json.NewEncoder(w).Encode(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []Descriptor `json:"manifests"`
	}{2, indexType, descs})
}

// page applies the spec's n and last parameters to a sorted list and sets
// the Link header to the next page when one remains.
func page(w http.ResponseWriter, req *http.Request, all []string) ([]string, error) {
	q := req.URL.Query()
	last := q.Get("last")
	if last != "" {
		i, _ := slices.BinarySearch(all, last)
		for i < len(all) && all[i] <= last {
			i++
		}
		all = all[i:]
	}
	if q.Get("n") == "" {
		return all, nil
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		return nil, errPaginationInvalid
	}
	if n < len(all) {
		all = all[:n]
		if n > 0 {
			next := url.Values{"n": {strconv.Itoa(n)}, "last": {all[n-1]}}
			w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, req.URL.Path, next.Encode()))
		}
	}
	return all, nil
}

func (r *Registry) tagList(w http.ResponseWriter, req *http.Request, name string) error {
	if !r.s.repoExists(name) {
		return errNameUnknown
	}
	tags, err := r.s.listTags(name)
	if err != nil {
		return err
	}
	if tags, err = page(w, req, tags); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, append([]string{}, tags...)})
}

func (r *Registry) catalog(w http.ResponseWriter, req *http.Request) error {
	repos, err := r.s.listRepos(req.Context())
	if err != nil {
		return err
	}
	if repos, err = page(w, req, repos); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Repositories []string `json:"repositories"`
	}{append([]string{}, repos...)})
}

// uploadStatus sets the headers that tell a client where a session is.
func uploadStatus(w http.ResponseWriter, u *upload) {
	h := w.Header()
	h.Set("Location", "/v2/"+u.repo+"/blobs/uploads/"+u.id)
	h.Set("Docker-Upload-UUID", u.id)
	h.Set("Range", fmt.Sprintf("0-%d", max(u.size-1, 0)))
	h.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, name string, d digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// startUpload is POST .../blobs/uploads/: a mount, a monolithic upload
// (?digest=) or the start of a session.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, name string) error {
	q := req.URL.Query()
	if m := q.Get("mount"); m != "" {
		if d, err := parseDigest(m); err == nil {
			ok, err := r.s.mount(name, q.Get("from"), d)
			if err != nil {
				return err
			}
			if ok {
				blobCreated(w, name, d)
				return nil
			}
		}
		// Not mountable: the spec says to answer with a new session.
	}
	var want digest
	if dg := q.Get("digest"); dg != "" {
		var err error
		if want, err = parseDigest(dg); err != nil {
			return err
		}
	}
	u, err := r.s.newUpload(name)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if want.alg == "" {
		uploadStatus(w, u)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	if err := r.s.appendData(u, req.Body, -1, req.ContentLength); err != nil {
		r.s.cancel(u)
		return err
	}
	if err := r.s.commit(u, want); err != nil {
		r.s.cancel(u)
		return err
	}
	blobCreated(w, name, want)
	return nil
}

// parseContentRange reads the spec's "start-end" Content-Range of a chunk.
func parseContentRange(v string, length int64) (int64, error) {
	a, b, ok := strings.Cut(strings.TrimPrefix(v, "bytes="), "-")
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start-1 {
		return 0, errRangeInvalid
	}
	if length >= 0 && end-start+1 != length {
		return 0, errRangeInvalid
	}
	return start, nil
}

func (r *Registry) upload(w http.ResponseWriter, req *http.Request, rt route) error {
	u, err := r.s.getUpload(rt.name, rt.ref)
	if err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return errBlobUploadUnknown
	}
	switch req.Method {
	case http.MethodGet:
		uploadStatus(w, u)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodDelete:
		r.s.cancel(u)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch, http.MethodPut:
	default:
		return errUnsupported
	}
	var want digest
	if req.Method == http.MethodPut {
		if want, err = parseDigest(req.URL.Query().Get("digest")); err != nil {
			return err
		}
	}
	start := int64(-1)
	if cr := req.Header.Get("Content-Range"); cr != "" {
		if start, err = parseContentRange(cr, req.ContentLength); err != nil {
			uploadStatus(w, u)
			return err
		}
	}
	// A PUT may carry the last chunk; a PATCH always carries one.
	if req.Method == http.MethodPatch || req.ContentLength != 0 {
		if err := r.s.appendData(u, req.Body, start, req.ContentLength); err != nil {
			if !u.done {
				uploadStatus(w, u)
			}
			return err
		}
	}
	if req.Method == http.MethodPatch {
		uploadStatus(w, u)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	if err := r.s.commit(u, want); err != nil {
		return err
	}
	blobCreated(w, rt.name, want)
	return nil
}
