package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"

	"github.com/malocal/malocal/fakeobs/obsclient"
)

// plainOBSErrors makes every obs subcommand answer in plain words with the
// next step, instead of the S3 SDK's text (operation, request ids).
func plainOBSErrors(obs *cobra.Command) {
	for _, sc := range obs.Commands() {
		run := sc.RunE
		if run == nil {
			continue
		}
		sc.RunE = func(cmd *cobra.Command, args []string) error {
			return obsError(run(cmd, args), args)
		}
	}
}

// obsError rewrites an S3 error answered by the object store; args are the
// command's arguments, whose s3:// URLs name the bucket in the message.
func obsError(err error, args []string) error {
	if err == nil {
		return nil
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return fmt.Errorf("cannot reach the object store (%v): is `malocal up` running on this data dir?", oe.Err)
		}
		return err
	}
	bucket, url := "BUCKET", ""
	for _, a := range args {
		if u, remote, perr := obsclient.ParseURL(a); perr == nil && remote {
			bucket, url = u.Bucket, u.String()
			break
		}
	}
	switch ae.ErrorCode() {
	case "NoSuchBucket":
		return fmt.Errorf("bucket %s does not exist: make it with `malocal obs mb s3://%s`, or list the buckets with `malocal obs ls`", bucket, bucket)
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%s: no such object: list what is there with `malocal obs ls s3://%s/`", url, bucket)
	case "BucketNotEmpty":
		return fmt.Errorf("bucket %s is not empty: remove it with its objects with `malocal obs rb --force s3://%s`", bucket, bucket)
	case "BucketAlreadyExists", "BucketAlreadyOwnedByYou":
		return fmt.Errorf("bucket %s already exists: use it as it is, or list it with `malocal obs ls s3://%s/`", bucket, bucket)
	case "InvalidBucketName":
		return fmt.Errorf("%q is not a valid bucket name: use 3-63 lowercase letters, digits, dots and dashes", bucket)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("the object store refused the keys (%s): `malocal obs` uses the keys of the emulator on --data-dir; pass the data dir that emulator runs on", ae.ErrorCode())
	}
	msg := strings.TrimSpace(ae.ErrorMessage())
	if msg == "" {
		msg = ae.ErrorCode()
	}
	return fmt.Errorf("the object store refused it: %s (%s)", msg, ae.ErrorCode())
}

// checkOBSAPI refuses --api naming another emulator than the one on the
// data dir: obs needs that emulator's S3 keys, which only its data dir has.
func checkOBSAPI(cmd *cobra.Command, running string) error {
	addr, ok := apiFlag(cmd)
	if !ok || addr == running {
		return nil
	}
	return &exitError{code: 2, err: fmt.Errorf("--api %s: `malocal obs` works on the emulator of --data-dir (its API is at %s), with that data dir's S3 keys: pass the --data-dir of the emulator at %s instead of --api, or use an S3 client with its `malocal env`", addr, running, addr)}
}
