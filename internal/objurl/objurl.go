// Package objurl parses the object store URLs users and jobs write:
// s3://bucket/key and obs://bucket/key (OBS's own scheme, the same store).
// It is the one parser of them: the storage client (fakeobs/obsclient), the
// CLI, the runner and the job core all call it, and it imports nothing of
// malocal, so that any of them can.
package objurl

import (
	"fmt"
	"regexp"
	"strings"
)

// Schemes are the URL prefixes of the object store, in the order tried.
var Schemes = []string{"s3://", "obs://"}

// URL is a bucket and a key (or key prefix; empty for the whole bucket).
type URL struct {
	Bucket, Key string
}

// String is the URL in its s3:// form.
func (u URL) String() string { return "s3://" + u.Bucket + "/" + u.Key }

// Is reports whether s is written as an object store URL (s3:// or obs://),
// rather than a local path.
func Is(s string) bool {
	_, ok := cutScheme(s)
	return ok
}

// Parse splits s3://bucket/key or obs://bucket/key. It requires the scheme
// and a bucket name; the key may be empty. Bucket names and keys are
// otherwise left to the store to judge (ParseStrict checks them).
func Parse(s string) (URL, error) {
	rest, ok := cutScheme(s)
	if !ok {
		return URL{}, fmt.Errorf("%q is not an object store URL: use s3://bucket/path or obs://bucket/path", s)
	}
	var u URL
	u.Bucket, u.Key, _ = strings.Cut(rest, "/")
	if u.Bucket == "" {
		return URL{}, fmt.Errorf("%q: no bucket name (use s3://bucket/path)", s)
	}
	return u, nil
}

// bucketName is the rule of OBS and S3 for new buckets.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseStrict is Parse that also requires a valid bucket name (3-63
// lowercase letters, digits, dots and dashes) and a key without ".."
// segments: the rule for URLs a job's tasks download into or upload from
// local directories.
func ParseStrict(s string) (URL, error) {
	rest, ok := cutScheme(s)
	if !ok {
		return URL{}, fmt.Errorf("%q is not an object store URL: use s3://bucket/path/ or obs://bucket/path/", s)
	}
	var u URL
	u.Bucket, u.Key, _ = strings.Cut(rest, "/")
	if !bucketName.MatchString(u.Bucket) || strings.Contains(u.Bucket, "..") {
		return URL{}, fmt.Errorf("%q: bucket name %q is not valid (3-63 lowercase letters, digits, dots and dashes)", s, u.Bucket)
	}
	for _, part := range strings.Split(u.Key, "/") {
		if part == ".." {
			return URL{}, fmt.Errorf("%q: a path may not contain a \"..\" segment", s)
		}
	}
	return u, nil
}

func cutScheme(s string) (string, bool) {
	for _, p := range Schemes {
		if rest, ok := strings.CutPrefix(s, p); ok {
			return rest, true
		}
	}
	return "", false
}
