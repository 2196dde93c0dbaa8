package fakeobs

import "context"

// BucketExists reports whether a bucket exists; the job runner checks the
// buckets of a job's URLs at submit with it.
func (s *Service) BucketExists(_ context.Context, name string) (bool, error) {
	return s.b.bucketExists(name)
}
