package e2e

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MakeBucket creates a bucket with aws-sdk-go-v2.
func (e *Emulator) MakeBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := e.S3Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
}

// S3Client is an aws-sdk-go-v2 client of the emulator's object store.
func (e *Emulator) S3Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String("http://" + e.S3),
		Region:       e.Creds.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(e.Creds.AccessKey, e.Creds.SecretKey, ""),
		UsePathStyle: true,
	})
}
