package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/fakeobs/obsclient"
)

// objectsAPI serves the console's object routes (api.ObjectBackend) through
// the emulator's own S3 listener, signed like any client, so the console
// sees exactly what S3 tools see.
type objectsAPI struct{ c *obsclient.Client }

var _ api.ObjectBackend = objectsAPI{}

func newObjectsAPI(endpoint string, c Credentials) (objectsAPI, error) {
	cl, err := obsclient.New(obsclient.Config{Endpoint: endpoint, AccessKey: c.AccessKey, SecretKey: c.SecretKey, Region: c.Region})
	return objectsAPI{c: cl}, err
}

func (o objectsAPI) Buckets(ctx context.Context) ([]api.Bucket, error) {
	list, err := o.c.ListBuckets(ctx)
	if err != nil {
		return nil, s3Error("listing buckets", err)
	}
	bs := make([]api.Bucket, 0, len(list))
	for _, b := range list {
		bs = append(bs, api.Bucket{Name: b.Name, Created: b.Created})
	}
	return bs, nil
}

func (o objectsAPI) CreateBucket(ctx context.Context, name string) error {
	return s3Error("creating bucket "+name, o.c.MakeBucket(ctx, name))
}

func (o objectsAPI) ListObjects(ctx context.Context, bucket, prefix string) (*api.ObjectListing, error) {
	l := &api.ObjectListing{Bucket: bucket, Prefix: prefix, Folders: []string{}, Objects: []api.Object{}}
	err := o.c.List(ctx, obsclient.URL{Bucket: bucket, Key: prefix}, false, func(e obsclient.Entry) error {
		switch {
		case e.Folder:
			l.Folders = append(l.Folders, e.Key)
		case e.Key == prefix && strings.HasSuffix(e.Key, "/"):
			// the folder's own marker object
		default:
			l.Objects = append(l.Objects, api.Object{Key: e.Key, Size: e.Size, Modified: e.Modified, ETag: e.ETag})
		}
		return nil
	})
	if err != nil {
		return nil, s3Error(fmt.Sprintf("listing s3://%s/%s", bucket, prefix), err)
	}
	return l, nil
}

func (o objectsAPI) PutObject(ctx context.Context, bucket, key string, body io.Reader, size int64, contentType string) (*api.Object, error) {
	etag, err := o.c.Put(ctx, obsclient.URL{Bucket: bucket, Key: key}, body, size, contentType)
	if err != nil {
		return nil, s3Error(fmt.Sprintf("uploading s3://%s/%s", bucket, key), err)
	}
	return &api.Object{Key: key, Size: size, ETag: etag}, nil
}

func (o objectsAPI) GetObject(ctx context.Context, bucket, key string) (*api.ObjectReader, error) {
	body, e, err := o.c.Open(ctx, obsclient.URL{Bucket: bucket, Key: key})
	if err != nil {
		return nil, s3Error(fmt.Sprintf("reading s3://%s/%s", bucket, key), err)
	}
	return &api.ObjectReader{ReadCloser: body, Size: e.Size, Modified: e.Modified}, nil
}

func (o objectsAPI) DeleteObjects(ctx context.Context, bucket, key string) (int, error) {
	u := obsclient.URL{Bucket: bucket, Key: key}
	folder := strings.HasSuffix(key, "/")
	if !folder {
		// S3 answers a delete of a missing key with success; the console
		// should hear that nothing was there.
		if _, err := o.c.Stat(ctx, u); err != nil {
			return 0, s3Error(fmt.Sprintf("deleting s3://%s/%s", bucket, key), err)
		}
	}
	// A folder: everything under it.
	n, err := o.c.Remove(ctx, u, folder)
	return n, s3Error(fmt.Sprintf("deleting s3://%s/%s", bucket, key), err)
}

// s3Error gives an S3 error the API class of its code, so the console
// shows "not found" for a missing bucket rather than a server error.
func s3Error(what string, err error) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		msg := ae.ErrorMessage()
		if msg == "" && ae.ErrorCode() == "NotFound" {
			msg = "no such object" // a HEAD answer has no body to say so
		} else if msg == "" {
			msg = ae.ErrorCode()
		}
		switch ae.ErrorCode() {
		case "NoSuchBucket", "NoSuchKey", "NotFound":
			return fmt.Errorf("%w: %s: %s", api.ErrNotFound, what, msg)
		case "InvalidBucketName", "KeyTooLongError", "InvalidArgument", "EntityTooLarge", "InvalidRequest":
			return fmt.Errorf("%w: %s: %s", api.ErrInvalid, what, msg)
		case "BucketAlreadyExists", "BucketAlreadyOwnedByYou", "BucketNotEmpty":
			return fmt.Errorf("%w: %s: %s", api.ErrConflict, what, msg)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
