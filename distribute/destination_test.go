package distribute

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestObjectName(t *testing.T) {
	for _, h := range []uint64{0, 1, 99, 1 << 40, math.MaxUint64} {
		name := ObjectName(h)
		if !strings.HasPrefix(name, "blocks/") || !strings.HasSuffix(name, ".blk") || len(name) != len("blocks/.blk")+20 {
			t.Errorf("ObjectName(%d) = %q, want blocks/<20 digits>.blk", h, name)
		}
		got, ok := parseObjectName(name)
		if !ok || got != h {
			t.Errorf("parseObjectName(%q) = %d, %v; want %d", name, got, ok, h)
		}
	}
	if ObjectName(9) >= ObjectName(10) {
		t.Errorf("object names do not sort by height: %q >= %q", ObjectName(9), ObjectName(10))
	}
	for _, bad := range []string{
		"", "blocks/", "blocks/1.blk", "blocks/00000000000000000001", "other/00000000000000000001.blk",
		"blocks/0000000000000000000x.blk", "blocks/99999999999999999999.blk", "blocks/+0000000000000000001.blk",
	} {
		if h, ok := parseObjectName(bad); ok {
			t.Errorf("parseObjectName(%q) = %d, accepted", bad, h)
		}
	}
}

// TestDestinationRoundTrip runs against both kinds of destination.
func TestDestinationRoundTrip(t *testing.T) {
	ctx := t.Context()
	for _, kind := range destKinds() {
		t.Run(kind.name, func(t *testing.T) {
			d := kind.make(t)
			if _, found, err := d.Get(ctx, ObjectName(0)); err != nil || found {
				t.Fatalf("Get(absent) = found %v, %v; want not found", found, err)
			}
			blocks := map[string][]byte{
				ObjectName(0):  []byte("genesis"),
				ObjectName(1):  bytes.Repeat([]byte{0xAB}, 4096),
				ObjectName(2):  {0},
				"other/x.bin":  []byte("not a block"),
				ObjectName(77): bytes.Repeat([]byte("0123456789"), 100_000),
			}
			for name, data := range blocks {
				if err := d.Put(ctx, name, data); err != nil {
					t.Fatalf("Put(%s): %v", name, err)
				}
			}
			for name, want := range blocks {
				got, found, err := d.Get(ctx, name)
				if err != nil || !found || !bytes.Equal(got, want) {
					t.Fatalf("Get(%s) = %d bytes, found %v, %v; want the %d bytes put", name, len(got), found, err, len(want))
				}
			}
			// Replacing an object stores the new bytes.
			if err := d.Put(ctx, ObjectName(2), []byte("replaced")); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := d.Get(ctx, ObjectName(2)); string(got) != "replaced" {
				t.Fatalf("after replace Get = %q", got)
			}
			names, err := d.(Lister).List(ctx, blockPrefix)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			slices.Sort(names)
			want := []string{ObjectName(0), ObjectName(1), ObjectName(2), ObjectName(77)}
			if !slices.Equal(names, want) {
				t.Fatalf("List(blocks/) = %q, want %q", names, want)
			}
		})
	}
}

// TestS3LargeObjectSinglePut checks that objects bigger than minio-go's
// multipart threshold (16 MiB) round-trip exactly through gofakes3: with
// multipart or aws-chunked uploads the fake stores corrupted bytes.
func TestS3LargeObjectSinglePut(t *testing.T) {
	f := newFakeS3(t, "big")
	d := NewS3Destination(f.client, f.bucket, "")
	data := make([]byte, 17<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := d.Put(t.Context(), ObjectName(1), data); err != nil {
		t.Fatal(err)
	}
	got, found, err := d.Get(t.Context(), ObjectName(1))
	if err != nil || !found || !bytes.Equal(got, data) {
		t.Fatalf("Get = %d bytes, found %v, %v; want the %d bytes put", len(got), found, err, len(data))
	}
}

func TestS3Prefix(t *testing.T) {
	f := newFakeS3(t, "pfx")
	for _, tc := range []struct{ prefix, key, str string }{
		{"", ObjectName(3), "s3://pfx/"},
		{"a/b", "a/b/" + ObjectName(3), "s3://pfx/a/b/"},
		{"/a/b/", "a/b/" + ObjectName(3), "s3://pfx/a/b/"},
	} {
		d := NewS3Destination(f.client, f.bucket, tc.prefix)
		if d.String() != tc.str {
			t.Errorf("prefix %q: String() = %q, want %q", tc.prefix, d.String(), tc.str)
		}
		if err := d.Put(t.Context(), ObjectName(3), []byte(tc.prefix)); err != nil {
			t.Fatal(err)
		}
		// Read the raw key with the client: the prefix is where we expect.
		if _, err := f.client.StatObject(t.Context(), f.bucket, tc.key, minio.StatObjectOptions{}); err != nil {
			t.Errorf("prefix %q: object not at key %q: %v", tc.prefix, tc.key, err)
		}
	}
}

func TestS3MissingBucketIsAnError(t *testing.T) {
	f := newFakeS3(t, "exists")
	d := NewS3Destination(f.client, "absent", "")
	if _, found, err := d.Get(t.Context(), ObjectName(0)); err == nil {
		t.Fatalf("Get in a missing bucket = found %v, nil error; want an error (not 'absent')", found)
	}
	if err := d.Put(t.Context(), ObjectName(0), []byte("x")); err == nil {
		t.Fatal("Put in a missing bucket succeeded")
	}
}

func TestDestinationRejectsBadNames(t *testing.T) {
	ctx := t.Context()
	for _, kind := range destKinds() {
		d := kind.make(t)
		for _, name := range []string{
			"", "/abs", "../escape", "blocks/../../escape", "a//b", "a/./b", "a/", ".hidden",
			"blocks/.x.blk.tmp", `a\b`, "a\x00b", ".", "..",
		} {
			t.Run(kind.name+"/"+name, func(t *testing.T) {
				if err := d.Put(ctx, name, []byte("x")); err == nil {
					t.Errorf("Put(%q) succeeded", name)
				}
				if _, _, err := d.Get(ctx, name); err == nil {
					t.Errorf("Get(%q) succeeded", name)
				}
			})
		}
	}
}

func TestNewDirDestinationRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir string }{
		{"empty", ""},
		{"regular file", file},
		{"below a regular file", filepath.Join(file, "sub")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d, err := NewDirDestination(tc.dir); err == nil {
				t.Fatalf("NewDirDestination(%q) = %v, want an error", tc.dir, d)
			}
		})
	}
}

func TestDirDestinationIgnoresStaleTemp(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDirDestination(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// A crash during Put leaves only the hidden temporary file.
	if err := os.MkdirAll(filepath.Join(dir, "blocks"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(ObjectName(4))
	stale := filepath.Join(dir, "blocks", "."+base+".tmp")
	if err := os.WriteFile(stale, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, found, err := d.Get(ctx, ObjectName(4)); err != nil || found {
		t.Fatalf("Get with only a temp file = found %v, %v; want absent", found, err)
	}
	if names, err := d.List(ctx, blockPrefix); err != nil || len(names) != 0 {
		t.Fatalf("List with only a temp file = %q, %v; want none", names, err)
	}
	if err := d.Put(ctx, ObjectName(4), []byte("full block")); err != nil {
		t.Fatal(err)
	}
	if got, found, err := d.Get(ctx, ObjectName(4)); err != nil || !found || string(got) != "full block" {
		t.Fatalf("Get = %q, %v, %v", got, found, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("temporary file still present after Put: %v", err)
	}
}

func TestDirDestinationRejectsOversizeObject(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDirDestination(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.FromSlash(ObjectName(1)))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// A sparse file one byte over the limit.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, MaxObjectSize+1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Get(t.Context(), ObjectName(1)); err == nil {
		t.Fatal("Get of an oversize object succeeded")
	}
}

func TestDirDestinationHonoursContext(t *testing.T) {
	d, err := NewDirDestination(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.Put(ctx, ObjectName(0), []byte("x")); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	if _, found, _ := d.Get(t.Context(), ObjectName(0)); found {
		t.Fatal("cancelled Put stored the object")
	}
}

func TestDirDestinationBrokenLayout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, dir string)
	}{
		{"blocks is a file", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "blocks"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"block name is a directory", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(ObjectName(1))), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory removed", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dest")
			d, err := NewDirDestination(dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.breakIt(t, dir)
			if err := d.Put(t.Context(), ObjectName(1), []byte("block")); err == nil {
				t.Fatal("Put succeeded on a broken destination")
			}
			if _, found, err := d.Get(t.Context(), ObjectName(1)); err == nil && found {
				t.Fatal("Get found a block that was never stored")
			}
		})
	}
}
