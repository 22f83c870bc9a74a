package distribute

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDestinationDir(t *testing.T) {
	base := t.TempDir()
	for _, tc := range []struct{ spec, dir string }{
		{"dir:" + filepath.Join(base, "a"), filepath.Join(base, "a")},
		{filepath.Join(base, "b"), filepath.Join(base, "b")},
		{"dir:" + filepath.Join(base, "c:d"), filepath.Join(base, "c:d")},
	} {
		d, err := ParseDestination(t.Context(), tc.spec, S3Credentials{})
		if err != nil {
			t.Fatalf("ParseDestination(%q): %v", tc.spec, err)
		}
		if _, ok := d.(*DirDestination); !ok || d.String() != "dir:"+tc.dir {
			t.Fatalf("ParseDestination(%q) = %T %s, want dir:%s", tc.spec, d, d, tc.dir)
		}
		if fi, err := os.Stat(tc.dir); err != nil || !fi.IsDir() {
			t.Fatalf("directory %s not created: %v", tc.dir, err)
		}
	}
}

func TestParseDestinationS3(t *testing.T) {
	f := newFakeS3(t, "ledger")
	creds := S3Credentials{AccessKey: testAccessKey, SecretKey: testSecretKey}
	spec := "s3://ledger/net1/blocks-v1?endpoint=" + f.endpoint + "&insecure=1"
	d, err := ParseDestination(t.Context(), spec, creds)
	if err != nil {
		t.Fatalf("ParseDestination(%q): %v", spec, err)
	}
	if d.String() != "s3://ledger/net1/blocks-v1/" {
		t.Fatalf("String() = %q", d.String())
	}
	data := []byte("block bytes")
	if err := d.Put(t.Context(), ObjectName(9), data); err != nil {
		t.Fatal(err)
	}
	// Read it back through an independently built destination.
	other := NewS3Destination(f.client, "ledger", "net1/blocks-v1")
	got, found, err := other.Get(t.Context(), ObjectName(9))
	if err != nil || !found || !bytes.Equal(got, data) {
		t.Fatalf("Get = %q, %v, %v", got, found, err)
	}
}

func TestParseDestinationRejects(t *testing.T) {
	f := newFakeS3(t, "ledger")
	ok := S3Credentials{AccessKey: testAccessKey, SecretKey: testSecretKey}
	ep := "endpoint=" + f.endpoint + "&insecure=1"
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, spec string
		creds      S3Credentials
		want       string // substring of the error
	}{
		{"empty", "", ok, "empty spec"},
		{"empty dir", "dir:", ok, "empty directory"},
		{"dir is a file", "dir:" + file, ok, "not a directory"},
		{"unknown scheme", "ftp://host/x", ok, "unsupported scheme"},
		{"scheme-like plain path", "c:foo", ok, "unsupported scheme"},
		{"s3 opaque", "s3:ledger/x", ok, "want s3://"},
		{"s3 no bucket", "s3:///prefix?" + ep, ok, "bucket"},
		{"s3 bad bucket", "s3://Bad_Bucket/x?" + ep, ok, "bucket"},
		{"s3 userinfo", "s3://key:secret@ledger/x?" + ep, ok, "credentials do not belong"},
		{"s3 fragment", "s3://ledger/x?" + ep + "#frag", ok, "fragment"},
		{"s3 dotdot prefix", "s3://ledger/../x?" + ep, ok, "prefix"},
		{"s3 empty element prefix", "s3://ledger/a//b?" + ep, ok, "prefix"},
		{"s3 unknown parameter", "s3://ledger/x?" + ep + "&color=red", ok, "unknown parameter"},
		{"s3 repeated parameter", "s3://ledger/x?" + ep + "&insecure=1", ok, "given 2 times"},
		{"s3 bad insecure", "s3://ledger/x?endpoint=" + f.endpoint + "&insecure=maybe", ok, "insecure"},
		{"s3 empty endpoint", "s3://ledger/x?endpoint=&insecure=1", ok, "endpoint"},
		{"s3 endpoint with path", "s3://ledger/x?endpoint=host/path&insecure=1", ok, "endpoint"},
		{"s3 bad query", "s3://ledger/x?%zz", ok, "query"},
		{"s3 no access key", "s3://ledger/x?" + ep, S3Credentials{SecretKey: "s"}, "missing S3 credentials"},
		{"s3 no secret key", "s3://ledger/x?" + ep, S3Credentials{AccessKey: "a"}, "missing S3 credentials"},
		{"s3 missing bucket", "s3://absent/x?" + ep, ok, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDestination(t.Context(), tc.spec, tc.creds)
			if err == nil {
				t.Fatalf("ParseDestination(%q) = %v, want an error", tc.spec, d)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseDestination(%q) error %q does not mention %q", tc.spec, err, tc.want)
			}
		})
	}
}
