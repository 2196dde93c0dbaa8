package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/malocal/malocal/api"
)

// objectsAPI serves the console's object routes (api.ObjectBackend) through
// the emulator's own S3 listener, signed like any client, so the console
// sees exactly what S3 tools see.
type objectsAPI struct{ s3 *s3.Client }

var _ api.ObjectBackend = objectsAPI{}

func newObjectsAPI(endpoint string, c Credentials) objectsAPI {
	return objectsAPI{s3: s3.New(s3.Options{
		Region:       c.Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, ""),
		// Uploads stream from the browser's request: no checksum that
		// would need the whole body first.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
	})}
}

func (o objectsAPI) Buckets(ctx context.Context) ([]api.Bucket, error) {
	out, err := o.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return nil, s3Error("listing buckets", err)
	}
	bs := make([]api.Bucket, 0, len(out.Buckets))
	for _, b := range out.Buckets {
		bs = append(bs, api.Bucket{Name: aws.ToString(b.Name), Created: aws.ToTime(b.CreationDate)})
	}
	return bs, nil
}

func (o objectsAPI) CreateBucket(ctx context.Context, name string) error {
	_, err := o.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	return s3Error("creating bucket "+name, err)
}

func (o objectsAPI) ListObjects(ctx context.Context, bucket, prefix string) (*api.ObjectListing, error) {
	l := &api.ObjectListing{Bucket: bucket, Prefix: prefix, Folders: []string{}, Objects: []api.Object{}}
	p := s3.NewListObjectsV2Paginator(o.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s3Error(fmt.Sprintf("listing s3://%s/%s", bucket, prefix), err)
		}
		for _, cp := range page.CommonPrefixes {
			l.Folders = append(l.Folders, aws.ToString(cp.Prefix))
		}
		for _, ob := range page.Contents {
			k := aws.ToString(ob.Key)
			if k == prefix && strings.HasSuffix(k, "/") {
				continue // the folder's own marker object
			}
			l.Objects = append(l.Objects, api.Object{Key: k, Size: aws.ToInt64(ob.Size), Modified: aws.ToTime(ob.LastModified),
				ETag: strings.Trim(aws.ToString(ob.ETag), `"`)})
		}
	}
	return l, nil
}

func (o objectsAPI) PutObject(ctx context.Context, bucket, key string, body io.Reader, size int64, contentType string) (*api.Object, error) {
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: body, ContentLength: aws.Int64(size)}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	// The body is a network stream: sign it as UNSIGNED-PAYLOAD rather
	// than reading it twice (the listener is our own, on loopback).
	out, err := o.s3.PutObject(ctx, in, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	if err != nil {
		return nil, s3Error(fmt.Sprintf("uploading s3://%s/%s", bucket, key), err)
	}
	return &api.Object{Key: key, Size: size, ETag: strings.Trim(aws.ToString(out.ETag), `"`)}, nil
}

func (o objectsAPI) GetObject(ctx context.Context, bucket, key string) (*api.ObjectReader, error) {
	out, err := o.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, s3Error(fmt.Sprintf("reading s3://%s/%s", bucket, key), err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return &api.ObjectReader{ReadCloser: out.Body, Size: size, Modified: aws.ToTime(out.LastModified)}, nil
}

func (o objectsAPI) DeleteObjects(ctx context.Context, bucket, key string) (int, error) {
	if !strings.HasSuffix(key, "/") {
		// S3 answers a delete of a missing key with success; the console
		// should hear that nothing was there.
		if _, err := o.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
			return 0, s3Error(fmt.Sprintf("deleting s3://%s/%s", bucket, key), err)
		}
		_, err := o.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return 0, s3Error(fmt.Sprintf("deleting s3://%s/%s", bucket, key), err)
		}
		return 1, nil
	}
	// A folder: everything under it, keys collected first so that deleting
	// does not shift the pages.
	var keys []types.ObjectIdentifier
	p := s3.NewListObjectsV2Paginator(o.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, s3Error(fmt.Sprintf("listing s3://%s/%s", bucket, key), err)
		}
		for _, ob := range page.Contents {
			keys = append(keys, types.ObjectIdentifier{Key: ob.Key})
		}
	}
	n := 0
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		out, err := o.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
		if err != nil {
			return n, s3Error(fmt.Sprintf("deleting s3://%s/%s", bucket, key), err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return n, fmt.Errorf("deleting s3://%s/%s: %s: %s", bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		n += len(batch)
	}
	return n, nil
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
