package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bucket is one bucket of the object store.
type Bucket struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created,omitzero"`
}

// Object is one object of a listing.
type Object struct {
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified,omitzero"`
	ETag     string    `json:"etag,omitempty"`
}

// ObjectListing is one level of a bucket: the folders (common prefixes,
// ending in "/") and the objects directly under Prefix.
type ObjectListing struct {
	Bucket  string   `json:"bucket"`
	Prefix  string   `json:"prefix"`
	Folders []string `json:"folders"`
	Objects []Object `json:"objects"`
}

// ObjectReader is an object's content being read; the caller closes it.
type ObjectReader struct {
	io.ReadCloser
	Size     int64 // -1 when unknown
	Modified time.Time
}

// DeleteResult says how many objects a delete removed.
type DeleteResult struct {
	Deleted int `json:"deleted"`
}

// ObjectBackend is the optional backend capability behind the object
// routes, which the console uses to browse, upload and download.
type ObjectBackend interface {
	Buckets(ctx context.Context) ([]Bucket, error)
	CreateBucket(ctx context.Context, name string) error
	ListObjects(ctx context.Context, bucket, prefix string) (*ObjectListing, error)
	// PutObject stores body (size bytes) as bucket/key, streaming it.
	PutObject(ctx context.Context, bucket, key string, body io.Reader, size int64, contentType string) (*Object, error)
	GetObject(ctx context.Context, bucket, key string) (*ObjectReader, error)
	// DeleteObjects removes key, or every object under it when key ends in "/".
	DeleteObjects(ctx context.Context, bucket, key string) (int, error)
}

func (s *Server) registerObjects() {
	b, ok := s.backend.(ObjectBackend)
	if !ok {
		return
	}
	s.handle("GET /buckets", func(r *http.Request) (any, error) {
		bs, err := b.Buckets(r.Context())
		if bs == nil {
			bs = []Bucket{}
		}
		return bs, err
	})
	s.create("POST /buckets", func(r *http.Request) (any, error) {
		var in Bucket
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil {
			return nil, Invalidf("bucket: want {\"name\": \"...\"}: %v", err)
		}
		if in.Name == "" {
			return nil, Invalidf("name: required, 3-63 lowercase letters, digits, dots and dashes")
		}
		return Bucket{Name: in.Name}, b.CreateBucket(r.Context(), in.Name)
	})
	s.handle("GET /buckets/{bucket}/objects", func(r *http.Request) (any, error) {
		return b.ListObjects(r.Context(), r.PathValue("bucket"), r.URL.Query().Get("prefix"))
	})
	s.create("PUT /buckets/{bucket}/objects/{key...}", func(r *http.Request) (any, error) {
		key := r.PathValue("key")
		if key == "" || strings.HasSuffix(key, "/") {
			return nil, Invalidf("key: %q is not an object name (it must not be empty or end in /)", key)
		}
		if r.ContentLength < 0 {
			return nil, Invalidf("upload of %s: the request needs a Content-Length", key)
		}
		return b.PutObject(r.Context(), r.PathValue("bucket"), key, r.Body, r.ContentLength, r.Header.Get("Content-Type"))
	})
	s.handle("DELETE /buckets/{bucket}/objects/{key...}", func(r *http.Request) (any, error) {
		key := r.PathValue("key")
		if key == "" {
			return nil, Invalidf("key: required (a folder ends in /)")
		}
		n, err := b.DeleteObjects(r.Context(), r.PathValue("bucket"), key)
		return DeleteResult{Deleted: n}, err
	})
	// Downloads stream the object as it is, named for the browser to save.
	s.mux.HandleFunc("GET "+Prefix+"/buckets/{bucket}/objects/{key...}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		if key == "" || strings.HasSuffix(key, "/") {
			writeError(w, Invalidf("key: %q is a folder, not an object", key))
			return
		}
		obj, err := b.GetObject(r.Context(), r.PathValue("bucket"), key)
		if err != nil {
			writeError(w, err)
			return
		}
		defer obj.Close()
		// Served as a download, never rendered: an uploaded page must not
		// run with the console's origin.
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "sandbox")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": key[strings.LastIndex(key, "/")+1:]}))
		if !obj.Modified.IsZero() {
			w.Header().Set("Last-Modified", obj.Modified.UTC().Format(http.TimeFormat))
		}
		if obj.Size >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(obj.Size, 10))
		}
		io.Copy(w, obj)
	})
}

// objectPath is the API path of an object, each key segment escaped.
func objectPath(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/buckets/" + url.PathEscape(bucket) + "/objects/" + strings.Join(segs, "/")
}

// Buckets lists the object store's buckets.
func (c *Client) Buckets(ctx context.Context) ([]Bucket, error) {
	var out []Bucket
	return out, c.do(ctx, http.MethodGet, "/buckets", nil, &out)
}

// CreateBucket creates a bucket.
func (c *Client) CreateBucket(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/buckets", Bucket{Name: name}, nil)
}

// ListObjects lists one level of bucket under prefix.
func (c *Client) ListObjects(ctx context.Context, bucket, prefix string) (*ObjectListing, error) {
	var out ObjectListing
	return &out, c.do(ctx, http.MethodGet, "/buckets/"+url.PathEscape(bucket)+"/objects?"+url.Values{"prefix": {prefix}}.Encode(), nil, &out)
}

// PutObject uploads size bytes of body as bucket/key.
func (c *Client) PutObject(ctx context.Context, bucket, key string, body io.Reader, size int64) (*Object, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+Prefix+objectPath(bucket, key), body)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	req.ContentLength = size
	h := *c.http
	h.Timeout = 0 // an upload lasts as long as its size needs
	resp, err := c.roundTrip(&h, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out Object
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding the upload's answer: %w", err)
	}
	return &out, nil
}

// GetObject streams bucket/key; the caller closes the reader.
func (c *Client) GetObject(ctx context.Context, bucket, key string) (io.ReadCloser, error) {
	resp, err := c.stream(ctx, objectPath(bucket, key))
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// DeleteObjects removes bucket/key, or everything under key when it ends in "/".
func (c *Client) DeleteObjects(ctx context.Context, bucket, key string) (int, error) {
	var out DeleteResult
	return out.Deleted, c.do(ctx, http.MethodDelete, objectPath(bucket, key), nil, &out)
}
