// Package obsclient is the small S3 client behind `malocal obs`: listing,
// buckets, and file/folder transfers in both directions (s3:// or obs://
// URLs), many files in parallel, large files in parallel multipart parts,
// with optional progress output. It talks to any S3 endpoint; it imports no
// server code.
package obsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/malocal/malocal/internal/objurl"
)

// Config says where the object store is and how to transfer.
type Config struct {
	Endpoint             string // e.g. http://127.0.0.1:9000
	AccessKey, SecretKey string
	Region               string
	// Parallel is how many files (and parts of one large file) move at
	// once; default 8.
	Parallel int
	// PartSize is the multipart part size, and files larger than it are
	// uploaded in parts; default 16 MiB.
	PartSize int64
	// Progress, when set, receives a progress line for transfers of more
	// than 16 MiB in total.
	Progress io.Writer
}

// Client moves objects and files.
type Client struct {
	cfg Config
	s3  *s3.Client
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Endpoint == "" || cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("obsclient: endpoint and credentials are required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if cfg.PartSize <= 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.PartSize < 5<<20 {
		return nil, errors.New("obsclient: part size must be at least 5 MiB")
	}
	cl := s3.New(s3.Options{
		Region:       cfg.Region,
		BaseEndpoint: aws.String(cfg.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
	})
	return &Client{cfg: cfg, s3: cl}, nil
}

// URL is a bucket and key (or key prefix).
type URL struct {
	Bucket, Key string
}

func (u URL) String() string { return "s3://" + u.Bucket + "/" + u.Key }

// ParseURL parses s3://bucket/key or obs://bucket/key (objurl.Parse);
// remote is false for anything else (a local path).
func ParseURL(s string) (u URL, remote bool, err error) {
	if !objurl.Is(s) {
		return URL{}, false, nil
	}
	ou, err := objurl.Parse(s)
	return URL(ou), true, err
}

// Bucket is one entry of ListBuckets.
type Bucket struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// ListBuckets lists all buckets.
func (c *Client) ListBuckets(ctx context.Context) ([]Bucket, error) {
	out, err := c.s3.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return nil, fmt.Errorf("list buckets: %w", err)
	}
	var bs []Bucket
	for _, b := range out.Buckets {
		bs = append(bs, Bucket{Name: aws.ToString(b.Name), Created: aws.ToTime(b.CreationDate)})
	}
	return bs, nil
}

// MakeBucket creates a bucket.
func (c *Client) MakeBucket(ctx context.Context, bucket string) error {
	if _, err := c.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("make bucket %s: %w", bucket, err)
	}
	return nil
}

// RemoveBucket deletes a bucket; with force, its objects first.
func (c *Client) RemoveBucket(ctx context.Context, bucket string, force bool) error {
	if force {
		if _, err := c.Remove(ctx, URL{Bucket: bucket}, true); err != nil {
			return err
		}
	}
	if _, err := c.s3.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("remove bucket %s: %w", bucket, err)
	}
	return nil
}

// Entry is one item of a listing: an object, or a folder (common prefix).
type Entry struct {
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified,omitempty"`
	ETag     string    `json:"etag,omitempty"`
	Folder   bool      `json:"folder,omitempty"`
}

// List calls fn for each object under u.Key; without recursive, keys below
// the next "/" are folded into folders.
func (c *Client) List(ctx context.Context, u URL, recursive bool, fn func(Entry) error) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(u.Bucket), Prefix: aws.String(u.Key)}
	if !recursive {
		in.Delimiter = aws.String("/")
	}
	p := s3.NewListObjectsV2Paginator(c.s3, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", u, err)
		}
		for _, cp := range page.CommonPrefixes {
			if err := fn(Entry{Key: aws.ToString(cp.Prefix), Folder: true}); err != nil {
				return err
			}
		}
		for _, o := range page.Contents {
			e := Entry{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified), ETag: strings.Trim(aws.ToString(o.ETag), `"`)}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// Cat writes one object to w.
func (c *Client) Cat(ctx context.Context, u URL, w io.Writer) error {
	body, _, err := c.Open(ctx, u)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.Copy(w, body); err != nil {
		return fmt.Errorf("read %s: %w", u, err)
	}
	return nil
}

// Open returns one object's body and its entry (Size -1 when the store
// did not say).
func (c *Client) Open(ctx context.Context, u URL) (io.ReadCloser, Entry, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Key)})
	if err != nil {
		return nil, Entry{}, fmt.Errorf("get %s: %w", u, err)
	}
	e := Entry{Key: u.Key, Size: -1, Modified: aws.ToTime(out.LastModified), ETag: strings.Trim(aws.ToString(out.ETag), `"`)}
	if out.ContentLength != nil {
		e.Size = *out.ContentLength
	}
	return out.Body, e, nil
}

// Stat returns one object's entry, or an error IsNotFound knows.
func (c *Client) Stat(ctx context.Context, u URL) (Entry, error) {
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Key)})
	if err != nil {
		return Entry{}, fmt.Errorf("head %s: %w", u, err)
	}
	return Entry{Key: u.Key, Size: aws.ToInt64(out.ContentLength), Modified: aws.ToTime(out.LastModified),
		ETag: strings.Trim(aws.ToString(out.ETag), `"`)}, nil
}

// Put uploads size bytes of body as one object and returns its ETag. The
// body is read once, as it comes: it is sent as UNSIGNED-PAYLOAD with no
// checksum that would need it whole first, so it may be a network stream.
// Meant for an endpoint on loopback or behind TLS.
func (c *Client) Put(ctx context.Context, u URL, body io.Reader, size int64, contentType string) (string, error) {
	in := &s3.PutObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Key), Body: body, ContentLength: aws.Int64(size)}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	out, err := c.s3.PutObject(ctx, in, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware),
		func(o *s3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired })
	if err != nil {
		return "", fmt.Errorf("put %s: %w", u, err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`), nil
}

// Remove deletes one object or, with recursive, every object under the
// prefix, and returns how many it deleted.
func (c *Client) Remove(ctx context.Context, u URL, recursive bool) (int, error) {
	if !recursive {
		if u.Key == "" {
			return 0, fmt.Errorf("rm %s: no key (use -r to remove everything under a prefix)", u)
		}
		if _, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Key)}); err != nil {
			return 0, fmt.Errorf("rm %s: %w", u, err)
		}
		return 1, nil
	}
	n := 0
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := c.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(u.Bucket), Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("rm %s: %w", u, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("rm s3://%s/%s: %s: %s (and %d more)", u.Bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message), len(out.Errors)-1)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	// Collect first: deleting while paging would shift the pages.
	var keys []string
	if err := c.List(ctx, u, true, func(e Entry) error { keys = append(keys, e.Key); return nil }); err != nil {
		return 0, err
	}
	for _, k := range keys {
		batch = append(batch, types.ObjectIdentifier{Key: aws.String(k)})
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}

// IsNotFound reports whether err says a bucket or key does not exist.
func IsNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NoSuchBucket", "NotFound":
			return true
		}
	}
	return false
}

// pool runs jobs with at most n at once and returns the first error; after
// an error, jobs not yet started are skipped.
type pool struct {
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	ctx  context.Context
	stop context.CancelFunc
}

func newPool(ctx context.Context, n int) *pool {
	ctx, cancel := context.WithCancel(ctx)
	return &pool{sem: make(chan struct{}, n), ctx: ctx, stop: cancel}
}

func (p *pool) Go(job func(ctx context.Context) error) {
	select {
	case p.sem <- struct{}{}:
	case <-p.ctx.Done():
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		if p.ctx.Err() != nil {
			return
		}
		if err := job(p.ctx); err != nil {
			p.mu.Lock()
			if p.err == nil {
				p.err = err
				p.stop()
			}
			p.mu.Unlock()
		}
	}()
}

func (p *pool) Wait() error {
	p.wg.Wait()
	p.stop()
	return p.err
}
