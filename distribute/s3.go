package distribute

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7"
)

// S3Destination publishes blocks as objects in an S3 bucket under a prefix.
// A single PUT is atomic in S3, so readers never see a partial block. The
// credentials need s3:GetObject, s3:PutObject and s3:ListBucket on the
// bucket: without ListBucket, S3 answers a read of a missing object with
// AccessDenied instead of NoSuchKey, which Get reports as an error.
type S3Destination struct {
	client *minio.Client
	bucket string
	prefix string
}

// NewS3Destination returns a destination writing objects named prefix+name
// into bucket. A non-empty prefix is given a trailing slash if it lacks one;
// leading slashes are dropped.
func NewS3Destination(client *minio.Client, bucket, prefix string) *S3Destination {
	prefix = strings.TrimLeft(prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &S3Destination{client: client, bucket: bucket, prefix: prefix}
}

// putOptions are the options of every upload. Blocks are small, so each is
// one PUT (never multipart) carrying a Content-MD5 the server checks. The
// payload is not SHA-256-signed in chunks (aws-chunked framing): some
// S3-compatible servers store that framing in the object over plain HTTP.
// The data itself is signed by the block's proposer.
func putOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableMultipart:     true,
		DisableContentSha256: true,
		SendContentMd5:       true,
	}
}

// Put uploads data as one object.
func (d *S3Destination) Put(ctx context.Context, name string, data []byte) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("put in %s: %w", d, err)
	}
	info, err := d.client.PutObject(ctx, d.bucket, d.prefix+name, bytes.NewReader(data), int64(len(data)), putOptions())
	if err != nil {
		return fmt.Errorf("put %s in %s: %w", name, d, err)
	}
	if info.Size != int64(len(data)) {
		return fmt.Errorf("put %s in %s: server stored %d bytes, sent %d", name, d, info.Size, len(data))
	}
	return nil
}

// Get downloads the object for name; a NoSuchKey answer means not found.
func (d *S3Destination) Get(ctx context.Context, name string) ([]byte, bool, error) {
	if err := checkName(name); err != nil {
		return nil, false, fmt.Errorf("get from %s: %w", d, err)
	}
	obj, err := d.client.GetObject(ctx, d.bucket, d.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("get %s from %s: %w", name, d, err)
	}
	defer obj.Close()
	data, err := readLimited(obj)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("get %s from %s: %w", name, d, err)
	}
	return data, true, nil
}

// List returns the names (without the destination's prefix) of the objects
// whose names start with prefix.
func (d *S3Destination) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	opts := minio.ListObjectsOptions{Prefix: d.prefix + prefix, Recursive: true}
	for info := range d.client.ListObjectsIter(ctx, d.bucket, opts) {
		if info.Err != nil {
			return nil, fmt.Errorf("list %s: %w", d, info.Err)
		}
		names = append(names, strings.TrimPrefix(info.Key, d.prefix))
	}
	return names, nil
}

// String returns "s3://bucket/prefix".
func (d *S3Destination) String() string {
	return "s3://" + d.bucket + "/" + d.prefix
}
