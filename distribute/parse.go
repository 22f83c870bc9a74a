package distribute

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// DefaultS3Endpoint is the endpoint of an s3:// destination without an
// endpoint parameter.
const DefaultS3Endpoint = "s3.amazonaws.com"

// S3Credentials are the static keys used for an s3:// destination. The
// caller reads them (from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, say);
// this package never reads the environment.
type S3Credentials struct {
	AccessKey string
	SecretKey string
}

// hasScheme reports whether s starts with a URL-like scheme ("s3:",
// "file:", "dir:"): a letter, then letters, digits, '+', '-' or '.', then ':'.
func hasScheme(s string) bool {
	for i, c := range s {
		switch {
		case c == ':':
			return i > 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return false
}

// ParseDestination opens the destination described by spec:
//
//   - "dir:/path" or a plain path (one not starting with "scheme:"): a
//     DirDestination, created if missing;
//   - "s3://bucket/prefix?endpoint=host:port&insecure=1&region=r": an
//     S3Destination using creds. endpoint defaults to DefaultS3Endpoint,
//     insecure=1 selects plain HTTP, region is optional. The bucket must
//     exist; ParseDestination checks it with ctx.
func ParseDestination(ctx context.Context, spec string, creds S3Credentials) (Destination, error) {
	switch {
	case spec == "":
		return nil, errors.New("parse destination: empty spec")
	case strings.HasPrefix(spec, "dir:"):
		p := strings.TrimPrefix(spec, "dir:")
		if p == "" {
			return nil, fmt.Errorf("parse destination %q: empty directory", spec)
		}
		return NewDirDestination(p)
	case strings.HasPrefix(spec, "s3:"):
		return parseS3(ctx, spec, creds)
	case hasScheme(spec):
		return nil, fmt.Errorf("parse destination %q: unsupported scheme (want dir:PATH, s3://BUCKET/PREFIX or a plain path; write dir:%s for a path containing ':')", spec, spec)
	default:
		return NewDirDestination(spec)
	}
}

// parseS3 handles the s3:// form of ParseDestination.
func parseS3(ctx context.Context, spec string, creds S3Credentials) (Destination, error) {
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse destination: %w", err)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("parse destination %q: %s", spec, fmt.Sprintf(format, args...))
	}
	if u.Scheme != "s3" || u.Opaque != "" {
		return nil, fail("want s3://BUCKET/PREFIX")
	}
	if u.User != nil {
		return nil, fail("credentials do not belong in the URL; pass them as S3 credentials")
	}
	if u.Fragment != "" {
		return nil, fail("unexpected fragment %q", u.Fragment)
	}
	bucket := u.Host
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return nil, fail("bucket %q: %v", bucket, err)
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	if prefix != "" {
		if err := checkName(strings.TrimSuffix(prefix, "/")); err != nil {
			return nil, fail("prefix: %v", err)
		}
	}
	endpoint, insecure, region := DefaultS3Endpoint, false, ""
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fail("query: %v", err)
	}
	for key, vals := range query {
		if len(vals) != 1 {
			return nil, fail("parameter %s given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "endpoint":
			if v == "" || strings.ContainsAny(v, "/?#@") {
				return nil, fail("endpoint %q: want host or host:port", v)
			}
			endpoint = v
		case "insecure":
			switch v {
			case "1", "true":
				insecure = true
			case "0", "false":
				insecure = false
			default:
				return nil, fail("insecure=%q: want 1, true, 0 or false", v)
			}
		case "region":
			region = v
		default:
			return nil, fail("unknown parameter %q (known: endpoint, insecure, region)", key)
		}
	}
	if creds.AccessKey == "" || creds.SecretKey == "" {
		return nil, fail("missing S3 credentials (access key and secret key)")
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(creds.AccessKey, creds.SecretKey, ""),
		Secure: !insecure,
		Region: region,
	})
	if err != nil {
		return nil, fail("client for %s: %v", endpoint, err)
	}
	ok, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("parse destination %q: check bucket %s at %s: %w", spec, bucket, endpoint, err)
	}
	if !ok {
		return nil, fail("bucket %s does not exist at %s", bucket, endpoint)
	}
	return NewS3Destination(client, bucket, prefix), nil
}
