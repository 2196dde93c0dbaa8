package emulator

import (
	"context"
	"fmt"

	"github.com/malocal/malocal/fakeobs"
	"github.com/malocal/malocal/jobs"
)

// jobKeysFile keeps the per-job S3 keys, so a running job's key survives
// an emulator restart.
const jobKeysFile = "job-keys.json"

// jobCredentials gives each job its own S3 key, allowed only the job's
// dirs: the job core issues one at submit and revokes it when the job is
// final. With --external-obs jobs keep the user's keys instead.
type jobCredentials struct{ keys *fakeobs.KeyStore }

var _ jobs.Credentials = jobCredentials{}

// Issue makes (or returns the existing) key of a job; it survives an
// emulator restart.
func (c jobCredentials) Issue(ctx context.Context, jobID string, grants []jobs.Grant) (accessKey, secretKey string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	gs := make([]fakeobs.Grant, len(grants))
	for i, g := range grants {
		gs[i] = fakeobs.Grant{Bucket: g.Bucket, Prefix: g.Prefix, Write: g.Write}
	}
	ak, sk, err := c.keys.Issue(jobID, gs)
	if err != nil {
		return "", "", fmt.Errorf("job %s's S3 key: %w", jobID, err)
	}
	return ak, sk, nil
}

// Revoke deletes a job's key; requests signed with it fail from then on.
func (c jobCredentials) Revoke(ctx context.Context, jobID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.keys.Revoke(jobID); err != nil {
		return fmt.Errorf("revoking job %s's S3 key: %w", jobID, err)
	}
	return nil
}
