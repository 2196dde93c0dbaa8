package jobs

import (
	"context"
	"time"
)

// Images resolves a user's image reference to a repository and manifest
// digest in the registry jobs pull from.
type Images interface {
	Resolve(ctx context.Context, image string) (repo, digest string, err error)
}

// Verdict is an image audit's result.
type Verdict struct {
	Passed    bool
	Cached    bool      // the verdict came from the emulator's cache
	AuditedAt time.Time // when the image was audited
	// Lines are the report, one line each: image and digest, each
	// violation with rule id, layer and path, the verdict.
	Lines []string
}

// Auditor checks an image against the platform's rules.
type Auditor interface {
	Audit(ctx context.Context, repo, digest string) (Verdict, error)
	// Cached is the stored verdict of a digest, without auditing; ok is false when there is none.
	Cached(ctx context.Context, digest string) (v Verdict, ok bool, err error)
}

// Buckets tells whether a bucket exists in the object store.
type Buckets interface {
	BucketExists(ctx context.Context, name string) (bool, error)
}

// LogUploader copies a local folder of task logs to an object store URL.
type LogUploader interface {
	UploadDir(ctx context.Context, dir, url string) error
}

// Grant is one prefix of a bucket a job's key may read (and, with Write,
// write).
type Grant struct {
	Bucket, Prefix string
	Write          bool
}

// Credentials issues each job an object-store key of its own.
type Credentials interface {
	// Issue makes (or returns the existing) key of a job; it survives an emulator restart.
	Issue(ctx context.Context, jobID string, grants []Grant) (accessKey, secretKey string, err error)
	Revoke(ctx context.Context, jobID string) error
}

// Grants are what a job's key may touch: its code and data dirs read-only,
// its output and log dirs read-write.
func Grants(s Spec) []Grant {
	var out []Grant
	for _, u := range []struct {
		url   string
		write bool
	}{{s.AppURL, false}, {s.DataURL, false}, {s.TrainURL, true}, {s.LogURL, true}} {
		if u.url == "" {
			continue
		}
		b, k, err := ParseObjectURL(u.url)
		if err != nil {
			continue
		}
		out = append(out, Grant{Bucket: b, Prefix: k, Write: u.write})
	}
	return out
}
