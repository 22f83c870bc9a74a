package leakscan

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

var secret = []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0xfa, 0xfb, 0xfc}

func TestScanFindsEveryForm(t *testing.T) {
	filler := bytes.Repeat([]byte("filler "), 10)
	cases := []struct {
		name string
		data []byte
		form string
	}{
		{"raw", secret, "raw"},
		{"hex", []byte(hex.EncodeToString(secret)), "hex"},
		{"upper hex", []byte(strings.ToUpper(hex.EncodeToString(secret))), "HEX"},
	}
	for k := 0; k < 3; k++ {
		prefix := bytes.Repeat([]byte{0x55}, k)
		for _, e := range []struct {
			name string
			enc  *base64.Encoding
		}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
			data := []byte(e.enc.EncodeToString(append(append(prefix, secret...), 0x77, 0x66)))
			cases = append(cases, struct {
				name string
				data []byte
				form string
			}{e.name + " alignment " + string(rune('0'+k)), data, e.name + "/" + string(rune('0'+k))})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "a", "b", "file.log"), append(append(append([]byte(nil), filler...), tc.data...), filler...))
			hits, err := Scan(context.Background(), []string{dir}, []Needle{{Name: "secret", Value: secret}})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, h := range hits {
				if h.Needle == "secret" && h.Form == tc.form {
					found = true
				}
			}
			if !found {
				t.Fatalf("hits %v, want a %s hit", hits, tc.form)
			}
		})
	}
}

func TestScanCleanFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "x"), bytes.Repeat([]byte("nothing to see here "), 1000))
	write(t, filepath.Join(dir, "sub", "y"), secret[:len(secret)-1]) // a prefix is not the needle
	hits, err := Scan(context.Background(), []string{dir}, []Needle{{Name: "secret", Value: secret}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 0 {
		t.Fatalf("hits %v in clean files", hits)
	}
	if n, err := Files([]string{dir}); err != nil || n != 2 {
		t.Fatalf("Files = %d, %v", n, err)
	}
}

func TestScanAcrossChunkBoundaries(t *testing.T) {
	for _, at := range []int{0, chunk - 5, chunk - 1, chunk, chunk + 3, 2*chunk - 4} {
		dir := t.TempDir()
		data := make([]byte, 2*chunk+100)
		copy(data[at:], secret)
		write(t, filepath.Join(dir, "big"), data)
		hits, err := Scan(context.Background(), []string{dir}, []Needle{{Name: "s", Value: secret}})
		if err != nil {
			t.Fatal(err)
		}
		raw := 0
		for _, h := range hits {
			if h.Form == "raw" {
				raw++
				if h.Offset != int64(at) {
					t.Fatalf("at %d: hit at offset %d", at, h.Offset)
				}
			}
		}
		if raw != 1 {
			t.Fatalf("at %d: %d raw hits, want exactly 1: %v", at, raw, hits)
		}
	}
}

func TestScanRejections(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		dirs    []string
		needles []Needle
	}{
		{"empty needle", []string{dir}, []Needle{{Name: "e"}}},
		{"no needles", []string{dir}, nil},
		{"missing directory", []string{filepath.Join(dir, "none")}, []Needle{{Name: "s", Value: secret}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Scan(context.Background(), tc.dirs, tc.needles); err == nil {
				t.Fatal("Scan succeeded")
			}
		})
	}
}

func TestShortNeedleHasNoBase64Forms(t *testing.T) {
	for _, p := range Patterns(Needle{Name: "n", Value: []byte{1, 2}}) {
		if strings.HasPrefix(p.Form, "base64") {
			t.Fatalf("pattern %+v", p)
		}
	}
}
